"""The delivery runner: everything about getting a batch into a CRM except building the request.

One place owns it all, for every provider: chunking to the provider's batch limit, the rate
limit, honouring Retry-After for every later request of the endpoint, bounded in-process retries
of whole-batch transient failures, re-authentication once on an expired token, and routing each
failed record: a retriable failure to the retry tier its attempt count calls for (with attempts,
first-failure time, due time and last error in its headers), a permanent one to the dead-letter
topic, and a delivery still failing two weeks after its first failure to the dead-letter topic.

It never raises: whatever a provider does, each record ends delivered, on a retry topic or on
the dead-letter topic, and only then does the worker's agent acknowledge it.

Time comes from a :class:`Clock`, so tests can move it two weeks ahead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import traceback
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

from core import headers as H
from core.envvars import env_float, env_floats, env_int
from core.logs import record_fields

from .contract import (DEFAULT_BATCH_SIZE, AuthExpired, BatchRefused, Delivery, RetriableError, SetupError, Sink,
                       SinkError)

log = logging.getLogger("activity_sync.sinks")


def span(seconds: float) -> str:
    """A duration as a person reads it: ``4 s``, ``12 min``, ``3.5 h``, ``14 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class Clock:
    """Wall-clock time (seconds since the epoch) and sleeping until a moment of it."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float, step: float = 1.0) -> None:
        # Short real sleeps, re-reading the clock each time, so a clock moved ahead takes effect.
        while (remaining := when - self.now()) > 0:
            await asyncio.sleep(min(remaining, step))


class OffsetClock(Clock):
    """Wall-clock time plus an offset in seconds read from a file (absent or empty: 0).

    Tests and drills write e.g. ``1300000`` into the file to be fifteen days in the future.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._mtime = None
        self._offset = 0.0

    def offset(self) -> float:
        try:
            m = self.path.stat().st_mtime_ns
        except OSError:
            return 0.0
        if m != self._mtime:
            self._mtime = m
            try:
                self._offset = float(self.path.read_text().strip() or 0)
            except ValueError:
                self._offset = 0.0
        return self._offset

    def now(self) -> float:
        return time.time() + self.offset()


def clock_from_env() -> Clock:
    path = os.environ.get("ACTIVITY_SYNC_CLOCK_OFFSET_FILE")
    return OffsetClock(path) if path else Clock()


@dataclass(frozen=True)
class RetryPolicy:
    """Retry tiers by delay, the two-week window, and the in-process retries before the first tier."""

    tiers: tuple[tuple[str, float], ...] = H.RETRY_TIERS
    window_s: float = H.TWO_WEEKS_S
    inline_attempts: int = 2       # extra in-process tries of a whole-batch transient failure
    inline_backoff_s: float = 0.5  # doubled each try
    max_inline_wait_s: float = 30  # a longer Retry-After sends the batch to a retry tier instead

    def tier_for(self, attempts: int, retry_after: float | None) -> tuple[str, float]:
        """The tier for a delivery that has failed ``attempts`` times (1 = first failure)."""
        idx = min(max(attempts, 1) - 1, len(self.tiers) - 1)
        name, delay = self.tiers[idx]
        if retry_after:
            for n, d in self.tiers[idx:]:  # never sooner than the receiver asked
                name, delay = n, d
                if d >= retry_after:
                    break
            delay = max(delay, retry_after)
        return name, delay

    @classmethod
    def from_settings(cls, settings=None) -> "RetryPolicy":
        """An endpoint's settings first, then ``ACTIVITY_SYNC_RETRY_DELAYS`` / ``_RETRY_WINDOW_S`` /
        ``_INLINE_RETRIES`` (four delays separated by commas or spaces), then the defaults."""
        names = [n for n, _ in cls.tiers]
        p = cls()
        delays = getattr(settings, "retry_delays_s", None)
        if delays is None:
            delays = env_floats("ACTIVITY_SYNC_RETRY_DELAYS", len(names))
        if delays:
            if len(delays) != len(names):
                raise ValueError(f"retry delays need {len(names)} values (tiers {', '.join(names)})")
            p = replace(p, tiers=tuple(zip(names, (float(d) for d in delays))))
        window = getattr(settings, "retry_window_s", None) or env_float("ACTIVITY_SYNC_RETRY_WINDOW_S", 0, 0,
                                                                         H.TWO_WEEKS_S)
        if window:
            p = replace(p, window_s=float(window))
        inline = getattr(settings, "inline_retries", None)
        if inline is None and os.environ.get("ACTIVITY_SYNC_INLINE_RETRIES", "").strip():
            inline = env_int("ACTIVITY_SYNC_INLINE_RETRIES", 2, 0, 10)
        if inline is not None:
            p = replace(p, inline_attempts=int(inline))
        return p


@dataclass
class Pending:
    """A delivery on its way, with what the retry and dead-letter records must carry."""

    delivery: Delivery
    key: bytes | None
    value: bytes                       # the enriched record as it was read (Avro)
    origin: tuple[str, int, int]       # where it was read: topic, partition, offset
    attempts: int = 0                  # failures so far
    first_failure: float | None = None
    replay_count: int = 0
    enriched_at: float | None = None   # when the stream stage enriched it (seconds)


class Publisher(Protocol):
    """Where the runner hands records it could not deliver (Kafka topics, in the worker)."""

    async def retry(self, tier: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None: ...

    async def dead(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None: ...

    async def flush(self) -> None:
        """Wait until every record handed over so far is written."""


class Outcome(Protocol):
    def delivered(self, p: Pending, now: float) -> None: ...

    def retried(self, p: Pending, tier: str) -> None: ...

    def dead(self, p: Pending | None, reason: str) -> None: ...  # None: a record that could not be read

    def waited(self, reason: str, seconds: float) -> None: ...

    def failed(self, error: SinkError) -> None: ...


class NoOutcome:
    def delivered(self, p, now): pass

    def retried(self, p, tier): pass

    def dead(self, p, reason): pass

    def waited(self, reason, seconds): pass

    def failed(self, error): pass


class WindowExpired(SinkError):
    """Still failing two weeks after the first failure: dead-lettered with the last error."""


class RequestWindow:
    """A request budget over a sliding window (``requests`` per ``seconds``), kept client-side.

    A request is counted from when its answer arrived, which is never earlier than when the server
    counted it; so however the network delays requests, the server's window never sees more than
    the budget from this process.
    """

    def __init__(self, requests: int, seconds: float) -> None:
        self.requests, self.seconds = int(requests), float(seconds)
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0

    def _prune(self, now: float) -> None:
        while self._log and self._log[0][0] <= now - self.seconds:
            self._used -= self._log.popleft()[1]

    def wait_s(self, cost: int, now: float) -> float:
        """How long until a request of ``cost`` fits in the window."""
        self._prune(now)
        cost = min(cost, self.requests)
        excess = self._used + cost - self.requests
        if excess <= 0:
            return 0.0
        for t, c in self._log:
            excess -= c
            if excess <= 0:
                return max(0.0, t + self.seconds - now)
        return self.seconds

    def spent(self, cost: int, now: float) -> None:
        self._log.append((now, cost))
        self._used += cost

    def carry_over(self, previous: "RequestWindow | None") -> None:
        """After a settings change: the requests already spent still count against the new budget."""
        if previous is not None:
            self._log, self._used = previous._log, previous._used


@dataclass
class DeliveryRunner:
    endpoint: str
    sink: Sink
    publisher: Publisher
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Clock = field(default_factory=Clock)
    batch_size: int = DEFAULT_BATCH_SIZE
    concurrency: int = 1               # requests of one write in flight at once (concurrent_requests)
    rate_per_s: float = 0.0            # requests per second; 0: unlimited
    outcome: Outcome = field(default_factory=NoOutcome)
    not_before: float = 0.0            # no request before this (Retry-After), clock time
    window: RequestWindow | None = None  # a request budget over a sliding window (rate_window)
    # shared among an endpoint's workers: when the endpoint must wait (a hold another worker received),
    # where to tell the others, and this worker's share of the endpoint's rate limit and budget
    hold_until: Callable[[], float] | None = None
    on_hold: Callable[[float], None] | None = None
    share: Callable[[], float] | None = None
    # a graceful stop is under way: no new request starts (the worker's)
    stopping: Callable[[], bool] | None = None
    _next_slot: float = 0.0
    _last_request: float = 0.0
    _last_ok: bool = False             # the latest request answered (so concurrent ones need no canary)
    _slots: asyncio.Semaphore | None = None

    @classmethod
    def for_endpoint(cls, endpoint: str, sink: Sink, publisher: Publisher, settings, *, clock: Clock | None = None,
                     policy: RetryPolicy | None = None, **kw) -> "DeliveryRunner":
        """A runner as an endpoint's settings say: batch size, rate limit, request budget, retries, timeout."""
        rw = getattr(settings, "rate_window", None)
        kw.setdefault("batch_size", settings.batch_size)
        kw.setdefault("concurrency", getattr(settings, "concurrent_requests", 1))
        return cls(endpoint, sink, publisher, policy or RetryPolicy.from_settings(settings), clock or Clock(),
                   rate_per_s=settings.rate_limit_per_s,
                   window=RequestWindow(rw.requests, rw.seconds) if rw else None, **kw)

    # ------------------------------------------------------------------ gate
    async def gate(self, cost: int = 1) -> int:
        """Wait for Retry-After, the rate limit, the API's pacing and the request budget; count and
        time the waits."""
        now = self.clock.now()
        if self.hold_until is not None:
            self.not_before = max(self.not_before, self.hold_until())
        if self.not_before > now:
            self.outcome.waited("retry_after", self.not_before - now)
            await self.clock.sleep_until(self.not_before, step=0.05)
        share = max(0.01, min(1.0, self.share())) if self.share is not None else 1.0
        if self.rate_per_s > 0:
            mono = time.monotonic()
            if self._next_slot > mono:
                self.outcome.waited("rate_limit", self._next_slot - mono)
                await asyncio.sleep(self._next_slot - mono)
            self._next_slot = max(self._next_slot, mono) + 1.0 / (self.rate_per_s * share)
        pacing = self.sink.pacing_s()
        if pacing > 0:
            wait = self._last_request + pacing - time.monotonic()
            if wait > 0:
                self.outcome.waited("api_pacing", wait)
                await asyncio.sleep(wait)
        if self.window is not None:
            cost = max(1, round(cost / share))  # this worker's share of the endpoint's budget
            while (wait := self.window.wait_s(cost, time.monotonic())) > 0:
                self.outcome.waited("request_budget", wait)
                await asyncio.sleep(wait)
        return cost

    def honour(self, error: SinkError) -> None:
        if error.retry_after:
            self.not_before = max(self.not_before, self.clock.now() + error.retry_after)
            if self.on_hold is not None:
                self.on_hold(self.not_before)

    # ------------------------------------------------------------------ delivery
    async def deliver(self, items: Sequence[Pending], on_chunk=None) -> bool:
        """Deliver in requests of the batch size; ``on_chunk(chunk)`` is awaited after each request's
        records have all ended delivered, on a retry tier or dead (the worker commits them there).

        False when a graceful stop came first: no new request starts after it, and the chunks not
        sent stay unacknowledged, for the partition's next owner. A record already tried once that
        would need another request goes to a retry tier instead."""
        items = self.distinct(items)
        size = max(1, min(self.batch_size, self.sink.max_batch_size))
        chunks = [list(items[i:i + size]) for i in range(0, len(items), size)]
        if not chunks:
            return True

        async def one(chunk: list[Pending]) -> bool:
            if not await self._deliver_chunk(chunk):
                return False
            if on_chunk is not None:
                await on_chunk(chunk)
            return True

        if self.concurrency <= 1:
            for chunk in chunks:
                if not await one(chunk):
                    return False
            return True
        if not self._last_ok:  # the first alone while the endpoint's state is unknown (the first request,
            if not await one(chunks[0]):  # or after a failed one): an expired token or a 429 costs one request
                return False
            chunks = chunks[1:]
        if self._slots is None:  # shared by every take in flight: at most `concurrency` requests in all
            self._slots = asyncio.Semaphore(self.concurrency)

        async def in_slot(chunk: list[Pending]) -> bool:
            async with self._slots:
                return await one(chunk)

        results = await asyncio.gather(*(in_slot(c) for c in chunks), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return all(results)

    def distinct(self, items: Sequence[Pending]) -> Sequence[Pending]:
        """One record per activity: a repeat (a crash repeats a batch upstream; a replay meets the
        original) is left out before any provider sees it. Salesforce refuses both copies of an
        external ID in one call (DUPLICATE_VALUE), other APIs would write it twice. The repeat's own
        Kafka record is acknowledged with the take it came in."""
        seen: set[str] = set()
        out = []
        for p in items:
            key = p.delivery.activity_key
            if key not in seen:
                seen.add(key)
                out.append(p)
        if len(out) < len(items):
            log.info("endpoint %s: %d repeated activit%s in one take left out", self.endpoint, len(items) - len(out),
                     "y" if len(items) - len(out) == 1 else "ies")
        return out

    def _stopping(self) -> bool:
        return self.stopping is not None and self.stopping()

    async def _deliver_chunk(self, chunk: list[Pending], tries: int = 0, reauthenticated: bool = False,
                             fresh: bool = True) -> bool:
        """Deliver one request's records (and what it takes: halves, in-process retries); False only
        when a stop came before anything of ``chunk`` was sent (``fresh``)."""
        while True:
            cost = await self.gate(self.sink.request_cost(len(chunk)))
            if self._stopping():
                if fresh:
                    return False
                await self._route_all(chunk, RetriableError("not tried again in-process: the worker is stopping"))
                return True
            fresh = False
            self._last_ok = False  # until this request answers
            timeout = self.sink.write_timeout_s(len(chunk))
            try:
                try:
                    failures = await asyncio.wait_for(self.sink.write([p.delivery for p in chunk]), timeout)
                finally:
                    self._last_request = time.monotonic()
                    if self.window is not None:
                        self.window.spent(cost, self._last_request)
            except AuthExpired as exc:
                if not reauthenticated:
                    reauthenticated = True
                    try:
                        await self.sink.reauthenticate()
                        continue
                    except Exception as auth_exc:  # noqa: BLE001 - becomes the batch's error
                        exc = RetriableError(f"re-authentication failed: {auth_exc}")
                await self._route_all(chunk, exc)
                return True
            except SetupError:
                raise  # the endpoint's, not the records': the delivery pauses the endpoint and sends them again
            except BatchRefused as exc:
                if len(chunk) > 1:  # too big, or one record spoils an all-or-nothing call: try the halves
                    half = len(chunk) // 2
                    await self._deliver_chunk(chunk[:half], fresh=False)
                    await self._deliver_chunk(chunk[half:], fresh=False)
                    return True
                await self._route_all(chunk, exc)
                return True
            except SinkError as exc:
                self.honour(exc)
                wait = exc.retry_after or self.policy.inline_backoff_s * (2 ** tries)
                if exc.retriable and tries < self.policy.inline_attempts and wait <= self.policy.max_inline_wait_s:
                    tries += 1
                    if not exc.retry_after:
                        await asyncio.sleep(wait)
                    continue  # the gate waits out a Retry-After
                await self._route_all(chunk, exc)
                return True
            except asyncio.TimeoutError:
                exc = RetriableError(f"write did not finish within {timeout:g}s")
                if tries < self.policy.inline_attempts:
                    tries += 1
                    continue
                await self._route_all(chunk, exc)
                return True
            except Exception as exc:  # a provider bug: keep the records, try again later
                log.error("endpoint %s: provider %s raised: %s", self.endpoint, self.sink.provider,
                          traceback.format_exc())
                await self._route_all(chunk, RetriableError(f"{type(exc).__name__}: {exc}"))
                return True
            self._last_ok = True
            failed = {f.index: f.error for f in failures}
            setup = next((e for e in failed.values() if isinstance(e, SetupError)), None)
            if setup is not None:  # one request of a one-per-request write said so: the endpoint's, not the records'
                raise setup
            again = [i for i, e in sorted(failed.items()) if e.retriable]
            wait = max([failed[i].retry_after or 0 for i in again], default=0) or \
                self.policy.inline_backoff_s * (2 ** tries)
            retry_inline = bool(again) and tries < self.policy.inline_attempts and wait <= self.policy.max_inline_wait_s
            now = self.clock.now()
            for i, p in enumerate(chunk):
                if i in failed:
                    self.honour(failed[i])
                    if not (retry_inline and failed[i].retriable):
                        await self.route(p, failed[i])
                else:
                    self.outcome.delivered(p, now)
            if retry_inline:
                # records that failed on their own but can succeed (a lock, a 5xx or a throttle on
                # one request of a one-record-per-request API): tried again in-process, like a batch
                if any(isinstance(failed[i], AuthExpired) for i in again) and not reauthenticated:
                    reauthenticated = True
                    try:
                        await self.sink.reauthenticate()
                    except Exception as auth_exc:  # noqa: BLE001 - becomes those records' error
                        await self._route_all([chunk[i] for i in again],
                                              RetriableError(f"re-authentication failed: {auth_exc}"))
                        return True
                elif not any(failed[i].retry_after for i in again):
                    await asyncio.sleep(wait)  # the gate waits out a Retry-After
                await self._deliver_chunk([chunk[i] for i in again], tries + 1, reauthenticated, fresh=False)
            return True

    async def _route_all(self, chunk: list[Pending], error: SinkError) -> None:
        for p in chunk:
            await self.route(p, error)

    async def route(self, p: Pending, error: SinkError) -> None:
        """A failed record: to a retry tier if trying again can help and the window is open, else dead."""
        self.outcome.failed(error)
        now = self.clock.now()
        attempts = p.attempts + 1
        first = p.first_failure if p.first_failure is not None else now
        if not error.retriable:
            await self.dead(p, error, attempts, first)
            return
        if now - first >= self.policy.window_s:
            await self.dead(p, WindowExpired(
                f"still failing {span(now - first)} after the first failure "
                f"(window {span(self.policy.window_s)}); last error: {type(error).__name__}: {error}",
                status=error.status), attempts, first)
            return
        tier, delay = self.policy.tier_for(attempts, error.retry_after)
        headers = H.retry(self.endpoint, p.delivery.tenant_code, p.delivery.activity_key, p.origin,
                          attempts=attempts, first_failure=first, due=now + delay, tier=tier,
                          error_class=type(error).__name__, error=str(error), replay_count=p.replay_count)
        await self.publisher.retry(tier, p.key, p.value, headers)
        self.outcome.retried(p, tier)

    async def dead(self, p: Pending, error: BaseException, attempts: int, first: float) -> None:
        await self.publisher.dead(p.key, p.value, H.dead_letter(
            "deliver", p.origin, error, attempts=attempts, first_failure=first, endpoint=self.endpoint,
            tenant=p.delivery.tenant_code, activity_key=p.delivery.activity_key, replay_count=p.replay_count))
        self.outcome.dead(p, type(error).__name__)
        topic, partition, offset = (tuple(p.origin) + (None, None, None))[:3]
        log.warning("endpoint %s: %s dead-lettered after %d attempt(s): %s: %s", self.endpoint,
                    p.delivery.activity_key, attempts, type(error).__name__, str(error)[:300],
                    extra={"endpoint": self.endpoint, **record_fields(p.delivery.activity_key, topic, partition,
                                                                       offset, p.delivery.tenant_code)})

    async def expire_or_keep(self, p: Pending, last_error: str) -> bool:
        """For a record read back from a retry tier: dead-letter it if its window has closed."""
        now = self.clock.now()
        if p.first_failure is not None and now - p.first_failure >= self.policy.window_s:
            await self.dead(p, WindowExpired(
                f"still failing {span(now - p.first_failure)} after the first failure "
                f"(window {span(self.policy.window_s)}); last error: {last_error}"), p.attempts,
                p.first_failure)
            return True
        return False


def pending_from_retry(delivery: Delivery, key, value, headers) -> tuple[Pending, float, str]:
    """Rebuild a :class:`Pending` from a retry record; answer it, its due time and its last error."""
    info = H.parse_retry(headers)
    p = Pending(delivery, key, value, info.origin, attempts=info.attempts, first_failure=info.first_failure,
                replay_count=info.replay_count)
    return p, info.due, info.last_error
