"""The ceiling contenders of ``make bench``: plain aiokafka consume-and-produce loops, no Faust.

``enrich``: the same pure enrichment and Avro encoding as the stream worker; ``copy``: bytes only.
Reads ``BENCH_RAW_TOPIC``, writes the ``activity.enriched`` of ``ACTIVITY_SYNC_TOPIC_PREFIX``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.config import catalog_for
from core.avro import make_codec
from core.configtable import read_config_topic
from streams.enrich import Enricher
from core.envelope import MalformedEvent
from core.partitioner import MemoPartitioner
from core.routing import Routing
from core.settings import Settings
from core.topics import Topics


async def main(mode: str) -> None:
    stats: dict = {"stage": "reading the config", "in": 0, "out": 0, "consumer": None}

    async def report() -> None:  # a contender that stalls says where, in its log
        while True:
            await asyncio.sleep(5)
            c = stats["consumer"]
            print(f"ceiling {mode}: {stats['stage']}; {stats['in']} in, {stats['out']} acknowledged, assigned "
                  f"{sorted(tp.partition for tp in c.assignment()) if c else None}", file=sys.stderr, flush=True)

    reporter = asyncio.ensure_future(report())
    settings = Settings.from_env()
    topics = Topics(settings.topic_prefix)
    raw_topic = os.environ["BENCH_RAW_TOPIC"]
    routing = Routing(catalog_for(settings))
    src_config = raw_topic[: -len("activity.raw")] + "activity.config"
    for k, v in await read_config_topic(settings.kafka, src_config):
        routing.apply_record(k, v)
    enricher = Enricher(routing.catalog, routing, settings.max_event_bytes)
    codec = make_codec(None, topics.enriched)
    consumer = AIOKafkaConsumer(raw_topic, group_id=f"{settings.app_id}-ceiling", enable_auto_commit=False,
                                auto_offset_reset="earliest", **settings.kafka.aiokafka_kwargs())
    producer = AIOKafkaProducer(acks=-1, linger_ms=5, max_batch_size=256 * 1024, partitioner=MemoPartitioner(),
                                **settings.kafka.aiokafka_kwargs())  # as the stream worker's
    stats["stage"] = "starting the clients"
    await consumer.start()
    await producer.start()
    stats.update(stage="consuming", consumer=consumer)
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=1000)
            futs = []
            now = int(time.time() * 1000)
            for msgs in batch.values():
                for m in msgs:
                    if mode == "copy":
                        futs.append(await producer.send(topics.enriched, key=m.key, value=m.value))
                        continue
                    try:
                        out = enricher.enrich(m.value, m.key, m.topic, m.partition, m.offset, now)
                    except MalformedEvent:
                        continue
                    futs.append(await producer.send(topics.enriched, key=out.key, value=codec.encode(out.record)))
            stats["in"] += sum(len(msgs) for msgs in batch.values())
            if futs:
                await asyncio.gather(*futs)
                stats["out"] += len(futs)
                await consumer.commit()
    finally:
        reporter.cancel()
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
