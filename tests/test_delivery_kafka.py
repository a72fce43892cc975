"""The delivery stage against the real broker, real sink workers (subprocesses) and the fake CRM."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError
from conftest import ROOT, consume, produce, publish_config_file, seed_events, worker_env

from sinks.providers.webhook.fake import FakeCRM
from core.avro import SingleObjectCodec
from activity_sync.devtools.broker import free_port
from core.catalog import load_catalog
from streams.enrich import Enricher
from core.config import parse_config
from core.routing import Routing
from core.topics import Topics

SECRET = "webhook-secret-for-tests-5b1c"
CODES = sorted({e["ActivityCode"] for e in seed_events()})
FAST_RETRIES = {"ACTIVITY_SYNC_RETRY_DELAYS": "1,2,3,4", "ACTIVITY_SYNC_INLINE_RETRIES": "1"}


@pytest.fixture
async def crm():
    c = await FakeCRM(secret=SECRET.encode()).start()
    yield c
    await c.stop()


def config_doc(endpoints: dict[str, dict]) -> dict:
    eps, subs = [], []
    for name, settings in endpoints.items():
        settings = dict(settings)
        enabled = settings.pop("enabled", True)
        provider = settings.pop("sink")
        ptype = "activity-history" if provider == "activity-history" else "membership"
        tenant = settings.pop("tenant", "*")
        eps.append({"name": name, "provider_type": ptype, "provider": provider, "enabled": enabled,
                    "tenant": tenant, "settings": settings})
        for code in CODES:
            subs.append({"activity_code": code, "endpoint": name, "writeback_codes": [f"W1-{code}", f"W2-{name}"],
                         "description": f"{{ActivityCode}} for {name}: {{ParentName}}"})
    return {"endpoints": eps, "subscriptions": subs}


def webhook(crm: FakeCRM, **kw) -> dict:
    return {"sink": "webhook", "url": crm.url, "hmac_secret_env": "TEST_WEBHOOK_SECRET", "batch_size": 100,
            "linger_ms": 20, "timeout_s": 5, **kw}


@pytest.fixture
def pipeline(settings, tmp_path, spawn):
    """Write a config, publish it, and start workers against this test's topics."""

    class Pipeline:
        doc: dict

        async def configure(self, endpoints: dict[str, dict]) -> None:
            self.doc = config_doc(endpoints)
            path = tmp_path / "config.yaml"
            path.write_text(yaml.safe_dump(self.doc))
            object.__setattr__(settings, "config_path", str(path))
            await publish_config_file(settings, path)

        def env(self, **extra):
            return worker_env(settings, tmp_path, TEST_WEBHOOK_SECRET=SECRET, **extra)

        def stream_worker(self, **extra):
            return spawn(["-m", "streams.app"], self.env(**extra), "stream")

        def sink_worker(self, endpoint: str, **extra):
            return spawn(["-m", "sinks.worker", endpoint], self.env(**extra), f"sink-{endpoint}")

        def enriched(self, n: int, customer_for=None) -> list[tuple[bytes, bytes]]:
            """n enriched records as the stream stage writes them (to skip it where it is not the subject)."""
            cat = load_catalog()
            routing = Routing(cat)
            for k, v in parse_config(self.doc, cat).records():
                routing.apply_record(k, v)
            enricher, codec = Enricher(cat, routing), SingleObjectCodec()
            out = []
            for i in range(n):
                ev = dict(seed_events()[i % 5], ActivityKey=f"act-{i:06d}")
                if customer_for:
                    ev["AuthorExternalKey"] = ev["MemberExternalKey"] = ev["AccessedByExternalKey"] = customer_for(i)
                r = enricher.enrich(json.dumps(ev).encode(), f"m{i % 13}".encode(), "raw", 0, i, int(time.time() * 1000))
                out.append((r.key, codec.encode(r.record)))
            return out

    return Pipeline()


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def metrics_text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


async def test_seed_activities_arrive_once_with_everything(settings, pipeline, crm, tmp_path):
    await pipeline.configure({"crm": webhook(crm), "history": {"sink": "activity-history",
                                                              "path": str(tmp_path / "h.db")}})
    stream = pipeline.stream_worker()
    sink = pipeline.sink_worker("crm")
    history = pipeline.sink_worker("history")
    seeds = seed_events()
    await produce(settings, Topics(settings.topic_prefix).raw,
                  [(e.get("AgentContactKey", "x").encode(), json.dumps(e).encode()) for e in seeds])
    await wait_for(lambda: crm.stats()["stored"] >= 5, 90, "5 activities at the CRM")
    await asyncio.sleep(2)  # anything more would be a duplicate
    got = {r["idempotency_key"]: r for r in crm.received()}
    assert set(got) == {e["ActivityKey"] for e in seeds}, stream.output()[-2000:] + sink.output()[-2000:]
    assert crm.stats()["stored"] == 5 and crm.duplicates == 0
    create = got["9896253f-3efe-405a-896f-a8384910543c"]
    assert create["description"] == "DiscussionMessageCreate for crm: Demo Community"
    assert (create["writeback_code1"], create["writeback_code2"]) == ("W1-DiscussionMessageCreate", "W2-crm")
    assert create["customer_id"] == "aquill" and create["activity_date"] == "2016-06-13T20:10:53.462885Z"
    assert create["link_url"].startswith("https://community.example.org/") and create["details_format"] == "xml"
    assert got["6ba8a94f-0d7a-419f-b5bf-b60fcdc567e1"]["customer_id"] == "0037yHT1MAAW"
    # the Activity History endpoint got them too, queryable by member
    from sinks.providers.activity_history.sink import query

    await wait_for(lambda: (tmp_path / "h.db").exists() and len(query(tmp_path / "h.db")) >= 5, 30, "history rows")
    assert [r["activity_code"] for r in query(tmp_path / "h.db", member="clindqvist")] == ["CommunityMemberJoin"]
    assert SECRET not in sink.output() and SECRET not in stream.output() and SECRET not in history.output()


async def test_503_for_a_while_then_recovery_loses_and_duplicates_nothing(settings, pipeline, crm):
    await pipeline.configure({"crm": webhook(crm)})
    crm.control({"fail": {"status": 503, "seconds": 4}})
    metrics_port = free_port()
    pipeline.sink_worker("crm", ACTIVITY_SYNC_METRICS_PORT=metrics_port, **FAST_RETRIES)
    records = pipeline.enriched(300)
    await produce(settings, Topics(settings.topic_prefix).enriched, records)
    await wait_for(lambda: crm.stats()["stored"] >= 300, 90, "all 300 delivered after the outage")
    await asyncio.sleep(2)
    assert crm.stats()["stored"] == 300 and len(set(crm.stored)) == 300
    assert crm.stats()["statuses"].get("503", 0) >= 2  # there was an outage, and it was retried through
    body = metrics_text(metrics_port)
    assert 'activity_sync_deliveries_total{endpoint="crm",outcome="delivered"} 300.0' in body
    assert 'activity_sync_deliveries_total{endpoint="crm",outcome="retried"}' in body
    assert 'activity_sync_sink_http_responses_total{endpoint="crm",status="503"}' in body
    assert 'activity_sync_delivery_latency_seconds_bucket{endpoint="crm"' in body
    assert 'activity_sync_retry_backlog{endpoint="crm",tier="1m"}' in body
    assert SECRET not in body


async def test_429_retry_after_is_honoured(settings, pipeline, crm):
    await pipeline.configure({"crm": webhook(crm, batch_size=10, linger_ms=5)})
    crm.control({"throttle": {"retry_after": 3, "count": 1}})
    metrics_port = free_port()
    pipeline.sink_worker("crm", ACTIVITY_SYNC_METRICS_PORT=metrics_port)
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(40))
    await wait_for(lambda: crm.stats()["stored"] >= 40, 60, "40 delivered")
    reqs = crm.requests
    assert reqs[0]["status"] == 429
    assert crm.early == 0, "a request arrived before the time Retry-After named"
    assert reqs[1]["at"] >= reqs[0]["at"] + 3 - 0.05
    assert 'activity_sync_rate_limit_waits_total{endpoint="crm",reason="retry_after"}' in metrics_text(metrics_port)


async def test_a_400_for_one_record_dead_letters_it_and_delivers_the_rest(settings, pipeline, crm):
    await pipeline.configure({"crm": webhook(crm)})
    crm.control({"reject_customers": ["cust-bad"]})
    pipeline.sink_worker("crm")
    records = pipeline.enriched(20, customer_for=lambda i: "cust-bad" if i == 7 else f"cust-{i}")
    await produce(settings, Topics(settings.topic_prefix).enriched, records)
    t = Topics(settings.topic_prefix)
    dead = await consume(settings, t.dead, lambda m: len(m) >= 1, timeout=60)
    await wait_for(lambda: crm.stats()["stored"] >= 19, 30, "the other 19")
    assert sorted(crm.stored) == sorted(f"act-{i:06d}" for i in range(20) if i != 7)
    h = {k: v.decode() for k, v in dead[0].headers}
    assert h["activity_key"] == "act-000007" and h["error.endpoint"] == "crm" and h["error.stage"] == "deliver"
    assert h["error.class"] == "FatalError" and h["error.status"] == "400"
    assert "unknown customer 'cust-bad'" in h["error.message"]
    assert h["error.topic"] == t.enriched and int(h["error.offset"]) >= 0
    assert SingleObjectCodec().decode(dead[0].value)["activity_key"] == "act-000007"  # the record itself, whole


async def test_sigkill_sink_mid_batch_loses_nothing_and_duplicates_nothing(settings, pipeline, crm):
    await pipeline.configure({"crm": webhook(crm, batch_size=50, linger_ms=10)})
    crm.control({"latency_ms": 150})
    n = 2000
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(n))
    first = pipeline.sink_worker("crm")
    await wait_for(lambda: crm.stats()["stored"] >= 300, 90, "delivery under way")
    first.kill()
    killed_at = crm.stats()["stored"]
    assert killed_at < n, "finished before the kill: nothing was tested"
    pipeline.sink_worker("crm")
    await wait_for(lambda: crm.stats()["stored"] >= n, 120, "all delivered after the restart")
    await asyncio.sleep(2)
    assert crm.stats()["stored"] == n and sorted(crm.stored) == [f"act-{i:06d}" for i in range(n)]


async def test_sigterm_and_sigkill_mid_batch_resend_only_the_killed_batch(settings, pipeline, crm):
    """A graceful stop finishes and commits the batch under way: nothing is sent twice. A SIGKILL sends
    again at most the batch that was in flight in the killed worker (every finished batch is committed)."""
    await pipeline.configure({"crm": webhook(crm, batch_size=50, linger_ms=10)})
    crm.control({"latency_ms": 150})
    n = 1500
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(n))
    first = pipeline.sink_worker("crm")
    await wait_for(lambda: crm.stats()["stored"] >= 200, 90, "delivery under way")
    t_stop = time.monotonic()
    # SIGTERM while a request is in flight (each takes 150 ms); in a thread, so the fake CRM (on this
    # event loop) can answer the write the worker finishes before it stops
    await asyncio.to_thread(first.stop)
    assert time.monotonic() - t_stop < 15, "the graceful stop did not end by itself"
    assert first.p.returncode is not None and crm.stats()["stored"] < n, "finished before the stop"
    second = pipeline.sink_worker("crm")
    await wait_for(lambda: crm.stats()["stored"] >= 700, 90, "delivery under way again")
    assert crm.duplicates == 0, f"{crm.duplicates} sent twice after a graceful stop"
    second.kill()  # SIGKILL
    pipeline.sink_worker("crm")
    await wait_for(lambda: crm.stats()["stored"] >= n, 120, "all delivered after the restarts")
    await asyncio.sleep(2)
    assert sorted(crm.stored) == [f"act-{i:06d}" for i in range(n)]
    assert crm.duplicates <= 50, f"{crm.duplicates} sent twice: more than the one request in flight"


async def test_concurrent_requests_deliver_everything_and_a_graceful_stop_repeats_nothing(settings, pipeline, crm):
    """concurrent_requests: 3: takes are delivered while the next are taken, at most 3 requests at
    once; a SIGTERM finishes those in flight and commits them (nothing sent twice), a SIGKILL
    repeats at most the requests that were in flight, and everything arrives."""
    await pipeline.configure({"crm": webhook(crm, batch_size=50, linger_ms=10, concurrent_requests=3)})
    crm.control({"latency_ms": 120})
    n = 2000
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(n))
    first = pipeline.sink_worker("crm")
    await wait_for(lambda: crm.stats()["stored"] >= 300, 90, "delivery under way")
    await asyncio.to_thread(first.stop)
    assert first.p.returncode is not None and crm.stats()["stored"] < n, "finished before the stop"
    assert crm.duplicates == 0, f"{crm.duplicates} sent twice after a graceful stop"
    second = pipeline.sink_worker("crm")
    await wait_for(lambda: crm.stats()["stored"] >= 1000, 90, "delivery under way again")
    second.kill()
    pipeline.sink_worker("crm")
    await wait_for(lambda: crm.stats()["stored"] >= n, 120, "all delivered after the restarts")
    await asyncio.sleep(2)
    assert sorted(crm.stored) == [f"act-{i:06d}" for i in range(n)]
    # the 3 requests in flight, and what finished after the oldest of them before a commit covered it
    assert crm.duplicates <= 6 * 50, f"{crm.duplicates} sent twice: more than the requests in flight"
    assert crm.max_concurrent <= 3, f"{crm.max_concurrent} requests at once"
    assert crm.max_concurrent >= 2, "never more than one request at once: nothing was concurrent"


async def test_one_endpoints_outage_never_delays_another(settings, pipeline):
    down, up = await FakeCRM(secret=SECRET.encode()).start(), await FakeCRM(secret=SECRET.encode()).start()
    try:
        down.control({"fail": {"status": 503, "seconds": 3600}})
        await pipeline.configure({"down": webhook(down), "up": webhook(up)})
        pipeline.sink_worker("down", **FAST_RETRIES)
        pipeline.sink_worker("up")
        await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(200))
        await wait_for(lambda: up.stats()["stored"] >= 200, 60, "the healthy endpoint's deliveries")
        assert down.stats()["stored"] == 0
        await wait_for(lambda: down.stats()["requests"] >= 3, 30, "the failing endpoint being retried")
        assert down.stats()["stored"] == 0 and up.stats()["stored"] == 200
        # consumer groups are per endpoint
        admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
        await admin.start()
        try:
            groups = {g[0] for g in await admin.list_consumer_groups()}
        finally:
            await admin.close()
        assert {f"{settings.topic_prefix}activity-sync-sink-down",
                f"{settings.topic_prefix}activity-sync-sink-up"} <= groups
    finally:
        await down.stop()
        await up.stop()


async def test_two_workers_share_one_endpoint(settings, pipeline, crm):
    await pipeline.configure({"crm": webhook(crm, batch_size=50)})
    crm.control({"latency_ms": 20})
    a = pipeline.sink_worker("crm")
    b = pipeline.sink_worker("crm")
    group = f"{settings.topic_prefix}activity-sync-sink-crm"
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()

    async def members() -> list:
        try:
            desc = await admin.describe_consumer_groups([group])
        except GroupCoordinatorNotAvailableError:  # the group is not there yet
            return []
        return list(desc[0].groups[0][5]) if desc and desc[0].groups else []

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(await members()) < 2:
            await asyncio.sleep(0.5)
        joined = await members()
        assert len(joined) == 2, a.output()[-1500:] + b.output()[-1500:]
        client_ids = sorted(m[1] for m in joined)
        assert all(c.startswith("activity-sync-sink-crm-") for c in client_ids) and len(set(client_ids)) == 2
    finally:
        await admin.close()
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(1000))
    await wait_for(lambda: crm.stats()["stored"] >= 1000, 90, "1000 delivered by two workers")
    await asyncio.sleep(1)
    assert crm.stats()["stored"] == 1000


async def test_a_retry_after_and_the_rate_limit_hold_for_the_endpoint_not_one_worker(settings, pipeline, crm):
    """Two workers on one endpoint: the CRM's Retry-After, received by one, holds back both (shared
    through activity.control); and together they keep the endpoint's rate_limit_per_s."""
    await pipeline.configure({"crm": webhook(crm, batch_size=10, linger_ms=5, rate_limit_per_s=8)})
    crm.control({"latency_ms": 20})
    pipeline.sink_worker("crm")
    pipeline.sink_worker("crm")
    await asyncio.sleep(8)  # both joined the group and split the partitions
    n = 400
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(n))
    await wait_for(lambda: crm.stats()["stored"] >= 60, 60, "deliveries under way")
    crm.control({"throttle": {"retry_after": 4, "count": 1}})
    t0 = time.monotonic()
    await wait_for(lambda: crm.stats()["stored"] >= n, 120, "all delivered")
    took = time.monotonic() - t0
    ok = [r for r in crm.requests if r["status"] == 200]
    # at most the one request the other worker had already sent when the hold was received (without the
    # shared hold, the other worker would go on at 4 requests a second: about 16 in the 4 s)
    assert crm.early <= 1, f"{crm.early} requests reached the CRM during the Retry-After it had sent"
    span = ok[-1]["at"] - ok[0]["at"]
    # 8 requests a second for the endpoint (not per worker), and one 4 s hold on top
    assert span >= (len(ok) - 1) / 8 * 0.9, (len(ok), span)
    assert took >= 4
    assert sorted(crm.stored) == [f"act-{i:06d}" for i in range(n)]


async def test_two_week_expiry_then_replay_delivers(settings, pipeline, crm, tmp_path):
    clock = tmp_path / "clock-offset"
    clock.write_text("0")
    await pipeline.configure({"crm": webhook(crm)})
    crm.control({"fail": {"status": 503, "seconds": 3600}})
    pipeline.sink_worker("crm", ACTIVITY_SYNC_CLOCK_OFFSET_FILE=clock, **FAST_RETRIES)
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(1))
    t = Topics(settings.topic_prefix)
    retried = await consume(settings, t.retry("1m"), lambda m: len(m) >= 1, timeout=60)
    h = {k: v.decode() for k, v in retried[0].headers}
    assert h["retry.endpoint"] == "crm" and h["retry.attempts"] == "1" and "503" in h["retry.last_error"]
    assert int(h["retry.due_ms"]) > int(h["retry.first_failure_ms"])
    await asyncio.sleep(3)
    assert crm.stats()["stored"] == 0
    clock.write_text(str(15 * 86400))  # fifteen days later
    dead = await consume(settings, t.dead, lambda m: len(m) >= 1, timeout=60)
    dh = {k: v.decode() for k, v in dead[0].headers}
    assert dh["error.class"] == "WindowExpired" and "503" in dh["error.message"] and int(dh["error.attempts"]) >= 2
    # the CRM is back; replay the dead letter: a dry run changes nothing, the real one delivers it
    crm.control({"fail": {"status": 503, "seconds": 0}})
    clock.write_text("0")
    env = pipeline.env()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "activity_sync.cli", "replay", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    dry = await asyncio.to_thread(cli, "--endpoint", "crm", "--key", "act-000000", "--dry-run")
    assert "replay" in dry.stdout and "dry run: 1 would be replayed" in dry.stdout, dry.stderr
    await asyncio.sleep(2)
    assert crm.stats()["stored"] == 0
    real = await asyncio.to_thread(cli, "--endpoint", "crm", "--key", "act-000000")
    assert "replayed 1" in real.stdout, real.stdout + real.stderr
    await wait_for(lambda: crm.stats()["stored"] == 1, 60, "the replayed activity at the CRM")
    again = await asyncio.to_thread(cli, "--endpoint", "crm")
    assert "already-replayed" in again.stdout and "replayed 0" in again.stdout


async def test_replay_refuses_past_the_limit(settings, pipeline):
    await pipeline.configure({"crm": {"sink": "webhook", "url": "http://127.0.0.1:1/"}})
    key, value = pipeline.enriched(1)[0]
    headers = [("error.stage", b"deliver"), ("error.endpoint", b"crm"), ("error.class", b"FatalError"),
               ("error.message", b"HTTP 400"), ("replay.count", b"3"), ("activity_key", b"act-000000"),
               ("error.timestamp", str(int(time.time() * 1000)).encode())]
    await produce(settings, Topics(settings.topic_prefix).dead, [(key, value)], headers=headers)
    from sinks import replay

    decisions = await replay.plan(settings, "crm", None, None, None, max_replays=3)
    assert [(d.action, d.candidate.activity_key) for d in decisions] == [("refused", "act-000000")]
    assert "replayed 3 times already" in decisions[0].reason
    assert await replay.execute(settings, decisions) == 0
    assert [d.action for d in await replay.plan(settings, "crm", None, None, None, max_replays=4)] == ["replay"]


async def test_a_retry_is_never_sent_before_it_is_due(settings, pipeline, crm):
    await pipeline.configure({"crm": webhook(crm)})
    crm.control({"fail": {"status": 503, "count": 2}})  # the first try and the in-process retry
    pipeline.sink_worker("crm", ACTIVITY_SYNC_RETRY_DELAYS="3,3,3,3", ACTIVITY_SYNC_INLINE_RETRIES="1")
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(1))
    retried = await consume(settings, Topics(settings.topic_prefix).retry("1m"), lambda m: len(m) >= 1, timeout=60)
    due = int(dict(retried[0].headers)["retry.due_ms"]) / 1000
    await wait_for(lambda: crm.stats()["stored"] == 1, 60, "the retried activity")
    assert crm.received()[0]["received_at"] >= due - 0.01
    assert [r["status"] for r in crm.requests] == [503, 503, 200]


async def test_settings_a_sink_cannot_use_pause_it_with_the_reason_then_a_fix_delivers(settings, pipeline, crm):
    await pipeline.configure({"crm": {"sink": "webhook", "url": crm.url, "hmac_secret_env": "NOT_SET_ANYWHERE"}})
    worker = pipeline.sink_worker("crm")
    await produce(settings, Topics(settings.topic_prefix).enriched, pipeline.enriched(20))
    await wait_for(lambda: "cannot start" in worker.output(), 60, "the reason in the log")
    await asyncio.sleep(2)
    assert worker.p.poll() is None, "the worker exited: under a supervisor that is a crash loop"
    assert worker.output().count("cannot start") == 1 and "NOT_SET_ANYWHERE" in worker.output()
    assert crm.stats()["stored"] == 0
    await pipeline.configure({"crm": webhook(crm)})
    await wait_for(lambda: crm.stats()["stored"] >= 20, 60, "delivery after the fix")
    assert sorted(crm.stored) == [f"act-{i:06d}" for i in range(20)]


async def test_endpoint_changes_reach_a_running_worker(settings, pipeline, crm):
    """URL and batch size changes, disable (records wait), enable, delete: live, nothing lost or doubled."""
    other = await FakeCRM(secret=SECRET.encode()).start()
    try:
        t = Topics(settings.topic_prefix)
        await pipeline.configure({"crm": webhook(crm, batch_size=50)})
        worker = pipeline.sink_worker("crm")
        await produce(settings, t.enriched, pipeline.enriched(200)[:100])
        await wait_for(lambda: crm.stats()["stored"] >= 100, 60, "the first 100 at the first CRM")
        await pipeline.configure({"crm": webhook(other, batch_size=7)})
        await asyncio.sleep(1.5)  # the config table follows activity.config
        records = pipeline.enriched(200)
        await produce(settings, t.enriched, records[100:150])
        await wait_for(lambda: other.stats()["stored"] >= 50, 60, "the next 50 at the new URL")
        assert max(r["records"] for r in other.requests) <= 7
        await pipeline.configure({"crm": webhook(other, batch_size=7, enabled=False)})
        await asyncio.sleep(1.5)
        await produce(settings, t.enriched, records[150:])  # addressed to crm before it was disabled
        await asyncio.sleep(4)
        assert other.stats()["stored"] == 50 and crm.stats()["stored"] == 100
        await pipeline.configure({"crm": webhook(other, batch_size=7)})
        await wait_for(lambda: other.stats()["stored"] >= 100, 60, "the held 50 after enabling")
        await asyncio.sleep(1)
        assert sorted(crm.stored) == [f"act-{i:06d}" for i in range(100)]
        assert sorted(other.stored) == [f"act-{i:06d}" for i in range(100, 200)]
        assert crm.duplicates == 0 and other.duplicates == 0
        dead = await consume(settings, t.dead, lambda m: True, timeout=5)
        assert dead == []
        await produce(settings, t.config, [(b"endpoint:crm", None)])
        await asyncio.to_thread(worker.p.wait, 60)
        assert "deleted from activity.config: this worker stops" in worker.output()
    finally:
        await other.stop()


async def test_interval_schedule_delivers_in_bulk_runs(settings, pipeline, crm):
    await pipeline.configure({"crm": webhook(crm, schedule={"every": "6s"}, linger_ms=20)})
    metrics_port = free_port()
    t = Topics(settings.topic_prefix)
    records = pipeline.enriched(400)
    await produce(settings, t.enriched, records[:300])  # all waiting before the worker starts: one run
    pipeline.sink_worker("crm", ACTIVITY_SYNC_METRICS_PORT=metrics_port)
    await wait_for(lambda: crm.stats()["stored"] >= 300, 60, "the first run")
    first_run = crm.requests[0]["at"]
    await asyncio.sleep(2)
    await produce(settings, t.enriched, records[300:])
    await wait_for(lambda: crm.stats()["stored"] >= 400, 60, "the second run")
    second = [r for r in crm.requests if r["at"] > first_run + 1]
    assert second and second[0]["at"] >= first_run + 6 - 0.1, "the second run came before its interval"
    # everything since the last run, in one go: the batch held while waiting, then the rest in the largest batches
    assert sum(r["records"] for r in second) == 100 and len(second) <= 2
    assert sorted(crm.stored) == [f"act-{i:06d}" for i in range(400)] and crm.duplicates == 0
    # the run's figures are set when the run closes: once the worker sees it has caught up, a moment
    # after the CRM acknowledged the last request
    last_run = 'activity_sync_bulk_last_run_records{endpoint="crm"} 100.0'
    await wait_for(lambda: last_run in metrics_text(metrics_port), 15, "the second run's figures", interval=0.3)
    body = metrics_text(metrics_port)
    assert 'activity_sync_bulk_next_run_timestamp_seconds{endpoint="crm"}' in body
