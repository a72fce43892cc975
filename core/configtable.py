"""The ``activity.config`` table: every worker reads the whole compacted topic into a :class:`Routing`.

A plain consumer with no group (every worker needs every record, not a share of partitions)
reads from the beginning, reports ready once it has caught up with the end offsets seen at
start, and keeps applying changes while the worker runs. A record that fails validation is
logged and counted, and the previous state stays in force.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from . import metrics  # the shared config counter
from .routing import Routing
from .settings import KafkaSettings
from .topics import partition_ids

log = logging.getLogger("activity_sync.config")


async def read_config_topic(kafka: KafkaSettings, topic: str) -> list[tuple[str, bytes | None]]:
    """Read the topic once, to its current end (for tools)."""
    routing_records: list[tuple[str, bytes | None]] = []
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **kafka.aiokafka_kwargs())
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(kafka, topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                routing_records += [(m.key.decode(), m.value) for m in msgs if m.key]
        return routing_records
    finally:
        await consumer.stop()


class ConfigTable(Service):
    def __init__(self, kafka: KafkaSettings, topic: str, routing: Routing, **kw) -> None:
        super().__init__(**kw)
        self.kafka = kafka
        self.topic = topic
        self.routing = routing
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    async def wait_ready(self) -> None:
        await self.ready.wait()

    def apply(self, key: str, value: bytes | None) -> None:
        try:
            self.routing.apply_record(key, value)
            metrics.CONFIG_RECORDS.labels("applied").inc()
        except Exception as exc:  # a bad record never takes the worker down
            metrics.CONFIG_RECORDS.labels("refused").inc()
            log.error("activity.config record %s refused: %s", key, exc)

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                          **self.kafka.aiokafka_kwargs())
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _follow(self) -> None:
        c = self._consumer
        assert c is not None
        parts_ids: list[int] = []
        while not parts_ids:
            if self.should_stop:
                return
            parts_ids = await partition_ids(self.kafka, self.topic)
            if not parts_ids:
                log.warning("waiting for topic %s to exist", self.topic)
                await asyncio.sleep(1.0)
        parts = [TopicPartition(self.topic, p) for p in parts_ids]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        end = await c.end_offsets(parts)
        if all(end[tp] == 0 for tp in parts):
            self.ready.set()
        while not self.should_stop:
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    if m.key:
                        self.apply(m.key.decode(), m.value)
            if not self.ready.is_set():
                if all([await c.position(tp) >= end[tp] for tp in parts]):
                    log.info("activity.config loaded: %d endpoints, %d subscriptions",
                             len(self.routing.endpoints), len(self.routing.subscriptions))
                    self.ready.set()
