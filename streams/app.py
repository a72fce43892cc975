"""The stream worker: a Faust app whose agent ``enrich_activities`` turns ``activity.raw`` into
``activity.enriched``, dead-lettering what can never be enriched.

The agent only wires topics to the pure functions in :mod:`streams.enrich`. It never lets an
exception escape (Faust acknowledges a message whose agent raised, and it would be lost): every
event ends either on ``activity.enriched`` or on ``activity.dead`` with the reason in its
headers. Every send of a batch is acknowledged by the broker before the batch is (a record the
broker refuses as too large is dead-lettered; any other failed send stops the process before
Faust can commit), so a crash re-reads rather than loses (at-least-once; consumers drop
duplicates by ``activity_key``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import traceback
from functools import partial

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faust.app.base import BootStrategy
from mode import Service

from core import headers as H
from core import metrics as core_metrics
from . import metrics
from core.avro import make_codec
from core.configtable import ConfigTable
from core.directory import DirectoryView
from core.envvars import env_float, env_int
from core.errors import guarded, kafka_reachable
from core.logs import configure_logging, record_fields
from core.health import Health, metric_names
from .enrich import Enricher
from core.envelope import MalformedEvent
from core.faustapp import (FETCH_MAX_WAIT_MS, GracefulStop, client_id, install_health, make_app, run_worker, stop_now,
                           use_event_loop)
from core.config import catalog_for
from core.partitioner import MemoPartitioner
from core.routing import Routing
from core.settings import Settings
from core.topics import MAX_EVENT_TOPIC_BYTES, Topics

log = logging.getLogger("activity_sync.streams")

def batch_settings() -> tuple[int, float]:
    """(events per batch, seconds to fill one) from ACTIVITY_SYNC_BATCH_SIZE / _BATCH_WITHIN."""
    return (env_int("ACTIVITY_SYNC_BATCH_SIZE", 1000, 1, 100_000),
            env_float("ACTIVITY_SYNC_BATCH_WITHIN", 0.01, 0, 60))


# The broker or the client refuses a record this large: the event is dead-lettered, not retried.
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


async def settle(pending: list, on_too_large) -> int:
    """Wait until every send of a batch is acknowledged.

    ``pending`` holds ``(future, item, resend)``. The broker refuses a whole record batch that is
    over the topic's ``max.message.bytes`` (and aiokafka does not split it), so a refused record is
    sent again on its own; only one refused alone goes to ``on_too_large(item, error)``.
    Answers how many records went there.
    """
    refused = 0
    results = await asyncio.gather(*(fut for fut, _, _ in pending), return_exceptions=True)
    for (_, item, resend), res in zip(pending, results):
        if isinstance(res, TOO_LARGE) and resend is not None:
            try:
                res = await (await resend())
            except TOO_LARGE as exc:
                res = exc
            except Exception as exc:  # noqa: BLE001 - handled as any failed produce below
                res = exc
        if isinstance(res, TOO_LARGE):
            refused += 1
            await on_too_large(item, res)
        elif isinstance(res, BaseException):
            stop_now(f"a produce failed after the client's retries: {type(res).__name__}: {res}")
    return refused


class Enrichment:
    """One batch of raw events in, each out to ``activity.enriched`` or ``activity.dead``.

    ``send(topic, key, value, headers)`` answers a future of the broker's acknowledgement (Faust's
    producer in the worker, anything alike in a test). Nothing here raises: an event that cannot be
    enriched or sent is dead-lettered, a failed produce ends the process (see :func:`stop_now`).
    """

    def __init__(self, enricher: Enricher, codec, topics: Topics, send) -> None:
        self.enricher, self.codec, self.topics, self.send = enricher, codec, topics, send

    async def handle(self, messages) -> int:
        """Enrich and send one batch; return once every send is acknowledged. Answers how many went out."""
        return await self.settle(*await self.send_all(messages))

    async def send_all(self, messages) -> tuple[list, int, float]:
        """Enrich and send one batch without waiting for the broker: answers what :meth:`settle` takes."""
        started = time.monotonic()
        now = time.time()
        pending: list = []  # (future, raw message, resend): settled before the batch is acknowledged
        sent = 0
        routed: dict[str, int] = {}  # endpoint -> records: one counter update per batch, not per record
        metrics.EVENTS_IN.inc(len(messages))
        for msg in messages:
            try:
                out = self.enricher.enrich(msg.value, msg.key, msg.topic, msg.partition, msg.offset,
                                           int(now * 1000))
                value = self.codec.encode(out.record)
            except MalformedEvent as exc:
                pending.append((await self.dead_letter(msg, exc), None, None))
                continue
            except Exception as exc:  # a bug must not lose the event either
                log.error("enrichment failed at %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset,
                          traceback.format_exc())
                pending.append((await self.dead_letter(msg, exc), None, None))
                continue
            endpoints = ",".join(d["endpoint"] for d in out.record["deliveries"])
            send = partial(self.send, self.topics.enriched, out.key, value,
                           [(H.ENDPOINTS, endpoints.encode()),
                            (H.TENANT, out.record["tenant_code"].encode("utf-8", "replace"))])
            try:
                fut = await send()
            except TOO_LARGE as exc:
                pending.append((await self.dead_letter(msg, exc), None, None))
                continue
            except Exception as exc:
                stop_now(f"producing to {self.topics.enriched} failed: {type(exc).__name__}: {exc}")
            pending.append((fut, msg, send))
            sent += 1
            if out.unknown_code:
                metrics.unknown_code(out.record["activity_code"])
            for d in out.record["deliveries"]:
                routed[d["endpoint"]] = routed.get(d["endpoint"], 0) + 1
            if not out.record["deliveries"]:
                metrics.unrouted(out.record["tenant_code"], self.enricher.routing.tenants())
            if msg.timestamp:
                metrics.LATENCY.observe(max(0.0, now - msg.timestamp / 1000))  # aiokafka: milliseconds
        for endpoint, n in routed.items():
            metrics.ROUTED.labels(endpoint).inc(n)
        return pending, sent, started

    async def settle(self, pending: list, sent: int, started: float) -> int:
        """Wait until every send of a batch is acknowledged; answers how many went to ``enriched``."""
        sent -= await settle(pending, self.too_large)
        metrics.ENRICHED.inc(sent)
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        return sent

    async def too_large(self, msg, exc: BaseException) -> None:
        if msg is None:
            stop_now(f"a dead letter was refused: {exc}")
        await settle([(await self.dead_letter(msg, exc), None, None)], self.too_large)

    async def dead_letter(self, msg, exc: BaseException):
        """Send the raw event to the dead-letter topic; answer the send's future."""
        metrics.DEAD.labels(type(exc).__name__).inc()
        log.warning("dead-lettered %s[%s]@%s: %s: %s", msg.topic, msg.partition, msg.offset,
                    type(exc).__name__, str(exc)[:200],
                    extra=record_fields(None, msg.topic, msg.partition, msg.offset))
        return await self.send(self.topics.dead, msg.key, msg.value,
                               H.dead_letter("enrich", (msg.topic, msg.partition, msg.offset), exc))


class EnrichLoop(Service):
    """The stream stage's consumer: ``activity.raw`` read by a plain aiokafka consumer in the
    consumer group ``app_id``, enriched in batches, each batch committed once every record of it
    is acknowledged by the broker.

    Faust's stream machinery (a consumer thread, an Event per message, the take buffer, acks by
    reference count) cost about 80 µs of CPU per event, as much as the enrichment itself: the
    worker enriched at half the rate of the same work in a plain loop. Here the Faust app keeps
    what it is good at (the worker's life cycle, signals, services such as the config table) and
    the hot path is the plain loop.

    Batch N+1 is enriched and sent while the broker acknowledges batch N; N is committed before
    N+1. A crash repeats at most those two batches; a rebalance waits for both and commits them
    before the partitions move; a graceful stop takes no new batch, finishes and commits.
    """

    def __init__(self, settings: Settings, topics: Topics, enrichment: "Enrichment", config_table: ConfigTable,
                 directory=None, **kw) -> None:
        super().__init__(**kw)
        self.settings, self.topics, self.enrichment, self.config_table = settings, topics, enrichment, config_table
        self.directory = directory
        self.batch_size, self.within = batch_settings()
        self.stopping = False
        self.busy = False
        self.joined = False
        self.in_flight: asyncio.Future | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        kafka = self.settings.kafka.aiokafka_kwargs()
        timeout_ms = int(self.settings.session_timeout_s * 1000)
        self.producer = AIOKafkaProducer(
            client_id=client_id("streams"), acks="all", linger_ms=5, max_batch_size=256 * 1024,
            partitioner=MemoPartitioner(), max_request_size=MAX_EVENT_TOPIC_BYTES + 65536, **kafka)
        self.consumer = AIOKafkaConsumer(
            client_id=client_id("streams"), group_id=self.settings.app_id, enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=1024 * 1024, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            session_timeout_ms=timeout_ms, heartbeat_interval_ms=max(1000, timeout_ms // 3),
            max_poll_interval_ms=300_000, **kafka)
        await self.producer.start()
        self.enrichment.send = self.send

    async def send(self, topic, key, value, headers):
        return await self.producer.send(topic, value, key=key, headers=headers)

    @Service.task
    async def _run(self) -> None:
        await self.config_table.wait_ready()
        if self.directory is not None:
            await self.directory.wait_ready()
        consumer = self.consumer
        consumer.subscribe([self.topics.raw], listener=_Rebalance(self))
        await consumer.start()
        timeout_ms = max(1, int(self.within * 1000))
        while not self.should_stop and not self.stopping:
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.batch_size)
            if self.stopping:
                break  # not processed, not committed: it stays for the partitions' next owner
            messages = [m for records in batch.values() for m in records]
            if not messages:
                continue
            self.busy = True
            try:
                sends = await self.enrichment.send_all(messages)
                offsets = {}
                for m in messages:
                    offsets[TopicPartition(m.topic, m.partition)] = m.offset + 1
                if self.in_flight is not None:
                    await self.in_flight  # acknowledged and committed in order: N before N+1
                self.in_flight = asyncio.ensure_future(self._finish(sends, offsets))
            finally:
                self.busy = False

    async def _finish(self, sends: tuple, offsets: dict) -> None:
        await self.enrichment.settle(*sends)
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - at least once: a missed commit is a repeat, not a loss
            log.warning("commit failed: %s: %s", type(exc).__name__, exc)

    async def finish_under_way(self, timeout: float = 20.0) -> None:
        """Until the batch being enriched and the one being acknowledged are committed."""
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self.in_flight is not None:
            await asyncio.wait_for(asyncio.shield(self.in_flight), max(0.1, deadline - time.monotonic()))

    async def on_stop(self) -> None:
        self.stopping = True
        try:
            await self.finish_under_way()
        except Exception as exc:  # noqa: BLE001 - whatever is not committed is read again
            log.warning("stopping: %s: %s", type(exc).__name__, exc)
        if self.consumer is not None:
            await self.consumer.stop()  # leaves the group: the partitions move at once
        if self.producer is not None:
            await self.producer.stop()


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, loop: EnrichLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked) -> None:
        self.loop.joined = False
        if revoked:
            await self.loop.finish_under_way()  # committed before another worker takes them

    async def on_partitions_assigned(self, assigned) -> None:
        self.loop.joined = True  # a member of the group now, with or without partitions


def create_app(settings: Settings | None = None, health=None) -> faust.App:
    settings = settings or Settings.from_env()
    topics = Topics(settings.topic_prefix)
    # The Faust app runs the worker (life cycle, signals, services); it consumes nothing itself, so
    # its id is not the consumer group's (which EnrichLoop's consumer joins as app_id).
    app = make_app(f"{settings.app_id}-worker", settings, "streams", topic_allow_declare=False)
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False, enable_kafka_producer=False)
    catalog = catalog_for(settings)
    routing = Routing(catalog)
    config_table = ConfigTable(settings.kafka, topics.config, routing)
    app.service(config_table)
    # the Push API's member directory: who an activity is about when the event names no customer ID
    directory = DirectoryView(settings.kafka, topics.push_directory)
    app.service(directory)
    enrichment = Enrichment(Enricher(catalog, routing, settings.max_event_bytes, directory.directory),
                            make_codec(settings.schema_registry_url, topics.enriched), topics, None)
    loop = EnrichLoop(settings, topics, enrichment, config_table, directory)
    app.service(loop)
    install_health(app, health, config_table, joined=lambda: loop.joined)

    @app.task
    async def graceful_stop_on_signals() -> None:
        GracefulStop(app, "stream worker", lambda: setattr(loop, "stopping", True),
                     loop.finish_under_way, faust_commits=False).install()

    return app


def main() -> None:
    """Run one stream worker: ``python -m streams.app`` (settings from the environment)."""
    sys.exit(guarded(_main))


def _main() -> int:
    settings = Settings.from_env()
    use_event_loop()  # a bad ACTIVITY_SYNC_EVENT_LOOP is a one-line error
    batch_settings()  # a bad ACTIVITY_SYNC_BATCH_* value is a one-line error before anything starts
    configure_logging("stream")
    health = Health("stream", metric_names(metrics, core_metrics))
    health.serve(settings.metrics_host, settings.metrics_port)  # a port in use: a one-line error first
    kafka_reachable(settings.kafka)
    app = create_app(settings, health)
    run_worker(app, os.environ.get("ACTIVITY_SYNC_LOG_LEVEL", "info").lower())
    return 0


if __name__ == "__main__":
    main()
