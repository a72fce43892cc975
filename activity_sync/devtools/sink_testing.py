"""The provider contract harness: every provider's test class subclasses :class:`ProviderContract`.

A provider's test supplies only what is its own: how to start its fake (``start_fake``), the
endpoint settings that point at it (``settings``), the environment its secret references read
(``environ``), and what the fake stored (``stored_keys``). The harness runs the same cases for
every provider, through the real :class:`~sinks.runner.DeliveryRunner` where the case is about
the runner's handling of what the provider says:

- an empty batch sends nothing;
- a batch over the provider's limit is split into requests the API accepts;
- a throttle answer holds every later request back at least as long as it asked;
- timeouts and 5xx are retried, and the write then succeeds;
- one invalid record fails alone, with the provider's error, and the rest are stored;
- an expired token is refreshed once, and the write succeeds;
- the same activity written twice leaves one record (where the API can upsert);
- no secret appears in logs, errors, the sink's repr or the metrics;
- stop leaks no session or socket (ResourceWarning is an error).

A provider that cannot meet a case overrides it with ``pytest.mark.xfail(strict=True, reason=...)``
(see :func:`opt_out`), so the day it can, the suite says so.

    class TestMyCrm(ProviderContract):
        provider = "my-crm"
        async def start_fake(self): return await MyFake().start()
        def settings(self, fake, tmp_path): return {"url": fake.url, "api_key_env": "MY_KEY"}
        def environ(self): return {"MY_KEY": SECRET}
        def stored_keys(self, fake, tmp_path): return fake.stored_keys()
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import warnings
from typing import Any

import pytest

from sinks.contract import Delivery, MappingError, SinkContext
from sinks.registry import parse_settings, sink_class
from sinks.runner import DeliveryRunner, Pending, RetryPolicy


def opt_out(reason: str):
    """Mark a contract case this provider cannot meet (strict: it fails the suite once it can)."""
    return pytest.mark.xfail(strict=True, reason=reason)


def sample_deliveries(n: int, endpoint: str = "crm", customer=lambda i: f"cust-{i % 17}") -> list[Delivery]:
    """``n`` deliveries built from the seed's activities by the real enrichment, keys ``act-000000``…"""
    from core.catalog import load_catalog
    from streams.enrich import Enricher
    from core.config import Endpoint, Subscription
    from core.routing import Routing
    from activity_sync.tools import seed_lines

    seeds = [json.loads(x) for x in seed_lines()]
    cat = load_catalog()
    routing = Routing(cat)
    routing.put_endpoint(Endpoint(endpoint, tenants=("*",)))
    for code in {e["ActivityCode"] for e in seeds}:
        routing.put_subscription(Subscription(code, endpoint, "{ActivityCode} for the member", True, "W1", "W2"))
    enricher = Enricher(cat, routing)
    out = []
    for i in range(n):
        ev = dict(seeds[i % len(seeds)], ActivityKey=f"act-{i:06d}")
        for k in ("AuthorExternalKey", "MemberExternalKey", "AccessedByExternalKey"):
            if k in ev:
                ev[k] = customer(i)
        rec = enricher.enrich(json.dumps(ev).encode(), None, "raw", 0, i, 0).record
        out.append(Delivery.from_record(rec, rec["deliveries"][0]))
    return out


class Recorder:
    """A publisher that keeps what the runner routes to retry tiers and the dead-letter topic."""

    def __init__(self) -> None:
        self.retries: list = []
        self.deads: list = []

    async def retry(self, tier, key, value, headers) -> None:
        self.retries.append((tier, dict(headers)))

    async def dead(self, key, value, headers) -> None:
        self.deads.append(dict(headers))

    async def flush(self) -> None:
        pass


class ProviderContract:
    provider: str = ""
    #: secrets the provider is given; none may appear in logs, errors or metrics
    secrets: tuple[str, ...] = ()

    # ------------------------------------------------------------------ what a provider supplies
    async def start_fake(self) -> Any:
        return None

    async def stop_fake(self, fake) -> None:
        if fake is not None:
            await fake.stop()

    def settings(self, fake, tmp_path) -> dict:
        raise NotImplementedError

    def environ(self) -> dict[str, str]:
        return {}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        """ActivityKeys the fake stored, one entry per stored record (a duplicate shows twice)."""
        raise NotImplementedError

    def control(self, fake, spec: dict) -> None:
        """Inject a fault (see :mod:`core.fakes`)."""
        if fake is None:
            raise NotImplementedError(f"{self.provider} has no fake to inject {spec} into")
        fake.control(spec)

    # ------------------------------------------------------------------ fixtures
    @pytest.fixture
    async def fake(self, monkeypatch):
        for k, v in self.environ().items():
            monkeypatch.setenv(k, v)
        f = await self.start_fake()
        yield f
        await self.stop_fake(f)

    async def sink(self, fake, tmp_path, **overrides):
        settings = parse_settings(self.provider, {**self.settings(fake, tmp_path), **overrides},
                                  "activity-history" if self.provider == "activity-history" else "membership")
        statuses: list = []
        sink = sink_class(self.provider)()
        await sink.start(SinkContext("crm", settings, statuses.append))
        sink.statuses = statuses
        return sink

    def runner(self, sink, publisher=None, **kw) -> DeliveryRunner:
        policy = RetryPolicy(inline_attempts=2, inline_backoff_s=0.05)
        return DeliveryRunner.for_endpoint("crm", sink, publisher or Recorder(), sink.ctx.settings, policy=policy, **kw)

    @staticmethod
    def pending(deliveries) -> list[Pending]:
        return [Pending(d, b"k", b"v", ("t", 0, i)) for i, d in enumerate(deliveries)]

    # ------------------------------------------------------------------ the cases
    async def test_empty_batch_sends_nothing(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        try:
            assert await sink.write([]) == []
        finally:
            await sink.stop()
        assert not getattr(fake, "requests", []) and self.stored_keys(fake, tmp_path) == []

    async def test_batch_over_the_limit_is_split(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        limit = sink.max_batch_size
        sizes: list[int] = []
        write = sink.write

        async def spy(batch):
            sizes.append(len(batch))
            return await write(batch)

        sink.write = spy
        batch = sample_deliveries(limit + 3)
        pub = Recorder()
        try:
            await self.runner(sink, pub, batch_size=10 ** 6).deliver(self.pending(batch))
        finally:
            await sink.stop()
        assert sizes == [limit, 3], sizes
        assert pub.retries == [] and pub.deads == []
        assert sorted(self.stored_keys(fake, tmp_path)) == sorted(d.activity_key for d in batch)

    async def test_throttle_holds_back_every_later_request(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        self.control(fake, {"throttle": {"retry_after": 1, "count": 1}})
        batch = sample_deliveries(4)
        t0 = time.monotonic()
        try:
            await self.runner(sink, batch_size=2).deliver(self.pending(batch))
        finally:
            await sink.stop()
        assert fake.early == 0, "a request arrived before the throttle's delay had passed"
        assert time.monotonic() - t0 >= 1.0
        assert sorted(self.stored_keys(fake, tmp_path)) == sorted(d.activity_key for d in batch)

    async def test_5xx_and_timeouts_are_retried(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, timeout_s=0.5)
        pub = Recorder()
        batch = sample_deliveries(3)
        try:
            self.control(fake, {"fail": {"status": 503, "count": 1}})
            await self.runner(sink, pub).deliver(self.pending(batch[:1]))
            self.control(fake, {"slow": {"ms": 1500, "count": 1}})
            await self.runner(sink, pub).deliver(self.pending(batch[1:]))
        finally:
            await sink.stop()
        assert pub.retries == [] and pub.deads == []
        assert sorted(set(self.stored_keys(fake, tmp_path))) == sorted(d.activity_key for d in batch)
        assert "503" in map(str, sink.statuses) and "error" in map(str, sink.statuses)

    async def test_one_invalid_record_fails_alone(self, fake, tmp_path):
        """Through the runner, so an all-or-nothing bulk API (which refuses the batch and is split)
        is judged by the same outcome as one with per-record results."""
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(4, customer=lambda i: "cust-bad" if i == 2 else f"cust-{i}")
        self.control(fake, {"reject_customers": ["cust-bad"]})
        pub = Recorder()
        try:
            await self.runner(sink, pub).deliver(self.pending(batch))
        finally:
            await sink.stop()
        assert pub.retries == [] and [h["activity_key"] for h in pub.deads] == [batch[2].activity_key.encode()]
        assert pub.deads[0]["error.class"] != b"RetriableError" and pub.deads[0]["error.message"]
        assert sorted(self.stored_keys(fake, tmp_path)) == sorted(batch[i].activity_key for i in (0, 1, 3))

    async def test_record_without_customer_is_a_mapping_error(self, fake, tmp_path):
        """An activity that names no member the endpoint can write to fails alone, before any request."""
        sink = await self.sink(fake, tmp_path)
        d = sample_deliveries(1)[0]
        try:
            failures = await sink.write([Delivery(**{**d.__dict__, "customer_id": None})])
        finally:
            await sink.stop()
        assert [f.index for f in failures] == [0] and isinstance(failures[0].error, MappingError)
        assert not getattr(fake, "requests", []) and self.stored_keys(fake, tmp_path) == []

    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(2)
        pub = Recorder()
        try:
            await sink.write(batch[:1])
            before = fake.token_requests
            self.control(fake, {"expire_tokens": True})
            await self.runner(sink, pub).deliver(self.pending(batch[1:]))
        finally:
            await sink.stop()
        assert fake.token_requests == before + 1 and 401 in sink.statuses
        assert pub.retries == [] and sorted(self.stored_keys(fake, tmp_path)) == sorted(d.activity_key for d in batch)

    async def test_same_activity_twice_is_stored_once(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(3)
        try:
            assert await sink.write(batch) == []
            assert await sink.write(batch) == []  # at-least-once redelivery
        finally:
            await sink.stop()
        assert sorted(self.stored_keys(fake, tmp_path)) == sorted(d.activity_key for d in batch)

    async def test_no_secret_in_logs_errors_or_metrics(self, fake, tmp_path, caplog):
        from prometheus_client import REGISTRY, generate_latest

        caplog.set_level(logging.DEBUG)
        sink = await self.sink(fake, tmp_path)
        pub = Recorder()
        errors = []
        try:
            if fake is not None:
                self.control(fake, {"fail": {"status": 500, "count": 10}})
            await self.runner(sink, pub).deliver(self.pending(sample_deliveries(2)))
            errors = [h.get("retry.last_error", b"").decode() for _, h in pub.retries]
        finally:
            await sink.stop()
        seen = caplog.text + repr(sink) + repr(sink.ctx) + repr(sink.ctx.settings) + "".join(errors) \
            + generate_latest(REGISTRY).decode()
        for secret in self.secrets:
            assert secret not in seen

    async def test_stop_leaks_no_session_or_socket(self, fake, tmp_path):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            sink = await self.sink(fake, tmp_path)
            await sink.write(sample_deliveries(1))
            await sink.stop()
            session = getattr(sink, "session", None)
            del sink
            await asyncio.sleep(0)
            gc.collect()
        assert session is None or session.closed
        leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not leaks, [str(w.message) for w in leaks]
