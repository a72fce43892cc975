"""Kafka's own tools, fetched with the broker: an event from the console producer is enriched, the
console consumer reads the enriched topic, and consumer-groups shows each endpoint's lag."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from conftest import ROOT, consume, publish_config_file, seed_events, worker_env

from streams.avro import decode_any
from streams.topics import Topics


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
