"""The Alida source on the real broker: 2,500 events over pages into activity.raw once and enriched,
a SIGKILL mid-page and a graceful stop, an updated event updating an idempotent CRM record, and
where a source stands (its cursor in source.offsets, the admin status)."""

from __future__ import annotations

import asyncio
import collections

import yaml

from conftest import consume, publish_config_file, worker_env
from core.avro import decode_any
from core.topics import Topics
from sources.alida.fake import AlidaFake
from sources.runner import read_cursors, read_sources, run_pool

SECRET = "alida-kafka-test-secret"


def doc(fake, **settings) -> dict:
    return {
        "tenants": [{"code": "DEMO", "resolve_by": ["contact_key", "email"]}],
        "sources": [{"name": "alida-t", "kind": "alida", "tenant": "DEMO", "settings": {
            "region": "na1", "community": "demo-community", "client_id": "activity-sync",
            "client_secret_env": "ALIDA_TEST_SECRET", "base_url": fake.base_url, "every": "1s", "page_size": 1000,
            "customer_id_variable": "CustomerID", "start_from": "1d", "backoff_s": 0.1, **settings}}],
        "endpoints": [{"name": "crm", "provider": "webhook", "tenant": "DEMO",
                       "settings": {"url": "http://127.0.0.1:9/none", "hmac_secret_env": "UNUSED_SECRET"}}],
        "subscriptions": [{"activity_code": c, "endpoint": "crm"} for c in
                          ("AlidaSurveyInvited", "AlidaSurveyStarted", "AlidaSurveyCompleted")],
    }


async def configure(settings, tmp_path, d: dict):
    path = tmp_path / "alida.yaml"
    path.write_text(yaml.safe_dump(d))
    object.__setattr__(settings, "config_path", str(path))
    await publish_config_file(settings, path)
    return path


async def run_until(settings, done, timeout=90.0):
    """The source pool in this process until ``done(workers)``; answers the workers."""
    stop = asyncio.Event()
    seen = {}

    async def watch():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and not (seen and done(seen)):
            await asyncio.sleep(0.1)
        stop.set()

    watcher = asyncio.create_task(watch())
    workers = await run_pool(settings, ["alida-t"], stop, on_ready=seen.update)
    await watcher
    return workers


def raw_keys(msgs) -> collections.Counter:
    return collections.Counter(m.key.decode() for m in msgs)


async def test_2500_events_over_pages_reach_raw_once_come_out_enriched_and_the_cursor_says_where(
        settings, tmp_path, stream_worker, monkeypatch):
    monkeypatch.setenv("ALIDA_TEST_SECRET", SECRET)
    fake = await AlidaFake(client_secret=SECRET).start()
    try:
        fake.seed(2500, members=250, spread_s=900)
        await configure(settings, tmp_path, doc(fake))
        stream_worker()
        workers = await run_until(settings, lambda w: w["alida-t"].caught_up.is_set())
        w = workers["alida-t"]
        pages = [r for r in fake.api_requests if r["path"].endswith("/memberevents")]
        assert len(pages) >= 3
        topics = Topics(settings.topic_prefix)
        raw = await consume(settings, topics.raw, lambda m: len(m) >= 2500, settle=1.0)
        keys = raw_keys(raw)
        assert len(raw) == 2500 and len(keys) == 2500
        assert set(keys) == {f"alida:DEMO:demo-community:{i}" for i in fake.events}
        enriched = await consume(settings, topics.enriched, lambda m: len(m) >= 2500, timeout=120)
        recs = [decode_any(m.value) for m in enriched]
        assert {r["category"] for r in recs} == {"Insight Communities"}
        assert all(r["customer_id"] and r["customer_id"].startswith("C1") for r in recs)
        assert all(r["deliveries"] and r["deliveries"][0]["description"] for r in recs)
        assert any(" completed \"" in r["deliveries"][0]["description"] for r in recs)
        # the cursor: the newest event, in source.offsets
        newest = max(fake.events.values(), key=lambda e: (e["lastUpdateDate"], e["id"]))
        cursor = (await read_cursors(settings))["alida-t"]
        assert (cursor["updated"], cursor["id"]) == (newest["lastUpdateDate"], newest["id"])
        assert cursor["records"] == 2500 and cursor["activities"] == 2500 and w.cursor.activities == 2500
        # a second run from that cursor: nothing new, nothing repeated (the overlap re-read sends none)
        await run_until(settings, lambda w: w["alida-t"].polls >= 2)
        again = await consume(settings, topics.raw, lambda m: len(m) >= 2500, settle=1.5)
        assert len(again) == 2500
        from activity_sync.sourcecmd import status_rows

        rows = status_rows(await read_sources(settings), await read_cursors(settings))
        assert rows[0]["source"] == "alida-t" and rows[0]["cursor"] == newest["lastUpdateDate"]
        assert rows[0]["lag_s"] is not None and rows[0]["activities"] == 2500
    finally:
        await fake.stop()


async def test_a_killed_source_resumes_missing_nothing_and_a_graceful_stop_repeats_nothing(
        settings, tmp_path, spawn, monkeypatch):
    fake = await AlidaFake(client_secret=SECRET).start()
    try:
        fake.seed(2000, members=40, spread_s=600)
        fake.control({"latency_ms": 60})
        await configure(settings, tmp_path, doc(fake, page_size=50))
        env = worker_env(settings, tmp_path, ALIDA_TEST_SECRET=SECRET)
        args = ["-m", "activity_sync.cli", "source", "--name", "alida-t"]
        topics = Topics(settings.topic_prefix)
        worker = spawn(args, env, "source")
        await consume(settings, topics.raw, lambda m: len(m) >= 400, timeout=90)
        worker.kill()  # SIGKILL, mid-poll: a page may be half sent, its cursor not written
        killed_at = len(await consume(settings, topics.raw, lambda m: True, settle=0.5))
        assert killed_at < 2000, "the kill came too late to test anything"
        worker = spawn(args, env, "source")
        msgs = await consume(settings, topics.raw, lambda m: len(raw_keys(m)) >= 2000, timeout=120, settle=1.0)
        keys = raw_keys(msgs)
        assert set(keys) == {f"alida:DEMO:demo-community:{i}" for i in fake.events}  # none missing
        assert len(msgs) - 2000 <= 50  # at most the page in hand when it died is sent again
        # a graceful stop (SIGTERM) mid-poll: the page in hand finishes, the cursor moves, nothing repeats
        before = len(msgs)
        fake.seed(600, members=40)
        await consume(settings, topics.raw, lambda m: len(m) >= before + 150, timeout=90)
        worker.stop()
        assert worker.p.returncode == 0, worker.output()[-2000:]
        stopped_at = len(await consume(settings, topics.raw, lambda m: True, settle=0.5))
        assert stopped_at < before + 600, "the stop came too late to test anything"
        spawn(args, env, "source")
        msgs = await consume(settings, topics.raw, lambda m: len(raw_keys(m)) >= 2600, timeout=120, settle=2.0)
        assert len(msgs) == before + 600  # every new event exactly once
    finally:
        await fake.stop()


async def test_an_updated_event_is_sent_again_with_its_key_and_updates_the_crm_record(
        settings, tmp_path, spawn, monkeypatch):
    from sinks.providers.salesforce.fake import FakeSalesforce

    monkeypatch.setenv("ALIDA_TEST_SECRET", SECRET)
    fake = await AlidaFake(client_secret=SECRET).start()
    sf_secret = "alida-e2e-sf-secret"
    members = {f"C{100001 + i}": f"003{i:015d}" for i in range(5)}
    sf = await FakeSalesforce("e2e-app", sf_secret, contact_keys={"Member_Number__c": list(members)}).start()
    try:
        events = fake.seed(12, members=5, event_type="SurveyStarted")
        d = doc(fake)
        d["endpoints"] = [{"name": "fonteva", "provider": "salesforce", "tenant": "DEMO", "settings": {
            "preset": "fonteva", "login_url": sf.base_url, "client_id": "e2e-app", "client_secret_env": "E2E_SF_SECRET",
            "linger_ms": 20, "contact_match": "external_id", "contact_external_id_field": "Member_Number__c"}}]
        d["subscriptions"] = [{"activity_code": c, "endpoint": "fonteva"} for c in
                              ("AlidaSurveyStarted", "AlidaSurveyCompleted")]
        await configure(settings, tmp_path, d)
        env = worker_env(settings, tmp_path, E2E_SF_SECRET=sf_secret)
        spawn(["-m", "streams.app"], env, "stream")
        spawn(["-m", "sinks.worker", "fonteva"], env, "sink")
        await run_until(settings, lambda w: w["alida-t"].caught_up.is_set())
        loop = asyncio.get_running_loop()

        async def tasks_until(cond):
            deadline = loop.time() + 90
            while loop.time() < deadline and not cond():
                await asyncio.sleep(0.3)

        key = f"alida:DEMO:demo-community:{events[0]['id']}"
        await tasks_until(lambda: len(sf.stored_keys("Task")) >= 12)
        assert len(sf.stored_keys("Task")) == 12
        assert "started" in sf.records[("Task", key)]["Subject"]
        fake.update_event(events[0]["id"], eventType="SurveyCompleted")  # the member finished: lastUpdateDate moves
        await run_until(settings, lambda w: w["alida-t"].caught_up.is_set() and w["alida-t"].cursor.activities >= 1)
        raw = await consume(settings, Topics(settings.topic_prefix).raw, lambda m: len(m) >= 13, settle=1.0)
        assert len(raw) == 13 and raw_keys(raw)[key] == 2
        await tasks_until(lambda: "completed" in sf.records[("Task", key)].get("Subject", ""))
        assert "completed" in sf.records[("Task", key)]["Subject"]
        assert len(sf.stored_keys("Task")) == 12  # the same record, updated: not a thirteenth
    finally:
        await sf.stop()
        await fake.stop()


def test_the_source_command_refuses_a_name_the_config_does_not_hold(settings, tmp_path):
    import subprocess
    import sys

    env = worker_env(settings, tmp_path)
    p = subprocess.run([sys.executable, "-m", "activity_sync.cli", "source", "--name", "nope"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "holds no source nope" in p.stderr, p.stderr
