"""A compacted topic read whole by every process that needs it (a table every worker keeps in memory).

A plain consumer with no group reads every partition from the beginning, answers ready once it
has caught up with the end offsets seen at start, and keeps applying records while it runs. A
record ``apply`` refuses is logged and skipped (the state before it stays). Used for the Push
API's keys (``push.keys``) and its member directory (``push.directory``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from .settings import KafkaSettings
from .topics import partition_ids

log = logging.getLogger("activity_sync.compacted")


class CompactedTopic(Service):
    #: what a missing topic means: an empty table (ready), or something to wait for (not ready until it exists)
    wait_for_topic = False

    def __init__(self, kafka: KafkaSettings, topic: str, apply: Callable[[bytes, bytes | None], None],
                 **kw) -> None:
        super().__init__(**kw)
        self.kafka, self.topic, self._apply = kafka, topic, apply
        self.ready = asyncio.Event()
        self.records = 0
        self._consumer: AIOKafkaConsumer | None = None

    def apply(self, key: bytes, value: bytes | None) -> None:
        try:
            self._apply(key, value)
            self.records += 1
        except Exception as exc:  # noqa: BLE001 - a bad record never takes the process down
            log.error("%s record %r refused: %s: %s", self.topic, key[:80], type(exc).__name__, exc)

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                          max_partition_fetch_bytes=4 * 1024 * 1024, **self.kafka.aiokafka_kwargs())
        await self._consumer.start()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _follow(self) -> None:
        c = self._consumer
        assert c is not None
        ids: list[int] = []
        while not ids:
            if self.should_stop:
                return
            ids = await partition_ids(self.kafka, self.topic)
            if not ids:
                if self.wait_for_topic:
                    log.warning("waiting for topic %s to exist", self.topic)
                    await asyncio.sleep(1.0)
                    continue
                # nothing to read is an empty table: ready, and read the topic once it exists
                if not self.ready.is_set():
                    log.warning("topic %s does not exist (activity-sync topics declares it): empty until it does",
                                self.topic)
                self.ready.set()
                await asyncio.sleep(2.0)
        parts = [TopicPartition(self.topic, p) for p in ids]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        end = await c.end_offsets(parts)
        if all(end[tp] == 0 for tp in parts):
            self.ready.set()
        while not self.should_stop:
            batch = await c.getmany(timeout_ms=200, max_records=5000)
            for msgs in batch.values():
                for m in msgs:
                    if m.key is None:
                        continue
                    self.apply(m.key, m.value)
            if not self.ready.is_set() and all([await c.position(tp) >= end[tp] for tp in parts]):
                self.loaded()
                self.ready.set()

    def loaded(self) -> None:
        log.info("%s loaded: %d records", self.topic, self.records)
