"""Create every contract topic and its .dlq twin on the local broker (idempotent)."""

from __future__ import annotations

import argparse
import asyncio

from services.kit.kafka import ensure_topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--namespace", default="")
    args = parser.parse_args()
    names = asyncio.run(ensure_topics(args.bootstrap, args.namespace, partitions=args.partitions))
    print("topics ready: " + ", ".join(names))


if __name__ == "__main__":
    main()
