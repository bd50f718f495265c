"""Create every contract topic and its .dlq twin, and each partner agency's feed topic
(deploy/kafka-access.yaml), on the local broker (idempotent),
as the local admin (the scripts' principal). With ENLACE_KAFKA_NODES=3 each partition
is on all three nodes, with min.insync.replicas 2."""

from __future__ import annotations

import argparse
import asyncio

from services.kit.kafka import ensure_topics
from services.kit.kafka_acl import load_access
from services.kit.local_secrets import kafka_client, topic_replication


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--namespace", default="")
    args = parser.parse_args()
    client = kafka_client("admin", args.bootstrap)
    replication, configs = topic_replication()
    names = asyncio.run(
        ensure_topics(
            client,
            args.namespace,
            args.partitions,
            replication,
            configs,
            extra=load_access().partner_topics(),
        )
    )
    print(f"topics ready (replication factor {replication}): " + ", ".join(names))


if __name__ == "__main__":
    main()
