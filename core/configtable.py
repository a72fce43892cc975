"""The ``activity.config`` table: every worker reads the whole compacted topic into a :class:`Routing`.

A plain consumer with no group (every worker needs every record, not a share of partitions)
reads from the beginning, reports ready once it has caught up with the end offsets seen at
start, and keeps applying changes while the worker runs. A record that fails validation is
logged and counted, and the previous state stays in force.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from . import metrics  # the shared config counter
from .compacted import CompactedTopic
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


class ConfigTable(CompactedTopic):
    """The ``activity.config`` records applied to a :class:`Routing`; a worker waits for the topic to exist."""

    wait_for_topic = True

    def __init__(self, kafka: KafkaSettings, topic: str, routing: Routing, **kw) -> None:
        super().__init__(kafka, topic, self._record, **kw)
        self.routing = routing

    def _record(self, key: bytes, value: bytes | None) -> None:
        try:
            self.routing.apply_record(key.decode(), value)
            metrics.CONFIG_RECORDS.labels("applied").inc()
        except Exception as exc:  # a bad record never takes the worker down
            metrics.CONFIG_RECORDS.labels("refused").inc()
            log.error("activity.config record %s refused: %s", key.decode(errors="replace"), exc)

    def loaded(self) -> None:
        log.info("activity.config loaded: %d endpoints, %d subscriptions",
                 len(self.routing.endpoints), len(self.routing.subscriptions))
