"""A sink worker: one Faust app, and so one consumer group, per endpoint.

Agents ``deliver_to_endpoint`` (on ``activity.enriched``) and ``retry_<tier>`` (one per retry
tier) hand deliveries for this endpoint to the :class:`~sinks.runner.DeliveryRunner`. An
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
import sys
import tempfile

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams import metrics as stream_metrics
from streams.app import catalog_for, run_worker, stop_now
from streams.avro import decode_any, decode_single_object, reader_schema_without
from streams.configtable import ConfigTable
from streams.routing import Routing
from streams.settings import Settings
from streams.topics import MAX_EVENT_TOPIC_BYTES, Topics, partition_ids

from . import metrics
from .contract import Delivery
from .registry import make_context, provider_for
from .runner import DeliveryRunner, Pending, RetryPolicy, clock_from_env, pending_from_retry

log = logging.getLogger("activity_sync.sinks")


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


def create_sink_app(endpoint: str, settings: Settings | None = None) -> faust.App:
    settings = settings or Settings.from_env()
    topics = Topics(settings.topic_prefix)
    broker, creds = settings.kafka.faust_broker()
    gid = group_id(settings, endpoint)
    app = faust.App(
        gid, broker=broker, broker_credentials=creds, store="memory://",
        datadir=os.environ.get("ACTIVITY_SYNC_DATADIR") or tempfile.mkdtemp(prefix="activity-sync-sink-"),
        web_enabled=False, topic_disable_leader=True, consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0, producer_acks=-1, **settings.faust_group_settings(),
        producer_max_request_size=MAX_EVENT_TOPIC_BYTES + 65536,
        producer_max_batch_size=256 * 1024,  # Faust's 16 KB default holds ~4 enriched records
        consumer_max_fetch_size=MAX_EVENT_TOPIC_BYTES + 65536,
        # A retry agent may sleep until its record is due: a rebalance must not wait for it.
        stream_wait_empty=False,
        producer_linger=0.002,
    )
    raw = dict(key_serializer="raw", value_serializer="raw", internal=False)
    enriched = app.topic(topics.enriched, **raw)
    policy = RetryPolicy.from_env()
    retry_topics = {tier: app.topic(topics.retry(tier), **raw) for tier, _ in policy.tiers}
    dead = app.topic(topics.dead, **raw)
    routing = Routing(catalog_for(settings))
    config_table = ConfigTable(settings.kafka, topics.config, routing)
    app.service(config_table)
    clock = clock_from_env()
    publisher = FaustPublisher(retry_topics, dead)
    state: dict = {"runner": None, "lock": asyncio.Lock()}

    async def runner() -> DeliveryRunner:
        """Build the endpoint's sink and runner once the config table knows the endpoint."""
        async with state["lock"]:
            if state["runner"] is not None:
                return state["runner"]
            await config_table.wait_ready()
            while endpoint not in routing.endpoints:
                log.warning("endpoint %r is not in %s yet; waiting", endpoint, topics.config)
                await asyncio.sleep(2)
            ep = routing.endpoints[endpoint]
            s = dict(ep.settings)
            try:
                sink = provider_for(ep.provider_type, s)()
                await sink.start(make_context(endpoint, s, lambda st: metrics.HTTP.labels(endpoint, str(st)).inc()))
                r = DeliveryRunner(endpoint, sink, publisher, RetryPolicy.from_env(s), clock,
                                   batch_size=int(s.get("batch_size", 200)),
                                   rate_per_s=float(s.get("rate_limit_per_s", 0)),
                                   write_timeout_s=float(s.get("timeout_s", 10)) * 3 + 5,
                                   outcome=metrics.MetricsOutcome(endpoint))
            except Exception as exc:  # nothing consumed yet: exit with the reason, not a stalled agent
                stop_now(f"endpoint {endpoint}: cannot start its sink: {type(exc).__name__}: {exc}")
            state["sink"] = sink
            state["runner"] = r
            for tier, _ in r.policy.tiers:
                metrics.RETRY_BACKLOG.labels(endpoint, tier).set(0)
            log.info("endpoint %s: provider %s, batch %s, group %s", endpoint, sink.provider, r.batch_size, gid)
            return r

    def batch_settings() -> tuple[int, float]:
        ep = routing.endpoints.get(endpoint)
        s = ep.settings if ep else {}
        return int(s.get("batch_size", 200)), float(s.get("linger_ms", 50)) / 1000

    def to_pending(msg, record: dict, entry: dict) -> Pending:
        ea = record.get("enriched_at")
        return Pending(Delivery.from_record(record, entry), msg.key, msg.value, (msg.topic, msg.partition, msg.offset),
                       enriched_at=ea.timestamp() if hasattr(ea, "timestamp") else None)

    async def dead_letter_undecodable(msg, exc: Exception) -> None:
        from streams.app import dead_letter_headers

        headers = dead_letter_headers(msg.topic, msg.partition, msg.offset, exc, "deliver")
        headers.append(("error.endpoint", endpoint.encode()))
        await publisher.dead(msg.key, msg.value, headers)
        metrics.DELIVERIES.labels(endpoint, "dead").inc()
        metrics.DEAD_REASONS.labels(endpoint, type(exc).__name__).inc()

    slim = reader_schema_without("details")  # providers write details_xml / details_json, not the pairs

    def decode(value: bytes) -> dict:
        if settings.schema_registry_url:
            return decode_any(value, settings.schema_registry_url)
        return decode_single_object(value, slim)

    def entry_for(record: dict) -> dict | None:
        for e in record["deliveries"]:
            if e["endpoint"] == endpoint:
                return e
        return None

    @app.agent(enriched, name="deliver_to_endpoint", concurrency=1)
    async def deliver_to_endpoint(stream):
        r = await runner()
        size, linger = batch_settings()
        async for events in stream.take_events(size, within=linger):
            items = []
            for ev in events:
                msg = ev.message
                try:
                    hdr = dict(msg.headers or [])
                    if "endpoints" in hdr and endpoint not in hdr["endpoints"].decode().split(","):
                        continue  # not for this endpoint: skip without decoding
                    record = decode(msg.value)
                    entry = entry_for(record)
                    if entry is not None:
                        items.append(to_pending(msg, record, entry))
                except Exception as exc:  # undecodable: dead-letter, never drop
                    log.error("undecodable record %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
                    await dead_letter_undecodable(msg, exc)
            if items:
                await r.deliver(items)
            await publisher.flush()

    def retry_agent(tier: str):
        async def retry(stream):
            r = await runner()
            size, linger = batch_settings()
            async for events in stream.take_events(size, within=linger):
                due_now: list[Pending] = []
                for ev in events:
                    msg = ev.message
                    try:
                        hdr = dict(msg.headers or [])
                        if hdr.get("retry.endpoint", b"").decode() != endpoint:
                            continue  # another endpoint's retry
                        record = decode(msg.value)
                        entry = entry_for(record)
                        if entry is None:
                            raise ValueError(f"retry record has no delivery entry for {endpoint}")
                        p, due, last = pending_from_retry(Delivery.from_record(record, entry), msg.key, msg.value, hdr)
                    except Exception as exc:
                        log.error("bad retry record %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset, exc)
                        await dead_letter_undecodable(msg, exc)
                        continue
                    if await r.expire_or_keep(p, last):
                        continue
                    if due > clock.now():
                        if due_now:  # what is due goes now, not after the wait
                            await r.deliver(due_now)
                            due_now = []
                        await clock.sleep_until(due)
                        if await r.expire_or_keep(p, last):
                            continue
                    due_now.append(p)
                if due_now:
                    await r.deliver(due_now)
                await publisher.flush()
        retry.__name__ = f"retry_{tier}"
        return retry

    for tier, _ in policy.tiers:
        app.agent(retry_topics[tier], name=f"retry_{tier}", concurrency=1)(retry_agent(tier))

    backlog_state: dict = {}

    @app.timer(2.0)
    async def retry_backlog() -> None:
        try:
            if "admin" not in backlog_state:
                backlog_state["admin"] = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
                await backlog_state["admin"].start()
                backlog_state["consumer"] = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs())
                await backlog_state["consumer"].start()
                backlog_state["parts"] = {tier: [TopicPartition(topics.retry(tier), p) for p in
                                                 await partition_ids(settings.kafka, topics.retry(tier))]
                                          for tier, _ in policy.tiers}
            committed = await backlog_state["admin"].list_consumer_group_offsets(gid)
            for tier, parts in backlog_state["parts"].items():
                ends = await backlog_state["consumer"].end_offsets(parts)
                lag = 0
                for tp in parts:
                    c = committed.get(tp)
                    lag += ends[tp] - (c.offset if c is not None and c.offset >= 0 else 0)
                metrics.RETRY_BACKLOG.labels(endpoint, tier).set(lag)
        except Exception as exc:  # a metric must never take the worker down
            if not backlog_state.get("warned"):
                backlog_state["warned"] = True
                log.warning("retry backlog not measured: %s: %s", type(exc).__name__, exc)

    @app.on_before_shutdown.connect
    async def close_sink(app, **kwargs) -> None:
        sink = state.get("sink")
        if sink is not None:
            await sink.stop()

    return app


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    endpoint = argv[0] if argv else os.environ.get("ACTIVITY_SYNC_ENDPOINT")
    if not endpoint:
        raise SystemExit("usage: python -m sinks.worker ENDPOINT")
    level = os.environ.get("ACTIVITY_SYNC_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    stream_metrics.serve(settings.metrics_host, settings.metrics_port)
    app = create_sink_app(endpoint, settings)
    run_worker(app, level.lower())


if __name__ == "__main__":
    main()
