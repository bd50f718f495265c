"""Print the records of a topic as a partner sees them: key, ce_* headers, JSON value.

.venv/bin/python deploy/local/tail_topic.py protection.cases.v1 [--follow]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiokafka import AIOKafkaConsumer, TopicPartition


async def tail(bootstrap: str, topic: str, follow: bool, last: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
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
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--follow", action="store_true")
    parser.add_argument("--last", type=int, default=10, help="records per partition")
    args = parser.parse_args()
    asyncio.run(tail(args.bootstrap, args.topic, args.follow, args.last))


if __name__ == "__main__":
    main()
