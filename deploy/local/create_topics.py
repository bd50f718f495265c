"""Create every contract topic and its .dlq twin on the local broker (idempotent),
as the local admin (the scripts' principal)."""

from __future__ import annotations

import argparse
import asyncio

from services.kit.kafka import ensure_topics
from services.kit.local_secrets import kafka_client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--namespace", default="")
    args = parser.parse_args()
    client = kafka_client("admin", args.bootstrap)
    names = asyncio.run(ensure_topics(client, args.namespace, partitions=args.partitions))
    print("topics ready: " + ", ".join(names))


if __name__ == "__main__":
    main()
