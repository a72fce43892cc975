"""Endpoint-wide holds: a ``Retry-After`` one worker receives holds back every worker of that endpoint.

Each sink worker follows the compacted ``activity.control`` topic (no consumer group: every worker
reads all of it) and publishes there when its endpoint is told to wait: the record keyed
``hold:<endpoint>`` carries the moment (wall-clock seconds) before which no worker of the endpoint
may send. A worker applies the latest hold for its endpoint before every request, so the CRM's
``Retry-After`` is honoured by the endpoint as a whole, not by the one worker that happened to
receive it. The hold travels through Kafka in a few milliseconds; a request already under way in
another worker at that moment cannot be recalled.

Why Kafka: the workers share nothing else, the broker is already there, and a compacted topic
also tells a worker that starts during a hold to wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from mode import Service

from core.settings import KafkaSettings
from core.topics import partition_ids

log = logging.getLogger("activity_sync.sinks")


class EndpointHolds(Service):
    def __init__(self, kafka: KafkaSettings, topic: str, endpoint: str, **kw) -> None:
        super().__init__(**kw)
        self.kafka, self.topic, self.endpoint = kafka, topic, endpoint
        self.key = f"hold:{endpoint}".encode()
        self.until = 0.0               # no request of this endpoint before this (wall-clock seconds)
        self.published = 0.0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    def hold_until(self) -> float:
        return self.until

    def publish(self, until: float) -> None:
        """Tell every worker of the endpoint (this one at once)."""
        self.until = max(self.until, until)
        if until > self.published + 0.001 and self._producer is not None:
            self.published = until
            value = json.dumps({"endpoint": self.endpoint, "not_before": until, "at": time.time()}).encode()
            asyncio.ensure_future(self._send(value))

    async def publish_status(self, worker: str, doc: dict) -> None:
        """The worker's status of its endpoint, ``status:<endpoint>:<worker>`` (read by the admin API)."""
        if self._producer is None:
            return
        try:
            await self._producer.send_and_wait(self.topic, key=f"status:{self.endpoint}:{worker}".encode(),
                                               value=json.dumps(doc).encode())
        except Exception as exc:  # noqa: BLE001 - a status is never worth stopping for
            log.debug("endpoint %s: status not published: %s", self.endpoint, exc)

    async def _send(self, value: bytes) -> None:
        try:
            await self._producer.send_and_wait(self.topic, key=self.key, value=value)
        except Exception as exc:  # noqa: BLE001 - the hold still applies to this worker
            log.warning("endpoint %s: hold not shared: %s: %s", self.endpoint, type(exc).__name__, exc)

    async def on_start(self) -> None:
        self._producer = AIOKafkaProducer(acks=1, linger_ms=0, **self.kafka.aiokafka_kwargs())
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                          **self.kafka.aiokafka_kwargs())
        await self._consumer.start()

    async def on_stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                await client.stop()

    @Service.task
    async def _follow(self) -> None:
        c = self._consumer
        ids: list[int] = []
        while not ids and not self.should_stop:
            ids = await partition_ids(self.kafka, self.topic)
            if not ids:
                await asyncio.sleep(1.0)
        parts = [TopicPartition(self.topic, p) for p in ids]
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        while not self.should_stop:
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                for m in msgs:
                    if m.key == self.key and m.value:
                        try:
                            self.until = max(self.until, float(json.loads(m.value)["not_before"]))
                        except (ValueError, KeyError, TypeError):
                            log.warning("activity.control record %r ignored: not a hold", m.key)
