"""The stream stage against the real broker: raw -> enriched, dead letters, crash safety, metrics."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import fastavro
import pytest
from conftest import FIXTURES, ROOT, consume, produce, publish_config_file, seed_events, worker_env

from activity_sync.devtools.broker import BrokerError, LocalKafka, free_port
from core.topics import TWO_WEEKS_MS, Topics, describe_topic_configs

SCHEMA = fastavro.parse_schema(json.loads((ROOT / "schemas" / "activity_enriched.avsc").read_text()))


def decode_with_schema_file(value: bytes) -> dict:
    assert value[:2] == b"\xc3\x01", "single-object encoding marker"
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), SCHEMA, None)


def keyed(events: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(e.get("AgentContactKey", "k").encode(), json.dumps(e).encode()) for e in events]


def synthetic(n: int, start: int = 0) -> list[dict]:
    base = seed_events()
    return [dict(base[i % len(base)], ActivityKey=f"syn-{start + i:07d}") for i in range(n)]


def by_key(msgs) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in msgs:
        rec = decode_with_schema_file(m.value)
        out.setdefault(rec["activity_key"], []).append(rec)
    return out


async def test_topics_declared_with_their_configs(settings):
    t = Topics(settings.topic_prefix)
    cfg = await describe_topic_configs(settings.kafka, [t.raw, t.enriched, t.dead, t.config, *t.retries])
    for name in t.retries:
        assert cfg[name]["retention.ms"] == str(TWO_WEEKS_MS) == "1209600000"
    assert cfg[t.config]["cleanup.policy"] == "compact"
    assert cfg[t.dead]["retention.ms"] == "-1"
    assert int(cfg[t.raw]["max.message.bytes"]) >= 5 * 1024 * 1024 + 1024


async def test_seed_activities_come_out_enriched(settings, stream_worker):
    await publish_config_file(settings, FIXTURES / "config.yaml")
    worker = stream_worker()
    seeds = seed_events()
    await produce(settings, Topics(settings.topic_prefix).raw, keyed(seeds))
    msgs = await consume(settings, Topics(settings.topic_prefix).enriched, lambda m: len(m) >= 5, timeout=90)
    recs = {k: v[0] for k, v in by_key(msgs).items()}
    assert set(recs) == {e["ActivityKey"] for e in seeds}, worker.output()[-3000:]
    create = recs["9896253f-3efe-405a-896f-a8384910543c"]
    assert create["customer_id"] == "aquill" and create["category"] == "Discussions"
    assert create["activity_date"].isoformat() == "2016-06-13T20:10:53.462885+00:00"
    assert create["link_url"].startswith("https://community.example.org/communities/")
    assert [(d["endpoint"], d["description"], d["writeback_code1"], d["writeback_code2"])
            for d in create["deliveries"]] == [
        ("crm", 'Avery Quill posted a new message titled "Annual Conference" in the Demo Community community',
         "COMMUNITY", "DISC_POST"),
        ("history", 'Avery Quill posted "Annual Conference"', "DiscussionMessageCreate", None)]
    view = recs["6ba8a94f-0d7a-419f-b5bf-b60fcdc567e1"]
    assert view["customer_id"] == "0037yHT1MAAW" and view["category"] == "Resource Libraries"
    assert view["deliveries"][0]["description"] == \
        'Jordan Rivera viewed the "SNAP! Training: New Admin Training" library entry'
    assert 'Name="Action">View<' in view["details_xml"] and json.loads(view["details_json"])["Action"] == "View"
    for rec in recs.values():
        assert rec["deliveries"], rec["activity_code"]
        assert rec["source"]["topic"] == Topics(settings.topic_prefix).raw


async def test_poison_goes_to_dead_letters_and_the_stream_goes_on(settings, stream_worker):
    metrics_port = free_port()
    await publish_config_file(settings, FIXTURES / "config.yaml")
    worker = stream_worker(ACTIVITY_SYNC_METRICS_PORT=metrics_port)
    good = synthetic(6)
    bad_date = dict(good[0], ActivityKey="bad-date", ActivityDate="13/06/2016 20:10")
    no_key = {k: v for k, v in good[0].items() if k != "ActivityKey"}
    huge = dict(good[0], ActivityKey="huge", Body="x" * (5 * 1024 * 1024))
    raw = Topics(settings.topic_prefix).raw
    await produce(settings, raw, [
        (b"a", json.dumps(good[0]).encode()),
        (b"a", b"\x00\xff garbage \xfe"),
        (b"a", json.dumps(good[1]).encode()),
        (b"a", b'[{"ActivityKey": "in-an-array"}]'),
        (b"a", json.dumps(no_key).encode()),
        (b"a", json.dumps(good[2]).encode()),
        (b"a", json.dumps(bad_date).encode()),
        (b"a", json.dumps(huge).encode()),
        (b"a", json.dumps(good[3]).encode()),
        (b"b", json.dumps(good[4]).encode()),
        (b"b", json.dumps(good[5]).encode()),
    ])
    dead = await consume(settings, Topics(settings.topic_prefix).dead, lambda m: len(m) >= 5, timeout=90)
    enriched = await consume(settings, Topics(settings.topic_prefix).enriched, lambda m: len(m) >= 6, timeout=60)
    assert set(by_key(enriched)) == {e["ActivityKey"] for e in good}, worker.output()[-3000:]
    reasons = {}
    for m in dead:
        h = {k: v.decode() for k, v in m.headers}
        assert h["error.topic"] == raw and h["error.stage"] == "enrich"
        assert int(h["error.offset"]) >= 0 and h["error.partition"].isdigit()
        reasons[h["error.class"]] = (h["error.message"], m.value)
    assert set(reasons) == {"NotJson", "NotAnObject", "MissingField", "BadDate", "EventTooLarge"}
    assert "ActivityKey" in reasons["MissingField"][0]
    assert "13/06/2016" in reasons["BadDate"][0]
    assert reasons["NotJson"][1] == b"\x00\xff garbage \xfe"  # the original bytes, nothing lost
    assert len(reasons["EventTooLarge"][1]) > 5 * 1024 * 1024
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    assert 'activity_sync_events_dead_lettered_total{reason="EventTooLarge"} 1.0' in body
    assert "activity_sync_events_enriched_total 6.0" in body
    assert "activity_sync_events_in_total 11.0" in body
    assert "activity_sync_enrich_latency_seconds_bucket" in body


async def test_hostile_events_are_dead_lettered_with_their_class_and_no_traceback(settings, stream_worker):
    await publish_config_file(settings, FIXTURES / "config.yaml")
    worker = stream_worker()
    good = synthetic(2)
    base = json.dumps(dict(good[0], ActivityKey="KEY")).encode()
    hostile = {
        "deep": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "NotJson"),
        "surrogate-prop": (base.replace(b'"KEY"', b'"surrogate-prop", "Body2": "\\ud800"'),
                           "InvalidField"),
        "surrogate-key": (base.replace(b'"KEY"', b'"k\\ud800"'), "InvalidField"),
        "overflow-date": (json.dumps(dict(good[0], ActivityKey="overflow-date",
                                          ActivityDate="0001-01-01T00:00:00+05:00")).encode(), "BadDate"),
        "nan": (base.replace(b'"KEY"', b'"nan", "Score": NaN'), "NotJson"),
        "nul": (base.replace(b'"KEY"', b'"n\\u0000l"'), "InvalidField"),
        "dup": (base.replace(b'"KEY"', b'"dup", "ActivityKey": "dup2"'), "InvalidField"),
    }
    raw = Topics(settings.topic_prefix).raw
    await produce(settings, raw, [(b"h", v) for v, _ in hostile.values()] +
                  [(b"h", json.dumps(g).encode()) for g in good])
    dead = await consume(settings, Topics(settings.topic_prefix).dead, lambda m: len(m) >= len(hostile), timeout=90)
    enriched = await consume(settings, Topics(settings.topic_prefix).enriched, lambda m: len(m) >= 2, timeout=60)
    assert set(by_key(enriched)) == {g["ActivityKey"] for g in good}  # the stream went on
    got = sorted(dict((k, v.decode()) for k, v in m.headers)["error.class"] for m in dead)
    assert got == sorted(c for _, c in hostile.values()), got
    assert sorted(m.value for m in dead) == sorted(v for v, _ in hostile.values())  # the original bytes
    assert "Traceback" not in worker.output() and "RecursionError" not in worker.output()


async def test_unknown_codes_flow_and_are_counted(settings, stream_worker):
    metrics_port = free_port()
    await publish_config_file(settings, FIXTURES / "config.yaml")
    stream_worker(ACTIVITY_SYNC_METRICS_PORT=metrics_port)
    ev = dict(seed_events()[0], ActivityKey="u1", ActivityCode="EventRegistrationCreate")
    await produce(settings, Topics(settings.topic_prefix).raw, keyed([ev]))
    msgs = await consume(settings, Topics(settings.topic_prefix).enriched, lambda m: len(m) >= 1, timeout=90)
    rec = decode_with_schema_file(msgs[0].value)
    assert rec["category"] == "Uncategorized" and rec["deliveries"] == []
    body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    assert 'activity_sync_unknown_activity_codes_total{code="EventRegistrationCreate"} 1.0' in body


async def test_sigkill_mid_stream_loses_nothing(settings, stream_worker):
    """Kill -9 the worker while it is enriching, start it again: every event comes out.

    Duplicates are allowed (at-least-once): a consumer drops them by activity_key, and a
    duplicate is the same activity enriched again, from the same raw offset.
    """
    await publish_config_file(settings, FIXTURES / "config.yaml")
    n = 20000
    events = synthetic(n)
    t = Topics(settings.topic_prefix)
    await produce(settings, t.raw, [(f"m{i % 97}".encode(), json.dumps(e).encode()) for i, e in enumerate(events)])
    first = stream_worker()
    # Wait until it is mid-stream: some output, far from all of it.
    await consume(settings, t.enriched, lambda m: len(m) >= 2000, timeout=90)
    first.kill()
    assert first.p.returncode == -9
    partial = await consume(settings, t.enriched, lambda m: True, timeout=30, settle=1.0)
    assert len(partial) < n, "the worker finished before it was killed: nothing was tested"
    stream_worker()
    msgs = await consume(settings, t.enriched, lambda m: len(m) >= n, timeout=180,
                         settle=2.0)
    keys = by_key(msgs)
    missing = {e["ActivityKey"] for e in events} - set(keys)
    assert not missing, f"{len(missing)} events lost"
    for recs in keys.values():  # duplicates are the same activity from the same raw offset
        assert len({(r["source"]["partition"], r["source"]["offset"]) for r in recs}) == 1


async def test_tail_command_prints_decoded_records(settings, stream_worker):
    await publish_config_file(settings, FIXTURES / "config.yaml")
    stream_worker()
    await produce(settings, Topics(settings.topic_prefix).raw, keyed(seed_events()))
    await consume(settings, Topics(settings.topic_prefix).enriched, lambda m: len(m) >= 5, timeout=90)
    env = worker_env(settings, Path("/tmp"))
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "activity_sync.cli", "tail", "--from-beginning",
                                                   "--max", "5"], env=env, capture_output=True, text=True,
                                  timeout=60, cwd=ROOT)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 5, out.stderr
    assert {r["value"]["activity_code"] for r in lines} == {e["ActivityCode"] for e in seed_events()}
    assert all(r["value"]["activity_date"].endswith("Z") for r in lines)


def test_broker_start_says_why_when_the_port_is_taken(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerError, match=f"port {port} .* is taken"):
            LocalKafka(tmp_path, port=port).start()


async def test_confluent_wire_format_with_a_schema_registry(settings, stream_worker, tmp_path):
    """With SCHEMA_REGISTRY_URL: magic byte 0, the registered schema's id, the body; tail decodes it."""
    import struct

    from core.avro import decode_any
    from activity_sync.devtools.fake_registry import FakeSchemaRegistry

    registry = await FakeSchemaRegistry().start()
    try:
        await publish_config_file(settings, FIXTURES / "config.yaml")
        stream_worker(SCHEMA_REGISTRY_URL=registry.url)
        await produce(settings, Topics(settings.topic_prefix).raw, keyed(seed_events()))
        msgs = await consume(settings, Topics(settings.topic_prefix).enriched, lambda m: len(m) >= 5, timeout=90)
        subject = f"{Topics(settings.topic_prefix).enriched}-value"
        assert registry.subjects[subject] == [1]
        for m in msgs:
            assert m.value[0] == 0 and struct.unpack(">I", m.value[1:5])[0] == 1
            rec = await asyncio.to_thread(decode_any, m.value, registry.url)
            assert rec["activity_key"] in {e["ActivityKey"] for e in seed_events()}
    finally:
        await registry.stop()


def test_broker_says_when_java_or_maven_is_missing(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(BrokerError, match="java not found on PATH"):
        LocalKafka(tmp_path / "k").start()
    monkeypatch.setenv("ACTIVITY_SYNC_CACHE", str(tmp_path / "cache"))  # nothing resolved yet
    from activity_sync.devtools.broker import resolve_jars

    with pytest.raises(BrokerError, match="mvn not found on PATH"):
        resolve_jars()


async def test_a_record_the_broker_refuses_as_too_large_is_dead_lettered(settings, stream_worker):
    """The raw event passed, but its enriched record is over activity.enriched's limit: dead, not lost."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    t = Topics(settings.topic_prefix)
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t.enriched,
                                                  {"max.message.bytes": "20000"})])
    finally:
        await admin.close()
    await publish_config_file(settings, FIXTURES / "config.yaml")
    stream_worker()
    small, big = synthetic(2)
    big["Body"] = "y" * 30000  # fine as a raw event (limit 1 MiB), too large once enriched here
    await produce(settings, t.raw, [(b"a", json.dumps(small).encode()), (b"a", json.dumps(big).encode())])
    dead = await consume(settings, t.dead, lambda m: len(m) >= 1, timeout=90)
    h = {k: v.decode() for k, v in dead[0].headers}
    assert h["error.class"] == "MessageSizeTooLargeError" and json.loads(dead[0].value)["ActivityKey"] == big["ActivityKey"]
    enriched = await consume(settings, t.enriched, lambda m: len(m) >= 1, timeout=30)
    assert set(by_key(enriched)) == {small["ActivityKey"]}
