"""The delivery runner's logic and the default HTTP classification, without Kafka or a network."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from sinks.contract import AuthExpired, FatalError, PayloadTooLarge, RetriableError, Sink, Throttled
from sinks.http import classify_http, parse_retry_after
from sinks.runner import Clock, DeliveryRunner, Pending, RequestWindow, RetryPolicy
from activity_sync.devtools.sink_testing import Recorder, sample_deliveries


def deliveries(n):
    return sample_deliveries(n)


@pytest.mark.parametrize("status, cls", [(200, None), (204, None), (400, FatalError), (404, FatalError),
                                         (401, AuthExpired), (413, PayloadTooLarge), (408, RetriableError), (429, Throttled),
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


class ScriptedSink(Sink):
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
    assert sink.calls[:3] == [["act-000000", "act-000001", "act-000002"]] * 3 and sink.calls[3] == ["act-000003"]
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


def test_retry_delays_from_the_environment_take_commas_or_spaces(monkeypatch):
    monkeypatch.setenv("ACTIVITY_SYNC_RETRY_DELAYS", "2 4, 8 16")
    assert [d for _, d in RetryPolicy.from_settings().tiers] == [2, 4, 8, 16]


async def test_payload_too_large_splits_the_batch_down_to_the_record_that_is_too_big():
    """413: the runner halves the batch until the API takes it; one record still too big is dead-lettered."""
    class Sized(ScriptedSink):
        max_batch_size = 8

        async def write(self, batch):
            keys = [d.activity_key for d in batch]
            self.calls.append(keys)
            if len(batch) > 2 or "act-000005" in keys:  # over 2 records, or that one record, is too large
                raise PayloadTooLarge("HTTP 413", status=413)
            return []

    sink, pub, clock = Sized([]), Recorder(), FakeClock()
    await DeliveryRunner("crm", sink, pub, RetryPolicy(), clock, batch_size=8).deliver(pendings(8))
    k = [f"act-{i:06d}" for i in range(8)]
    assert sink.calls == [k, k[:4], k[:2], k[2:4], k[4:], k[4:6], k[4:5], k[5:6], k[6:]]
    assert len(pub.deads) == 1 and pub.deads[0]["activity_key"] == b"act-000005" and pub.retries == []


async def test_request_window_never_lets_more_than_the_budget_through():
    w = RequestWindow(10, 1.0)
    t = 100.0
    sent = []
    for _ in range(35):
        wait = w.wait_s(2, t)
        t += wait
        w.spent(2, t)
        sent.append(t)
        t += 0.01
    for i, start in enumerate(sent):  # any one-second window holds at most 5 requests of cost 2
        assert sum(1 for x in sent if start <= x < start + 1.0) <= 5
    assert w.wait_s(20, t) > 0 and w.wait_s(1, t + 1.0) == 0


async def test_records_that_fail_on_their_own_but_can_succeed_are_retried_in_process():
    """One-record-per-request APIs (iMIS, Aptify …) report a 5xx, a throttle or an expired token of one
    request as that record's failure: the runner tries just those records again, honouring the wait,
    and only what still fails goes to a tier (or dead, for a record's own refusal)."""
    from sinks.contract import RecordFailure

    pub, clock = Recorder(), FakeClock()
    sink = ScriptedSink([
        [RecordFailure(0, Throttled("429", status=429, retry_after=7)), RecordFailure(1, FatalError("400 bad")),
         RecordFailure(2, AuthExpired("401"))],
        [RecordFailure(1, RetriableError("503", status=503))],   # of [0, 2]: record 2 fails again
        [RecordFailure(0, RetriableError("503", status=503))],   # of [2]
    ])
    start = clock.t
    await DeliveryRunner("crm", sink, pub, RetryPolicy(inline_attempts=2, inline_backoff_s=0), clock) \
        .deliver(pendings(3))
    assert sink.calls == [["act-000000", "act-000001", "act-000002"], "reauth", ["act-000000", "act-000002"],
                          ["act-000002"]]
    assert clock.t >= start + 7  # the throttle's Retry-After was waited out before the second try
    assert [h["activity_key"] for h in pub.deads] == [b"act-000001"]
    assert [(t, h["activity_key"]) for t, h in pub.retries] == [("1m", b"act-000002")]


async def test_a_graceful_stop_starts_no_new_request():
    """SIGTERM while a take is under way: the request in flight finishes, no further request starts,
    and the runner says the take is not done (what was not sent stays unacknowledged)."""
    pub, stopping, done = Recorder(), [], []
    sink = ScriptedSink([])
    runner = DeliveryRunner("crm", sink, pub, RetryPolicy(), FakeClock(), stopping=lambda: bool(stopping))

    async def chunk_done(chunk):
        done.append([p.delivery.activity_key for p in chunk])
        stopping.append(1)  # the signal comes while the first request was under way

    assert await runner.deliver(pendings(7), chunk_done) is False
    assert sink.calls == [["act-000000", "act-000001", "act-000002"]] and len(done) == 1
    assert pub.retries == [] and pub.deads == []


async def test_a_stop_sends_no_in_process_retry_it_goes_to_a_tier():
    pub, stopping = Recorder(), []

    class FailsOnceThenStops(ScriptedSink):
        async def write(self, batch):
            stopping.append(1)
            return await super().write(batch)

    sink = FailsOnceThenStops([RetriableError("503", status=503)])
    runner = DeliveryRunner("crm", sink, pub, RetryPolicy(inline_attempts=3, inline_backoff_s=0), FakeClock(),
                            stopping=lambda: bool(stopping))
    assert await runner.deliver(pendings(2)) is True  # the tried chunk is settled: on a retry tier
    assert len(sink.calls) == 1 and [t for t, _ in pub.retries] == ["1m", "1m"]


async def test_concurrent_requests_after_a_first_that_goes_alone():
    """concurrent_requests: after the first request of a take (alone, as a canary), at most that many
    are in flight at once, and each request's records are acknowledged when it is done."""
    import asyncio

    class SlowSink(ScriptedSink):
        def __init__(self):
            super().__init__([])
            self.now = self.most = 0
            self.first_alone = None

        async def write(self, batch):
            self.now += 1
            self.most = max(self.most, self.now)
            if self.first_alone is None:
                self.first_alone = self.now == 1
                await asyncio.sleep(0.02)
                self.first_alone = self.first_alone and self.now == 1
            await asyncio.sleep(0.02)
            self.now -= 1
            return await super().write(batch)

    sink, done = SlowSink(), []

    async def chunk_done(chunk):
        done.append([p.delivery.activity_key for p in chunk])

    runner = DeliveryRunner("crm", sink, Recorder(), RetryPolicy(), FakeClock(), concurrency=2)
    assert await runner.deliver(pendings(15), chunk_done) is True
    assert sink.first_alone is True and sink.most == 2
    assert sorted(k for c in done for k in c) == [f"act-{i:06d}" for i in range(15)] and len(done) == 5
    sink.most = 0
    serial = DeliveryRunner("crm", sink, Recorder(), RetryPolicy(), FakeClock())
    assert await serial.deliver(pendings(9)) is True and sink.most == 1  # the default: one at a time


def test_durations_in_messages_read_as_a_person_reads_them():
    from sinks.runner import span

    assert [span(4), span(720), span(5400), span(14 * 86400)] == ["4 s", "12 min", "90 min", "14.0 days"]
    assert span(3 * 3600) == "3.0 h"
