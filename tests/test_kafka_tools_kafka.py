"""Kafka's own tools, fetched with the broker: an event from the console producer is enriched, the
console consumer reads the enriched topic, and consumer-groups shows each endpoint's lag."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from conftest import ROOT, consume, publish_config_file, seed_events, worker_env

from core.avro import decode_any
from core.topics import Topics


def kafka_tool(settings, *args, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "activity_sync.cli", "kafka", *args], input=stdin,
                          capture_output=True, text=True, errors="replace", timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers))


async def test_console_producer_consumer_and_consumer_groups(settings, tmp_path, spawn):
    topics = Topics(settings.topic_prefix)
    await publish_config_file(settings, settings.config_path)
    env = worker_env(settings, tmp_path)
    spawn(["-m", "streams.app"], env, "stream")
    event = dict(seed_events()[0], ActivityKey="console-producer-0001")
    produced = await asyncio.to_thread(kafka_tool, settings, "console-producer", "--topic", topics.raw,
                                       stdin=json.dumps(event) + "\n")
    assert produced.returncode == 0, produced.stderr
    msgs = await consume(settings, topics.enriched, lambda ms: any(
        decode_any(m.value)["activity_key"] == "console-producer-0001" for m in ms), timeout=90)
    record = next(decode_any(m.value) for m in msgs if decode_any(m.value)["activity_key"] == "console-producer-0001")
    assert record["activity_code"] == event["ActivityCode"] and record["customer_id"] == event["AuthorExternalKey"]

    read = await asyncio.to_thread(kafka_tool, settings, "console-consumer", "--topic", topics.enriched,
                                   "--from-beginning", "--max-messages", "1", "--timeout-ms", "20000")
    assert read.returncode == 0 and "console-producer-0001" in read.stdout

    # a sink worker's group, and its lag on activity.enriched, as kafka-consumer-groups shows them
    spawn(["-m", "sinks.worker", "history"], env, "sink")
    group = f"{settings.topic_prefix}activity-sync-sink-history"
    loop = asyncio.get_running_loop()
    deadline, out = loop.time() + 90, ""
    while loop.time() < deadline:
        described = await asyncio.to_thread(kafka_tool, settings, "consumer-groups", "--describe", "--group", group)
        out = described.stdout
        if topics.enriched in out and " 0 " in out.replace("\t", " "):
            break
        await asyncio.sleep(1)
    rows = [ln.split() for ln in out.splitlines() if topics.enriched in ln]
    assert rows and all(r[0] == group for r in rows), out
    header = next(ln.split() for ln in out.splitlines() if "LAG" in ln)
    lag = header.index("LAG")
    assert sum(int(r[lag]) for r in rows if r[lag].isdigit()) == 0, out


async def test_tail_decodes_both_stages_dead_letters(settings):
    """`tail --topic dead`: the delivery stage's dead letters are the enriched Avro record (decoded),
    the stream stage's the raw event (shown as JSON), each with its error headers."""
    from conftest import produce

    from core.avro import SingleObjectCodec
    from core.catalog import load_catalog
    from streams.enrich import Enricher
    from core.config import Endpoint
    from core.routing import Routing

    routing = Routing(load_catalog())
    routing.put_endpoint(Endpoint("crm", tenants=("*",)))
    raw = json.dumps(seed_events()[0]).encode()
    record = Enricher(load_catalog(), routing).enrich(raw, None, "activity.raw", 0, 7, 0).record
    topics = Topics(settings.topic_prefix)
    await produce(settings, topics.dead, [(b"k1", SingleObjectCodec().encode(record))],
                  headers=[("error.stage", b"deliver"), ("error.class", b"FatalError"), ("endpoint", b"crm")])
    await produce(settings, topics.dead, [(b"k2", b'{"ActivityKey": "x", "ActivityDate": "2016-06-13T20:10:53"}')],
                  headers=[("error.stage", b"enrich"), ("error.class", b"BadDate")])
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "activity_sync.cli", "tail", "--topic", "dead",
                                                 "--from-beginning", "--max", "2", "--idle", "20"],
                                capture_output=True, text=True, cwd=ROOT, timeout=120,
                                env=dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
                                         ACTIVITY_SYNC_TOPIC_PREFIX=settings.topic_prefix))
    assert r.returncode == 0, r.stderr
    out = sorted((json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()), key=lambda x: x["key"])
    assert out[0]["headers"]["error.stage"] == "deliver" and out[0]["value"]["activity_key"] == record["activity_key"]
    assert out[0]["value"]["activity_code"] == record["activity_code"] and out[0]["headers"]["endpoint"] == "crm"
    assert out[1]["headers"]["error.class"] == "BadDate" and out[1]["value"]["ActivityKey"] == "x"
