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
import tempfile
import time
import traceback
from functools import partial

import faust
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from . import metrics
from .avro import make_codec
from .catalog import Catalog, load_catalog
from .configtable import ConfigTable
from .enrich import Enricher
from .envelope import MalformedEvent
from .routing import Routing, read_config_file
from .settings import Settings
from .topics import MAX_EVENT_TOPIC_BYTES, Topics

log = logging.getLogger("activity_sync.streams")

BATCH_SIZE = int(os.environ.get("ACTIVITY_SYNC_BATCH_SIZE", "200"))
BATCH_WITHIN = float(os.environ.get("ACTIVITY_SYNC_BATCH_WITHIN", "0.01"))


# The broker or the client refuses a record this large: the event is dead-lettered, not retried.
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


def stop_now(reason: str) -> None:
    """Crash-only: end the process before Faust can commit offsets past a record not safely written.

    Faust acknowledges a batch's events even when its loop body fails, and commits what is
    acknowledged; only a process that is gone commits nothing. The restarted worker re-reads
    from the last commit: at-least-once, nothing lost.
    """
    log.critical("stopping at once, offsets left uncommitted: %s", reason)
    logging.shutdown()
    os._exit(70)


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


def dead_letter_headers(topic: str, partition: int, offset: int, exc: BaseException, stage: str,
                        attempts: int = 1) -> list[tuple[str, bytes]]:
    """Headers naming where a dead letter came from and why (Kafka Connect's DLQ convention, our prefix)."""
    return [
        ("error.stage", stage.encode()),
        ("error.topic", topic.encode()),
        ("error.partition", str(partition).encode()),
        ("error.offset", str(offset).encode()),
        ("error.class", type(exc).__name__.encode()),
        ("error.message", str(exc)[:2000].encode("utf-8", "replace")),
        ("error.attempts", str(attempts).encode()),
        ("error.timestamp", str(int(time.time() * 1000)).encode()),
    ]


def catalog_for(settings: Settings) -> Catalog:
    if settings.config_path:
        doc = read_config_file(settings.config_path)
        return load_catalog(doc.get("catalog"), doc.get("customer_keys"))
    return load_catalog()


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or Settings.from_env()
    topics = Topics(settings.topic_prefix)
    broker, creds = settings.kafka.faust_broker()
    datadir = os.environ.get("ACTIVITY_SYNC_DATADIR") or tempfile.mkdtemp(prefix="activity-sync-")
    app = faust.App(
        settings.app_id,
        broker=broker,
        broker_credentials=creds,
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=True,  # Faust's own internal topics only; ours are declared in topics.py
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        producer_acks=-1,
        **settings.faust_group_settings(),
        producer_max_request_size=MAX_EVENT_TOPIC_BYTES + 65536,
        producer_max_batch_size=256 * 1024,  # Faust's 16 KB default holds ~4 enriched records
        consumer_max_fetch_size=MAX_EVENT_TOPIC_BYTES + 65536,
        producer_linger=0.005,
        stream_buffer_maxsize=4 * BATCH_SIZE,
    )
    raw_topic = app.topic(topics.raw, key_serializer="raw", value_serializer="raw",
                          partitions=settings.partitions, internal=False)
    dead_topic = app.topic(topics.dead, key_serializer="raw", value_serializer="raw", internal=False)

    catalog = catalog_for(settings)
    routing = Routing(catalog)
    config_table = ConfigTable(settings.kafka, topics.config, routing)
    app.service(config_table)
    enricher = Enricher(catalog, routing, settings.max_event_bytes)
    codec = make_codec(settings.schema_registry_url, topics.enriched)

    @app.agent(raw_topic, name="enrich_activities")
    async def enrich_activities(stream):
        await config_table.wait_ready()
        producer = app.producer
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN):
            started = time.monotonic()
            now = time.time()
            pending: list = []  # (future, raw message, resend): settled before the batch is acknowledged
            sent = 0
            for event in events:
                msg = event.message
                metrics.EVENTS_IN.inc()
                try:
                    out = enricher.enrich(msg.value, msg.key, msg.topic, msg.partition, msg.offset,
                                          int(now * 1000))
                    value = codec.encode(out.record)
                except MalformedEvent as exc:
                    pending.append((await dead_letter(msg, exc), None, None))
                    continue
                except Exception as exc:  # a bug must not lose the event either
                    log.error("enrichment failed at %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset,
                              traceback.format_exc())
                    pending.append((await dead_letter(msg, exc), None, None))
                    continue
                endpoints = ",".join(d["endpoint"] for d in out.record["deliveries"])
                # Straight to Faust's producer (Topic.send's channel machinery costs ~5% CPU here).
                send = partial(producer.send, topics.enriched, out.key, value, None, None,
                               [("endpoints", endpoints.encode())])
                try:
                    fut = await send()
                except TOO_LARGE as exc:
                    pending.append((await dead_letter(msg, exc), None, None))
                    continue
                except Exception as exc:
                    stop_now(f"producing to {topics.enriched} failed: {type(exc).__name__}: {exc}")
                pending.append((fut, msg, send))
                sent += 1
                if out.unknown_code:
                    metrics.unknown_code(out.record["activity_code"])
                for d in out.record["deliveries"]:
                    metrics.ROUTED.labels(d["endpoint"]).inc()
                if msg.timestamp:
                    metrics.LATENCY.observe(max(0.0, now - msg.timestamp))
            metrics.ENRICHED.inc(sent - await settle(pending, too_large))
            metrics.BATCH_SECONDS.observe(time.monotonic() - started)

    async def too_large(msg, exc: BaseException) -> None:
        if msg is None:
            stop_now(f"a dead letter was refused: {exc}")
        await settle([(await dead_letter(msg, exc), None, None)], too_large)

    async def dead_letter(msg, exc: BaseException):
        """Send the raw event to the dead-letter topic; answer the send's future."""
        metrics.DEAD.labels(type(exc).__name__).inc()
        log.warning("dead-lettered %s[%s]@%s: %s: %s", msg.topic, msg.partition, msg.offset,
                    type(exc).__name__, str(exc)[:200])
        return await dead_topic.send(key=msg.key, value=msg.value,
                              headers=dead_letter_headers(msg.topic, msg.partition, msg.offset, exc, "enrich"))

    return app


def run_worker(app: faust.App, loglevel: str) -> None:
    """Run a Faust app as a worker, without the terminal spinner.

    Faust's spinner sets the root logger to DEBUG (so it can spin on every record) whenever the
    level is WARN or above; every ``log.debug`` in aiokafka's send path then builds a record:
    about 8% of the stream worker's CPU.
    """
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


def main() -> None:
    """Run one stream worker: ``python -m streams.app`` (settings from the environment)."""
    logging.basicConfig(level=os.environ.get("ACTIVITY_SYNC_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    metrics.serve(settings.metrics_host, settings.metrics_port)
    app = create_app(settings)
    run_worker(app, os.environ.get("ACTIVITY_SYNC_LOG_LEVEL", "info").lower())


if __name__ == "__main__":
    main()
