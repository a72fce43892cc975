"""Every provider against the sink contract, and the runner's retry logic, without Kafka."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
import time

import pytest
from conftest import seed_events

from sinks.contract import (AuthExpired, Delivery, FatalError, MappingError, RetriableError, Throttled,
                            classify_http, parse_retry_after)
from sinks.fake_crm import FakeCRM
from sinks.history import query
from sinks.registry import PROVIDERS, make_context
from sinks.runner import Clock, DeliveryRunner, Pending, RetryPolicy
from streams.catalog import load_catalog
from streams.enrich import Enricher
from streams.routing import Endpoint, Routing, Subscription

SECRET = "s3cr3t-for-tests-only-7f1d"


def deliveries(n: int = 5, endpoint: str = "crm") -> list[Delivery]:
    cat = load_catalog()
    r = Routing(cat)
    r.put_endpoint(Endpoint(endpoint))
    for code in {e["ActivityCode"] for e in seed_events()}:
        r.put_subscription(Subscription(code, endpoint, "{ActivityCode} by {AgentContactKey}", True, "A", "B"))
    e = Enricher(cat, r)
    out = []
    for i in range(n):
        ev = dict(seed_events()[i % 5], ActivityKey=f"act-{i}")
        rec = e.enrich(json.dumps(ev).encode(), None, "raw", 0, i, 0).record
        out.append(Delivery.from_record(rec, rec["deliveries"][0]))
    return out


@pytest.fixture
async def crm():
    c = await FakeCRM(secret=SECRET.encode()).start()
    yield c
    await c.stop()


async def started(provider: str, crm: FakeCRM | None, tmp_path, monkeypatch, **settings):
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    base = {"webhook": {"sink": "webhook", "url": crm.url if crm else "", "hmac_secret_env": "TEST_WEBHOOK_SECRET",
                        "timeout_s": 2},
            "activity-history": {"sink": "activity-history", "path": str(tmp_path / "history.db")}}[provider]
    statuses = []
    sink = PROVIDERS[provider]()
    await sink.start(make_context("crm", {**base, **settings}, statuses.append))
    sink.statuses = statuses
    return sink


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_contract_empty_batch_sends_nothing(provider, crm, tmp_path, monkeypatch):
    sink = await started(provider, crm, tmp_path, monkeypatch)
    try:
        assert await sink.write([]) == []
        assert crm.requests == []
    finally:
        await sink.stop()


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_contract_batch_written_once_even_when_sent_twice(provider, crm, tmp_path, monkeypatch):
    sink = await started(provider, crm, tmp_path, monkeypatch)
    batch = deliveries(5)
    try:
        assert await sink.write(batch) == []
        assert await sink.write(batch) == []  # at-least-once redelivery
    finally:
        await sink.stop()
    if provider == "webhook":
        assert [r["idempotency_key"] for r in crm.received()] == [d.activity_key for d in batch]
        assert crm.duplicates == 5
    else:
        rows = query(tmp_path / "history.db", limit=100)
        assert sorted(r["activity_key"] for r in rows) == sorted(d.activity_key for d in batch)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_contract_stop_leaks_nothing(provider, crm, tmp_path, monkeypatch):
    sink = await started(provider, crm, tmp_path, monkeypatch)
    await sink.write(deliveries(1))
    await sink.stop()
    if provider == "webhook":
        assert sink.session.closed


async def test_webhook_signs_and_bad_secret_is_refused(crm, tmp_path, monkeypatch):
    sink = await started("webhook", crm, tmp_path, monkeypatch)
    await sink.write(deliveries(1))
    assert crm.stats()["stored"] == 1  # the fake verified the signature
    monkeypatch.setenv("WRONG", "not-the-secret")
    bad = await started("webhook", crm, tmp_path, monkeypatch, hmac_secret_env="WRONG")
    with pytest.raises(AuthExpired, match="401"):
        await bad.write(deliveries(2)[1:])
    await sink.stop()
    await bad.stop()


async def test_webhook_429_carries_retry_after(crm, tmp_path, monkeypatch):
    sink = await started("webhook", crm, tmp_path, monkeypatch)
    crm.control({"throttle": {"retry_after": 7, "count": 1}})
    with pytest.raises(Throttled) as err:
        await sink.write(deliveries(1))
    assert err.value.retry_after == 7 and err.value.retriable
    assert sink.statuses == [429]
    await sink.stop()


async def test_webhook_5xx_and_timeouts_are_retriable(crm, tmp_path, monkeypatch):
    sink = await started("webhook", crm, tmp_path, monkeypatch, timeout_s=0.3)
    crm.control({"fail": {"status": 503, "count": 1}})
    with pytest.raises(RetriableError, match="503"):
        await sink.write(deliveries(1))
    crm.control({"latency_ms": 1000})
    with pytest.raises(RetriableError, match="Timeout"):
        await sink.write(deliveries(1))
    await sink.stop()


async def test_webhook_one_bad_record_fails_only_itself(crm, tmp_path, monkeypatch):
    sink = await started("webhook", crm, tmp_path, monkeypatch)
    batch = deliveries(5)
    crm.control({"reject_customers": [batch[2].customer_id]})
    batch = [batch[0], batch[1], batch[2], batch[3]]  # seed 2 and no other share that customer
    failures = await sink.write(batch)
    assert [f.index for f in failures] == [2]
    assert isinstance(failures[0].error, FatalError) and failures[0].error.status == 400
    assert "unknown customer" in str(failures[0].error)
    assert {r["idempotency_key"] for r in crm.received()} == {batch[i].activity_key for i in (0, 1, 3)}
    await sink.stop()


async def test_webhook_record_without_customer_is_a_mapping_error(crm, tmp_path, monkeypatch):
    sink = await started("webhook", crm, tmp_path, monkeypatch)
    d = deliveries(1)[0]
    nobody = Delivery(**{**d.__dict__, "customer_id": None})
    failures = await sink.write([nobody])
    assert isinstance(failures[0].error, MappingError) and crm.requests == []
    await sink.stop()


async def test_no_secret_in_logs_or_repr(crm, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    sink = await started("webhook", crm, tmp_path, monkeypatch)
    crm.control({"fail": {"status": 500, "count": 1}})
    with pytest.raises(RetriableError):
        await sink.write(deliveries(1))
    await sink.stop()
    assert SECRET not in caplog.text
    assert SECRET not in repr(sink.ctx) and SECRET not in repr(sink.ctx.settings)


def test_history_is_append_only_and_queryable(tmp_path):
    from sinks.history import ActivityHistorySink

    async def go():
        sink = ActivityHistorySink()
        await sink.start(make_context("history", {"path": str(tmp_path / "h.db")}))
        await sink.write(deliveries(5, "history"))
        await sink.stop()

    asyncio.run(go())
    db = tmp_path / "h.db"
    assert [r["activity_code"] for r in query(db, member="aquill")] == ["DiscussionMessageReply",
                                                                         "DiscussionMessageCreate"]
    assert [r["customer_id"] for r in query(db, code="LibraryEntryView")] == ["0037yHT1MAAW"]
    assert len(query(db, since="2016-06-13T21:00:00", until="2016-06-14")) == 2
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM activity_history")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE activity_history SET description = 'x'")


# ---------------------------------------------------------------- classification and runner logic

@pytest.mark.parametrize("status, cls", [(200, None), (204, None), (400, FatalError), (404, FatalError),
                                         (401, AuthExpired), (408, RetriableError), (429, Throttled),
                                         (500, RetriableError), (503, RetriableError)])
def test_default_http_classifier(status, cls):
    err = classify_http(status, "x", "3")
    assert (err is None) if cls is None else type(err) is cls


def test_retry_after_http_date():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30
    assert parse_retry_after("12") == 12 and parse_retry_after("soon") is None


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def now(self) -> float:
        return self.t

    async def sleep_until(self, when, step=1.0):
        self.t = max(self.t, when)


class Recorder:
    def __init__(self):
        self.retries, self.deads = [], []

    async def retry(self, tier, key, value, headers):
        self.retries.append((tier, dict(headers)))

    async def dead(self, key, value, headers):
        self.deads.append(dict(headers))


class ScriptedSink:
    provider = "scripted"
    max_batch_size = 3

    def __init__(self, script):
        self.script, self.calls = list(script), []

    async def write(self, batch):
        self.calls.append([d.activity_key for d in batch])
        step = self.script.pop(0) if self.script else []
        if isinstance(step, Exception):
            raise step
        return step

    async def reauthenticate(self):
        self.calls.append("reauth")


def pendings(n):
    return [Pending(d, b"k", b"v", ("t", 0, i)) for i, d in enumerate(deliveries(n))]


async def test_runner_chunks_to_provider_limit_and_routes_transient_to_tiers():
    pub, clock = Recorder(), FakeClock()
    sink = ScriptedSink([RetriableError("503", status=503)] * 3)
    runner = DeliveryRunner("crm", sink, pub, RetryPolicy(inline_attempts=2, inline_backoff_s=0), clock)
    await runner.deliver(pendings(4))
    assert sink.calls[:3] == [["act-0", "act-1", "act-2"]] * 3 and sink.calls[3] == ["act-3"]
    assert [t for t, _ in pub.retries] == ["1m", "1m", "1m"] and pub.deads == []
    h = pub.retries[0][1]
    assert h["retry.attempts"] == b"1" and int(h["retry.due_ms"]) == int((clock.t + 60) * 1000)
    assert h["retry.last_error_class"] == b"RetriableError"


async def test_runner_tiers_grow_and_expire_after_two_weeks():
    pub, clock = Recorder(), FakeClock()
    runner = DeliveryRunner("crm", ScriptedSink([]), pub, RetryPolicy(), clock)
    p = pendings(1)[0]
    p.attempts, p.first_failure = 3, clock.t - 3600
    await runner.route(p, RetriableError("boom"))
    assert pub.retries[-1][0] == "6h"
    p.first_failure = clock.t - 14 * 86400
    await runner.route(p, RetriableError("boom"))
    assert pub.deads[-1]["error.class"] == b"WindowExpired" and b"boom" in pub.deads[-1]["error.message"]


async def test_runner_honours_retry_after_before_the_next_request():
    pub, clock = Recorder(), FakeClock()
    sink = ScriptedSink([Throttled("429", status=429, retry_after=5), []])
    runner = DeliveryRunner("crm", sink, pub, RetryPolicy(), clock)
    start = clock.t
    await runner.deliver(pendings(1))
    assert len(sink.calls) == 2 and clock.t >= start + 5 and not pub.retries


async def test_runner_long_retry_after_goes_to_a_tier_that_waits_long_enough():
    pub, clock = Recorder(), FakeClock()
    sink = ScriptedSink([Throttled("429", status=429, retry_after=900)])
    await DeliveryRunner("crm", sink, pub, RetryPolicy(), clock).deliver(pendings(1))
    tier, h = pub.retries[0]
    assert tier == "1h" and int(h["retry.due_ms"]) >= int((clock.t + 900) * 1000)


async def test_runner_permanent_failures_go_dead_and_reauth_happens_once():
    pub, clock = Recorder(), FakeClock()
    sink = ScriptedSink([AuthExpired("401"), AuthExpired("401")])
    await DeliveryRunner("crm", sink, pub, RetryPolicy(), clock).deliver(pendings(1))
    assert sink.calls.count("reauth") == 1 and pub.retries[0][1]["retry.last_error_class"] == b"AuthExpired"
    sink = ScriptedSink([FatalError("HTTP 422: bad", status=422)])
    await DeliveryRunner("crm", sink, pub, RetryPolicy(), clock).deliver(pendings(1))
    assert pub.deads[-1]["error.status"] == b"422" and pub.deads[-1]["error.stage"] == b"deliver"


async def test_runner_survives_a_provider_bug():
    pub, clock = Recorder(), FakeClock()
    sink = ScriptedSink([KeyError("oops")])
    await DeliveryRunner("crm", sink, pub, RetryPolicy(), clock).deliver(pendings(2))
    assert len(pub.retries) == 2 and b"KeyError" in pub.retries[0][1]["retry.last_error"]


async def test_runner_rate_limit_spaces_requests():
    pub = Recorder()
    sink = ScriptedSink([[]] * 4)
    runner = DeliveryRunner("crm", sink, pub, RetryPolicy(), Clock(), batch_size=1, rate_per_s=20)
    t0 = time.monotonic()
    await runner.deliver(pendings(4))
    assert len(sink.calls) == 4 and time.monotonic() - t0 >= 3 / 20 * 0.9


GOLDEN = __import__("pathlib").Path(__file__).resolve().parent / "golden"


async def test_webhook_request_matches_the_golden_file(crm, tmp_path, monkeypatch):
    """The outbound request a receiver builds against; regenerate with UPDATE_GOLDEN=1 after a deliberate change."""
    import os

    sink = await started("webhook", crm, tmp_path, monkeypatch)
    await sink.write(deliveries(5))
    await sink.stop()
    body = json.loads(crm.bodies[-1])
    assert body["endpoint"] == "crm" and isinstance(body["sent_at"], int)
    golden = GOLDEN / "webhook_activities.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(json.dumps(body["activities"], indent=2, ensure_ascii=False) + "\n")
    assert body["activities"] == json.loads(golden.read_text())


def test_load_config_refuses_provider_settings_it_cannot_use(tmp_path):
    import subprocess
    import sys

    import yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"endpoints": [{"name": "crm", "settings": {"sink": "webhook",
                                                                              "url": "ftp://x"}}]}))
    out = subprocess.run([sys.executable, "-m", "activity_sync.cli", "load-config", "--check", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "endpoint crm: webhook needs settings.url" in out.stderr
