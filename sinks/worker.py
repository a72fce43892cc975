"""A sink worker: one Faust app, and so one consumer group, per endpoint.

Agents ``deliver_to_endpoint`` (on ``activity.enriched``) and ``retry_<tier>`` (one per retry
tier) are methods of :class:`SinkWorker`, a few lines each: they hand batches to the endpoint's
:class:`~sinks.delivery.EndpointDelivery`, which owns everything else. An
endpoint's outage only lags its own group; start the same command again to add workers to the
endpoint (up to the partition count), without touching any other endpoint.

    activity-sync sink --endpoint crm      # or: python -m sinks.worker crm

Every agent runs with concurrency 1 (faust-streaming can commit past in-flight messages
otherwise) and never lets an exception escape (Faust would acknowledge the message anyway).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core import headers as H
from core.avro import decode_any, decode_single_object, reader_schema_without
from core.configtable import ConfigTable
from core.faustapp import (Committer, GracefulStop, commit, hold_batch, install_health, make_app, run_worker, stop_now,
                           use_event_loop)
from core.errors import UsageError, guarded, kafka_reachable
from core.logs import configure_logging
from core.consumer_state import read_progress
from core.health import Health, metric_names
from core.config import catalog_for
from core.routing import Routing
from core.settings import Settings
from core.topics import Topics, partition_ids

from . import metrics
from core import metrics as core_metrics
from .delivery import EndpointDelivery, drain_s
from .holds import EndpointHolds
from .runner import RetryPolicy, clock_from_env

log = logging.getLogger("activity_sync.sinks")

# Faust's stream buffer: what a worker may hold beyond the batch in hand (an interval-scheduled
# endpoint between runs, a paused one) before it stops fetching; the rest waits in Kafka.
STREAM_BUFFER = 4000
# How long a retry agent waits to fill a batch, at least.
RETRY_LINGER_S = 1.0
def group_id(settings: Settings, endpoint: str) -> str:
    return os.environ.get("ACTIVITY_SYNC_SINK_GROUP") or f"{settings.topic_prefix}activity-sync-sink-{endpoint}"


class FaustPublisher:
    """Retry and dead-letter sends; ``flush`` waits for all of a batch's before it is acknowledged."""

    def __init__(self, retry_topics: dict, dead_topic) -> None:
        self.retry_topics = retry_topics
        self.dead_topic = dead_topic
        self.pending: list = []

    async def _send(self, topic, key, value, headers) -> None:
        try:
            self.pending.append(await topic.send(key=key, value=value, headers=headers))
        except Exception as exc:
            stop_now(f"producing to {topic.get_topic_name()} failed: {type(exc).__name__}: {exc}")

    async def retry(self, tier, key, value, headers) -> None:
        await self._send(self.retry_topics[tier], key, value, headers)

    async def dead(self, key, value, headers) -> None:
        await self._send(self.dead_topic, key, value, headers)

    async def flush(self) -> None:
        pending, self.pending = self.pending, []
        for res in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(res, BaseException):  # even too large: the retry and dead topics take 16 MiB
                stop_now(f"a retry or dead-letter record was not written: {type(res).__name__}: {res}")


def make_decoder(settings: Settings):
    slim = reader_schema_without("details")  # providers write details_xml / details_json, not the pairs
    if settings.schema_registry_url:
        return lambda value: decode_any(value, settings.schema_registry_url)
    return lambda value: decode_single_object(value, slim)


class SinkWorker:
    """A sink worker: one Faust app (one consumer group) for one endpoint, its agents and timers.

    The agents are short loops that hand batches to the endpoint's :class:`EndpointDelivery`; state
    lives there, and in the services this class wires to the app (the config table, the endpoint's
    shared holds, the backlog gauges, the memory trim)."""

    def __init__(self, endpoint: str, settings: Settings | None = None, health=None) -> None:
        self.endpoint = endpoint
        self.settings = settings = settings or Settings.from_env()
        self.topics = topics = Topics(settings.topic_prefix)
        self.group = group_id(settings, endpoint)
        self.health = health
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        self.app = app = make_app(self.group, settings, f"sink-{endpoint}",
                                  stream_wait_empty=False,  # a retry agent may sleep until its record is due
                                  producer_linger=0.002, stream_buffer_maxsize=STREAM_BUFFER)
        raw = dict(key_serializer="raw", value_serializer="raw", internal=False)
        self.enriched = app.topic(topics.enriched, **raw)
        self.retry_topics = {tier: app.topic(topics.retry(tier), **raw) for tier, _ in H.RETRY_TIERS}
        self.routing = Routing(catalog_for(settings))
        self.config_table = ConfigTable(settings.kafka, topics.config, self.routing)
        self.holds = EndpointHolds(settings.kafka, topics.control, endpoint)
        self.delivery = EndpointDelivery(
            endpoint, self.routing, FaustPublisher(self.retry_topics, app.topic(topics.dead, **raw)),
            make_decoder(settings), clock_from_env(), on_deleted=self.stop_worker,
            progress=lambda: read_progress(app, topics.enriched), ack=self.done, holds=self.holds,
            share=lambda: partition_share(app, [topics.enriched, *topics.retries]))
        self.backlog = RetryBacklog(settings, self.group, endpoint, topics)
        self.committer = Committer(app)
        self._wire()

    def _wire(self) -> None:
        app, delivery = self.app, self.delivery
        app.service(self.config_table)
        app.service(self.holds)
        install_health(app, self.health, self.config_table)
        app.agent(self.enriched, name="deliver_to_endpoint", concurrency=1)(self.deliver_to_endpoint)
        for tier, _ in H.RETRY_TIERS:
            app.agent(self.retry_topics[tier], name=f"retry_{tier}", concurrency=1)(self.retry_from_tier)
        if self.health is not None:  # started, or disabled on purpose (then nothing is to be started)
            self.health.check("sink_started", lambda: delivery.active is not None
                              or str(delivery.paused or "").startswith("disabled"))
        app.timer(3.0)(self.publish_status)
        app.timer(2.0)(self.backlog.measure)
        app.timer(1.0)(delivery.watch)
        app.timer(5.0)(MemoryTrim(delivery).maybe_trim)
        app.on_partitions_revoked.connect(self.finish_before_handing_over)
        app.task(self.graceful_stop_on_signals)
        app.on_before_shutdown.connect(self.close_sink)

    # ------------------------------------------------------------------ agents
    async def batches(self, stream, least_linger_s: float = 0.0):
        await self.config_table.wait_ready()
        await self.delivery.runner()
        size, linger = self.delivery.batch_settings()
        async for events in stream.take_events(size, within=max(linger, least_linger_s)):
            yield [ev.message for ev in events]

    async def deliver_to_endpoint(self, stream) -> None:
        in_flight: set[asyncio.Future] = set()
        async for messages in self.batches(stream):
            takes = self.delivery.takes_in_flight()
            if takes <= 1 and not in_flight:
                if self.delivery.stopping or not await self.delivery.deliver(messages):
                    await hold_batch()  # stopping: what was not sent stays unacknowledged, for the next owner
                await self.done(messages)
                continue
            # Several takes in flight (concurrent_requests > 1): this one is delivered in the background
            # while the next is taken. Faust acknowledges a take when the next is taken: a reference per
            # message holds it until its delivery is done (done() acknowledges it then).
            if self.delivery.stopping:
                await hold_batch()
            for m in messages:
                m.incref()
            while len(in_flight) >= max(1, takes):
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.ensure_future(self._deliver_take(messages))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

    async def _deliver_take(self, messages) -> None:
        try:
            if await self.delivery.deliver(messages):
                await self.done(messages)
            # else a stop came first: what was not sent stays unacknowledged, for the next owner
        except Exception as exc:  # noqa: BLE001 - crash-only: nothing unfinished is committed
            stop_now(f"endpoint {self.endpoint}: a delivery failed: {type(exc).__name__}: {exc}")

    async def retry_from_tier(self, stream) -> None:
        # A retry has waited minutes already: a second more fills its requests (a backlog drains in the
        # provider's full batches, not in whatever Faust handed over within the real-time linger).
        async for messages in self.batches(stream, least_linger_s=RETRY_LINGER_S):
            if self.delivery.stopping or not await self.delivery.retry(messages):
                await hold_batch()
            await self.done(messages)

    async def done(self, messages) -> None:
        """A batch is delivered (or on a retry tier, or dead-lettered): acknowledge it and have it
        committed in the background (:class:`~core.faustapp.Committer`), so a stop after this point
        does not send it again, and a crash at most repeats what the commit under way covers."""
        for m in messages:
            self.app.consumer.ack(m)
        self.committer.request()

    # ------------------------------------------------------------------ timers and signals
    async def publish_status(self) -> None:
        st = metrics.status(self.endpoint)
        lag = self.backlog.lag
        await self.holds.publish_status(self.worker_id, {
            **st.as_dict(), "endpoint": self.endpoint, "worker": self.worker_id, "at": time.time(),
            "paused": self.delivery.paused, "hold_until": self.holds.hold_until(),
            "enriched_lag": lag.get("enriched", 0),
            "retry_backlog": {tier: lag.get(tier, 0) for tier, _ in H.RETRY_TIERS}})

    async def finish_before_handing_over(self, app, revoked, **kwargs) -> None:
        # the write under way finishes and is committed before another worker takes its partitions
        if await self.delivery.drain():
            await self.committer.wait()
            await commit(app)

    async def graceful_stop_on_signals(self) -> None:
        GracefulStop(self.app, f"endpoint {self.endpoint}", self.stopping, self.delivery.drain).install()

    def stopping(self) -> None:
        self.delivery.stopping = True

    async def close_sink(self, app, **kwargs) -> None:
        await self.delivery.stop()

    @staticmethod
    def stop_worker() -> None:
        """The endpoint was deleted: stop as on SIGTERM (Faust commits what was delivered)."""
        os.kill(os.getpid(), signal.SIGTERM)


def partition_share(app: faust.App, topic_names: list[str]) -> float:
    """This worker's share of its endpoint's partitions (of activity.enriched and the retry tiers): the
    share of the endpoint's rate limit and request budget it may use, so its workers together keep them."""
    try:
        names = set(topic_names)
        mine = sum(1 for tp in app.consumer.assignment() if tp.topic in names)
        total = sum(app.consumer.topic_partitions(t) or 0 for t in names)
    except Exception:  # noqa: BLE001 - not known yet
        return 1.0
    return mine / total if mine and total else 1.0


class MemoryTrim:
    """Give freed memory back to the system once the worker is idle (after a backlog drained, say).

    CPython frees objects but glibc keeps the pages for reuse, so a worker that drained a million
    retries would otherwise keep its peak RSS for good. Idle means no write for 10 s.
    """

    def __init__(self, delivery: EndpointDelivery) -> None:
        self.delivery = delivery
        self.last_writes = -1
        self.quiet_since = 0.0
        self.trimmed = True
        try:
            import ctypes

            self.trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to do
            self.trim = None

    async def maybe_trim(self) -> None:
        import gc
        import time

        writes = self.delivery.writes
        now = time.monotonic()
        if writes != self.last_writes:
            self.last_writes, self.quiet_since, self.trimmed = writes, now, False
            return
        if self.trim is not None and not self.trimmed and now - self.quiet_since >= 10:
            gc.collect()
            self.trim(0)
            self.trimmed = True


class RetryBacklog:
    """The ``retry_backlog`` and ``enriched_lag`` gauges: records in each retry tier, and of
    activity.enriched, this endpoint's group has not yet passed."""

    def __init__(self, settings: Settings, group: str, endpoint: str, topics: Topics) -> None:
        self.settings, self.group, self.endpoint, self.topics = settings, group, endpoint, topics
        self.admin = self.consumer = None
        self.parts: dict = {}
        self.lag: dict[str, int] = {}  # the last measure: "enriched" and each tier
        self.warned = False
        for tier, _ in H.RETRY_TIERS:
            metrics.RETRY_BACKLOG.labels(endpoint, tier).set(0)

    async def measure(self) -> None:
        try:
            kafka = self.settings.kafka
            if self.admin is None:
                self.admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
                await self.admin.start()
                self.consumer = AIOKafkaConsumer(**kafka.aiokafka_kwargs())
                await self.consumer.start()
                self.parts = {tier: [TopicPartition(self.topics.retry(tier), p)
                                     for p in await partition_ids(kafka, self.topics.retry(tier))]
                              for tier, _ in H.RETRY_TIERS}
                self.parts["enriched"] = [TopicPartition(self.topics.enriched, p)
                                          for p in await partition_ids(kafka, self.topics.enriched)]
            committed = await self.admin.list_consumer_group_offsets(self.group)
            for tier, parts in self.parts.items():
                ends = await self.consumer.end_offsets(parts)
                lag = 0
                for tp in parts:
                    c = committed.get(tp)
                    lag += ends[tp] - (c.offset if c is not None and c.offset >= 0 else 0)
                self.lag[tier] = lag
                if tier == "enriched":
                    metrics.ENRICHED_LAG.labels(self.endpoint).set(lag)
                else:
                    metrics.RETRY_BACKLOG.labels(self.endpoint, tier).set(lag)
        except Exception as exc:  # a metric must never take the worker down
            if not self.warned:
                self.warned = True
                log.warning("retry backlog not measured: %s: %s", type(exc).__name__, exc)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sys.exit(guarded(lambda: _main(argv)))


def _main(argv: list[str]) -> int:
    endpoint = argv[0] if argv else os.environ.get("ACTIVITY_SYNC_ENDPOINT")
    if not endpoint:
        raise UsageError("which endpoint? python -m sinks.worker ENDPOINT (or ACTIVITY_SYNC_ENDPOINT)")
    level = os.environ.get("ACTIVITY_SYNC_LOG_LEVEL", "INFO")
    settings = Settings.from_env()
    use_event_loop()  # a bad ACTIVITY_SYNC_EVENT_LOOP is a one-line error
    drain_s()  # a bad ACTIVITY_SYNC_DRAIN_S: one line, before anything starts
    RetryPolicy.from_settings()  # a bad ACTIVITY_SYNC_RETRY_* value: one line, before anything starts
    configure_logging("sink", endpoint=endpoint)
    health = Health("sink", metric_names(metrics, core_metrics))
    health.serve(settings.metrics_host, settings.metrics_port)  # a port in use: a one-line error first
    kafka_reachable(settings.kafka)
    run_worker(SinkWorker(endpoint, settings, health).app, level.lower())
    return 0


if __name__ == "__main__":
    main()
