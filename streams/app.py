"""The stream worker: a Faust app whose agent ``enrich_activities`` turns ``activity.raw`` into
``activity.enriched``, dead-lettering what can never be enriched.

The agent only wires topics to the pure functions in :mod:`streams.enrich`. It never lets an
exception escape (Faust acknowledges a message whose agent raised, and it would be lost): every
event ends either on ``activity.enriched`` or on ``activity.dead`` with the reason in its
headers. Sends happen inside the ``take_events`` loop body, before the batch is acknowledged,
and Faust flushes the producer before it commits an offset, so a crash re-reads rather than loses
(at-least-once; consumers drop duplicates by ``activity_key``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import traceback

import faust

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
    app.activity_sync = {"settings": settings, "topics": topics, "routing": routing, "config": config_table}

    @app.agent(raw_topic, name="enrich_activities")
    async def enrich_activities(stream):
        await config_table.wait_ready()
        producer = app.producer
        async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN):
            started = time.monotonic()
            now = time.time()
            for event in events:
                msg = event.message
                metrics.EVENTS_IN.inc()
                try:
                    out = enricher.enrich(msg.value, msg.key, msg.topic, msg.partition, msg.offset,
                                          int(now * 1000))
                    value = codec.encode(out.record)
                except MalformedEvent as exc:
                    await dead_letter(msg, exc)
                    continue
                except Exception as exc:  # a bug must not lose the event either
                    log.error("enrichment failed at %s[%s]@%s: %s", msg.topic, msg.partition, msg.offset,
                              traceback.format_exc())
                    await dead_letter(msg, exc)
                    continue
                endpoints = ",".join(d["endpoint"] for d in out.record["deliveries"])
                # Straight to Faust's producer (Topic.send's channel machinery costs ~5% CPU here);
                # Faust still flushes this producer before it commits the batch's offsets.
                await producer.send(topics.enriched, out.key, value, None, None, [("endpoints", endpoints.encode())])
                metrics.ENRICHED.inc()
                if out.unknown_code:
                    metrics.unknown_code(out.record["activity_code"])
                for d in out.record["deliveries"]:
                    metrics.ROUTED.labels(d["endpoint"]).inc()
                if msg.timestamp:
                    metrics.LATENCY.observe(max(0.0, now - msg.timestamp))
            metrics.BATCH_SECONDS.observe(time.monotonic() - started)

    async def dead_letter(msg, exc: BaseException) -> None:
        metrics.DEAD.labels(type(exc).__name__).inc()
        log.warning("dead-lettered %s[%s]@%s: %s: %s", msg.topic, msg.partition, msg.offset,
                    type(exc).__name__, str(exc)[:200])
        await dead_topic.send(key=msg.key, value=msg.value,
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
