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
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from core import headers as H
from core import metrics as core_metrics
from . import metrics
from core.avro import make_codec
from core.configtable import ConfigTable
from core.envvars import env_float, env_int
from core.errors import guarded, kafka_reachable
from core.logs import configure_logging, record_fields
from core.health import Health, metric_names
from .enrich import Enricher
from core.envelope import MalformedEvent
from core.faustapp import GracefulStop, hold_batch, install_health, make_app, run_worker, stop_now, use_event_loop
from core.config import catalog_for
from core.routing import Routing
from core.settings import Settings
from core.topics import Topics

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
        for msg in messages:
            metrics.EVENTS_IN.inc()
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
                metrics.ROUTED.labels(d["endpoint"]).inc()
            if not out.record["deliveries"]:
                metrics.unrouted(out.record["tenant_code"], self.enricher.routing.tenants())
            if msg.timestamp:
                metrics.LATENCY.observe(max(0.0, now - msg.timestamp))  # Faust: seconds
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


def create_app(settings: Settings | None = None, health=None) -> faust.App:
    settings = settings or Settings.from_env()
    topics = Topics(settings.topic_prefix)
    batch_size, batch_within = batch_settings()
    app = make_app(settings.app_id, settings, "streams",
                   topic_allow_declare=True,  # Faust's own internal topics only; ours are declared in topics.py
                   producer_linger=0.005, stream_buffer_maxsize=4 * batch_size)
    raw_topic = app.topic(topics.raw, key_serializer="raw", value_serializer="raw",
                          partitions=settings.partitions, internal=False)
    catalog = catalog_for(settings)
    routing = Routing(catalog)
    config_table = ConfigTable(settings.kafka, topics.config, routing)
    app.service(config_table)
    install_health(app, health, config_table)

    async def send(topic, key, value, headers):
        # Straight to Faust's producer (Topic.send's channel machinery costs ~5% CPU here).
        return await app.producer.send(topic, key, value, None, None, headers)

    enrichment = Enrichment(Enricher(catalog, routing, settings.max_event_bytes),
                            make_codec(settings.schema_registry_url, topics.enriched), topics, send)

    state = {"stopping": False, "busy": False}
    in_flight: list[asyncio.Task] = []  # the batch whose sends are being acknowledged (at most one)

    async def finish(sends: tuple, messages: list) -> None:
        """Once every send of a batch is acknowledged: acknowledge its raw events and commit."""
        await enrichment.settle(*sends)
        for m in messages:
            m.ack(app.consumer)  # the reference taken below: the last one, so Faust may commit the offset
        await app.consumer.commit()

    @app.agent(raw_topic, name="enrich_activities")
    async def enrich_activities(stream):
        """Batch N+1 is enriched and sent while the broker acknowledges batch N (the two overlap;
        nothing of N+1 is acknowledged before N is committed). A crash repeats at most these two."""
        await config_table.wait_ready()
        async for events in stream.take_events(batch_size, within=batch_within):
            if state["stopping"]:
                await hold_batch()
            state["busy"] = True
            try:
                messages = [ev.message for ev in events]
                for m in messages:  # Faust acknowledges a batch when the next is taken: this reference
                    m.incref()     # holds each event unacknowledged until its send is acknowledged
                sends = await enrichment.send_all(messages)
                if in_flight:
                    await in_flight.pop()  # acknowledged in order: N before N+1
                in_flight.append(asyncio.ensure_future(finish(sends, messages)))
            finally:
                state["busy"] = False

    async def drain() -> None:
        deadline = time.monotonic() + 20
        while (state["busy"] or any(not t.done() for t in in_flight)) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    @app.task
    async def graceful_stop_on_signals() -> None:
        GracefulStop(app, "stream worker", lambda: state.update(stopping=True), drain).install()

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
