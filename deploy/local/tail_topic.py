"""Print the records of a topic as a partner sees them: key, ce_* headers, JSON value.

.venv/bin/python deploy/local/tail_topic.py protection.cases.v1 [--follow] [--as PRINCIPAL]

It connects with the KAFKA_* settings of the environment when KAFKA_SASL_USERNAME is
set (a partner's own credentials), else as a local principal (`--as`, default the
local admin) whose password the local scripts generated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.kit.kafka import KafkaClient
from services.kit.local_secrets import kafka_client


async def tail(client: KafkaClient, topic: str, follow: bool, last: int) -> None:
    consumer = AIOKafkaConsumer(**client.aiokafka(), enable_auto_commit=False)
    await consumer.start()
    try:
        # aiokafka has no public call that loads partition metadata without a group
        await consumer._client.force_metadata_update()
        if not consumer.partitions_for_topic(topic):
            raise SystemExit(f"no such topic: {topic}")
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(0, ends[tp] - last))
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    print(
                        json.dumps(
                            {
                                "partition": r.partition,
                                "offset": r.offset,
                                "key": r.key.decode() if r.key else None,
                                "headers": {k: v.decode() for k, v in r.headers},
                                "value": json.loads(r.value) if r.value else None,
                            },
                            ensure_ascii=False,
                            indent=2,
                        )
                    )
            caught_up = all([await consumer.position(tp) >= ends[tp] for tp in partitions])
            if not follow and caught_up:
                return
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("topic")
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--as", dest="principal", default="admin", help="local principal")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--last", type=int, default=10, help="records per partition")
    args = parser.parse_args()
    if os.environ.get("KAFKA_SASL_USERNAME"):
        client = KafkaClient.from_env()
    else:
        client = kafka_client(args.principal, args.bootstrap)
    asyncio.run(tail(client, args.topic, args.follow, args.last))


if __name__ == "__main__":
    main()
