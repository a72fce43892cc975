"""One endpoint's delivery: everything a sink worker's agents do, as a class testable without Kafka.

The agents hand it batches of messages (anything with ``key``, ``value``, ``headers``, ``topic``,
``partition``, ``offset``): :meth:`EndpointDelivery.deliver` for ``activity.enriched``,
:meth:`EndpointDelivery.retry` for a retry tier. It decodes what is addressed to its endpoint
(the ``endpoints`` header lets it skip the rest undecoded), hands deliveries to the
:class:`~sinks.runner.DeliveryRunner`, and returns once every retry and dead letter it produced
is acknowledged, so the agent may then acknowledge the batch.

Between batches it follows ``activity.config`` (read into a :class:`~core.routing.Routing` by
the worker's config table):

- settings changed (URL, batch size, rate limit, credential reference …): the sink is stopped and
  started again with the new settings before the next batch; a Retry-After still running carries over;
- endpoint disabled: deliveries pause (the batch in hand and everything after it wait in Kafka,
  unacknowledged; nothing is dead-lettered) until it is enabled again;
- settings this version cannot use (refused by the provider's settings model, an unknown
  provider, a secret that cannot be read): one log line with the reason, and a pause as above;
- endpoint deleted: one log line, and ``on_deleted`` (the worker stops itself).

With ``schedule: {every: 30m}`` it delivers in runs: everything that has arrived, in the
provider's largest batches, then waits for the next run holding one batch at most (the rest stays
in Kafka: the worker's stream buffer is bounded, and offsets are committed only after delivery).
Retry tiers are not held back by the schedule: a retry is sent when it is due, as in real-time mode.
"""

from __future__ import annotations

import asyncio
import time
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from core import headers as H
from core.config import Endpoint
from core.routing import Routing

from . import metrics
from .contract import Delivery, Sink, SinkContext
from .registry import SettingsError, parse_endpoint, sink_class
from .runner import Clock, DeliveryRunner, Pending, pending_from_retry

log = logging.getLogger("activity_sync.sinks")


class Publisher(Protocol):
    async def retry(self, tier: str, key, value, headers) -> None: ...

    async def dead(self, key, value, headers) -> None: ...

    async def flush(self) -> None: ...


class TenantMismatch(Exception):
    """A record addressed to this endpoint belongs to a tenant the endpoint does not serve.

    Routing never addresses one (the stream stage filters by tenant); this is the sink's own check
    that one organisation's activity is never written into another's CRM, whatever went wrong
    upstream (a record written by another tool, an endpoint's tenant changed while records waited)."""


@dataclass
class _Active:
    endpoint: Endpoint
    sink: Sink
    runner: DeliveryRunner


class EndpointDelivery:
    def __init__(self, endpoint: str, routing: Routing, publisher: Publisher, decode: Callable[[bytes], dict],
                 clock: Clock | None = None, on_deleted: Callable[[], Awaitable[None] | None] = lambda: None,
                 poll_s: float = 0.5, ack: Callable[[list], Awaitable[None]] | None = None,
                 holds=None, share: Callable[[], float] | None = None,
                 progress: Callable[[], dict[tuple[str, int], tuple[int | None, int | None, int | None]]] | None = None
                 ) -> None:
        self.endpoint = endpoint
        self.routing = routing
        self.publisher = publisher
        self.decode = decode
        self.clock = clock or Clock()
        self.on_deleted = on_deleted
        self.poll_s = poll_s
        # (topic, partition) -> (fetch position, offset of the last record handed to the agent, high watermark)
        self.progress = progress
        self.ack = ack                            # acknowledge and commit consumed messages (the worker's)
        self.holds = holds                        # endpoint-wide Retry-After (sinks.holds.EndpointHolds)
        self.share = share                        # this worker's share of the endpoint's partitions
        self._delivered: dict[tuple[str, int], int] = {}  # the last offset this endpoint finished, per partition
        self.stopping = False                     # a graceful stop: no new batch is started
        self.writes = 0                           # writes started (the idle memory trim watches it)
        self.active: _Active | None = None
        self.paused: str | None = "starting"      # why deliveries wait, or None
        self._said: str | None = None
        self._seen = False                        # the endpoint was in the config at some point
        self._version = -1
        self._lock = asyncio.Lock()
        self._inflight = 0                        # writes under way (the main agent and the retry agents share a sink)
        # schedule state (interval mode)
        self.next_run = 0.0
        self.run_open = False
        self.run_started = 0.0
        self.run_count = 0
        self.last_batch_done = 0.0
        self._first_of_run = False

    # ------------------------------------------------------------------ config
    def _say(self, message: str, level=logging.WARNING) -> None:
        if message != self._said:  # one line per state, not one per poll
            self._said = message
            log.log(level, "endpoint %s: %s", self.endpoint, message)

    async def refresh(self) -> DeliveryRunner | None:
        """Apply config changes; the runner to deliver with, or None while deliveries are paused."""
        async with self._lock:
            if self.routing.version == self._version and self.active is not None and not self.paused:
                return self.active.runner
            self._version = self.routing.version
            ep = self.routing.endpoints.get(self.endpoint)
            if ep is None:
                why = self.routing.refused.get(f"endpoint:{self.endpoint}")
                if why:
                    return await self._pause(f"its latest activity.config record cannot be used ({why}); "
                                             "deliveries wait in Kafka until it is fixed")
                if self._seen:
                    self.paused = "deleted"
                    if self._said != "deleted":
                        self._say("deleted from activity.config: this worker stops", logging.WARNING)
                        self._said = "deleted"
                        await self._stop_sink()
                        res = self.on_deleted()
                        if asyncio.iscoroutine(res):
                            await res
                    return None
                return await self._pause("not in activity.config yet; waiting for it")
            self._seen = True
            if not ep.enabled:
                return await self._pause("disabled: deliveries wait in Kafka until it is enabled")
            if self.active is not None and self.active.endpoint == ep:
                self._resume()
                return self.active.runner
            try:
                settings = parse_endpoint(ep)
            except SettingsError as exc:
                return await self._pause(f"settings cannot be used ({exc}); deliveries wait in Kafka")
            previous = self.active
            while self._inflight:  # another agent's write is under way with this sink: let it finish
                await asyncio.sleep(0.02)
            await self._stop_sink()
            try:
                sink = sink_class(ep.provider)()
                await sink.start(SinkContext(self.endpoint, settings,
                                             lambda st: metrics.HTTP.labels(self.endpoint, str(st)).inc()))
            except (SettingsError, LookupError, ValueError, OSError) as exc:
                await _quietly_stop(locals().get("sink"))
                return await self._pause(f"provider {ep.provider} cannot start ({exc}); deliveries wait in Kafka")
            runner = DeliveryRunner.for_endpoint(self.endpoint, sink, self.publisher, settings, clock=self.clock,
                                                 outcome=metrics.MetricsOutcome(self.endpoint))
            if self.holds is not None:
                runner.hold_until, runner.on_hold = self.holds.hold_until, self.holds.publish
            runner.share = self.share
            if previous is not None:
                runner.not_before = previous.runner.not_before  # a Retry-After outlives a settings change
                if runner.window is not None:
                    runner.window.carry_over(previous.runner.window)
            self.active = _Active(ep, sink, runner)
            self._resume()
            self._say(f"provider {ep.provider}, batch {runner.batch_size}, "
                      f"{'every %gs' % settings.interval_s if settings.interval_s else 'real-time'}"
                      + (" (settings changed)" if previous is not None else ""), logging.INFO)
            return runner

    async def watch(self) -> None:
        """Called every second or so, between batches or not: stop the worker once its endpoint is deleted
        (an idle worker gets no batch that would tell it)."""
        if self._seen and self.endpoint not in self.routing.endpoints \
                and f"endpoint:{self.endpoint}" not in self.routing.refused:
            await self.refresh()

    async def _pause(self, why: str) -> None:
        self.paused = why
        metrics.PAUSED.labels(self.endpoint).set(1)
        self._say(why)
        return None

    def _resume(self) -> None:
        if self.paused:
            self.paused = None
            metrics.PAUSED.labels(self.endpoint).set(0)

    async def _stop_sink(self) -> None:
        if self.active is not None:
            await _quietly_stop(self.active.sink)
            self.active = None

    async def runner(self) -> DeliveryRunner:
        """Wait until deliveries may go (config known, endpoint enabled, settings usable)."""
        while True:
            r = await self.refresh()
            if r is not None:
                return r
            await asyncio.sleep(self.poll_s)

    async def _write(self, items: list[Pending], messages=()) -> None:
        """Hand ``items`` to the current runner; a settings change waits until this write is done. Each
        request's records are committed as soon as they are done (``messages``: those they were read from),
        so a crash sends again at most the request that was under way."""
        while True:
            runner = await self.runner()
            if self.active is not None and self.active.runner is runner:
                break  # nothing awaited between this check and the count below
        by_origin = {(m.topic, m.partition, m.offset): m for m in messages}

        async def chunk_done(chunk: list[Pending]) -> None:
            if self.ack is not None and by_origin:
                await self.publisher.flush()  # its retry and dead-letter records are written first
                await self.ack([by_origin[p.origin] for p in chunk if p.origin in by_origin])

        self._inflight += 1
        self.writes += 1
        try:
            await runner.deliver(items, chunk_done)
        finally:
            self._inflight -= 1

    @property
    def settings(self):
        return self.active.runner.sink.ctx.settings if self.active else None

    def batch_settings(self) -> tuple[int, float]:
        """How many to take at once and how long to wait for them, for the agents."""
        ep = self.routing.endpoints.get(self.endpoint)
        try:
            s = parse_endpoint(ep) if ep is not None else None
        except SettingsError:
            s = None
        if s is None:
            return 200, 0.05
        # Take up to the provider's limit; the runner cuts requests to batch_size (so a changed batch_size
        # applies at once), and an interval run goes in the largest batches the API takes.
        return s.max_batch, s.linger_ms / 1000

    async def drain(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) for the writes under way to finish; True if there were any
        and they finished."""
        if not self._inflight:
            return False
        deadline = asyncio.get_running_loop().time() + timeout
        while self._inflight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # the agent acknowledges the batch right after the write returns
        return not self._inflight

    async def stop(self) -> None:
        await self._stop_sink()

    # ------------------------------------------------------------------ decoding
    def _entry(self, record: dict) -> dict | None:
        for e in record["deliveries"]:
            if e["endpoint"] == self.endpoint:
                return e
        return None

    def _pending(self, msg, record: dict, entry: dict) -> Pending:
        ea = record.get("enriched_at")
        return Pending(Delivery.from_record(record, entry), msg.key, msg.value, (msg.topic, msg.partition, msg.offset),
                       enriched_at=ea.timestamp() if hasattr(ea, "timestamp") else None)

    def _check_tenant(self, record: dict) -> None:
        ep = self.active.endpoint if self.active else self.routing.endpoints.get(self.endpoint)
        if ep is None or not ep.serves(record["tenant_code"]):
            raise TenantMismatch(f"activity {record['activity_key']} of tenant {record['tenant_code']!r} reached "
                                 f"endpoint {self.endpoint}, which serves {', '.join(ep.tenants) if ep else 'nobody'}; "
                                 "not written")

    async def _undeliverable(self, msg, exc: Exception, record: dict | None = None) -> None:
        log.error("endpoint %s: record %s[%s]@%s cannot be delivered: %s: %s", self.endpoint, msg.topic,
                  msg.partition, msg.offset, type(exc).__name__, exc)
        await self.publisher.dead(msg.key, msg.value, H.dead_letter(
            "deliver", (msg.topic, msg.partition, msg.offset), exc, endpoint=self.endpoint,
            tenant=record["tenant_code"] if record else None,
            activity_key=record["activity_key"] if record else None))
        metrics.DELIVERIES.labels(self.endpoint, "dead").inc()
        metrics.DEAD_REASONS.labels(self.endpoint, type(exc).__name__).inc()
        st = metrics.status(self.endpoint)
        st.dead += 1
        st.last_error, st.last_error_class, st.last_error_at = str(exc)[:500], type(exc).__name__, time.time()

    # ------------------------------------------------------------------ batches
    async def deliver(self, messages) -> None:
        """A batch from ``activity.enriched``: deliver what is addressed to this endpoint."""
        runner = await self.runner()
        runner = await self._await_run(runner)
        items: list[Pending] = []
        for msg in messages:
            if H.addressed_to(msg.headers, self.endpoint) is False:
                continue  # not for this endpoint: skip without decoding
            record = None
            try:
                record = self.decode(msg.value)
                entry = self._entry(record)
                if entry is not None:
                    self._check_tenant(record)
                    items.append(self._pending(msg, record, entry))
            except Exception as exc:  # undecodable, or another tenant's: dead-letter, never drop
                await self._undeliverable(msg, exc, record)
        if items:
            await self._write(items, messages)
        await self.publisher.flush()
        self._after_run_batch(len(messages), self._caught_up(messages))

    async def retry(self, messages) -> None:
        """A batch from a retry tier: deliver each of this endpoint's records when it is due."""
        runner = await self.runner()
        due_now: list[Pending] = []
        for msg in messages:
            record = None
            try:
                info = H.parse_retry(msg.headers)
                if info.endpoint != self.endpoint:
                    continue  # another endpoint's retry
                record = self.decode(msg.value)
                entry = self._entry(record)
                if entry is None:
                    raise ValueError(f"retry record has no delivery entry for {self.endpoint}")
                self._check_tenant(record)
                p, due, last = pending_from_retry(Delivery.from_record(record, entry), msg.key, msg.value,
                                                  msg.headers)
            except Exception as exc:
                await self._undeliverable(msg, exc, record)
                continue
            if await runner.expire_or_keep(p, last):
                continue
            if due > self.clock.now():
                if due_now:  # what is due goes now, not after the wait
                    await self._write(due_now)
                    due_now = []
                await self.clock.sleep_until(due)
                runner = await self.runner()  # the config may have changed while it waited
                if await runner.expire_or_keep(p, last):
                    continue
            due_now.append(p)
        if due_now:
            await self._write(due_now)
        await self.publisher.flush()

    # ------------------------------------------------------------------ schedule
    async def _await_run(self, runner: DeliveryRunner) -> DeliveryRunner:
        """In interval mode, hold the batch until a run is open; real-time mode passes straight through."""
        interval = self.settings.interval_s if self.settings else None
        if not interval:
            self.run_open = False
            return runner
        now = self.clock.now()
        if self.run_open and now - self.last_batch_done > self._idle_gap():
            self._close_run()  # the run drained a while ago: this batch belongs to the next one
        if self.run_open:
            return runner
        metrics.NEXT_RUN.labels(self.endpoint).set(self.next_run)
        while self.clock.now() < self.next_run:
            await asyncio.sleep(min(self.poll_s, max(0.0, self.next_run - self.clock.now())))
            runner = await self.runner()
            interval = self.settings.interval_s
            if not interval:  # switched to real-time while waiting
                return runner
            self.next_run = min(self.next_run, self.run_started + interval) if self.run_started else self.next_run
        self.run_open, self.run_started, self.run_count = True, self.clock.now(), 0
        self._first_of_run = True
        log.info("endpoint %s: bulk run started", self.endpoint)
        return runner

    def _idle_gap(self) -> float:
        s = self.settings
        return 2 * (s.linger_ms / 1000 if s else 0.05) + 1.0

    def _caught_up(self, messages) -> bool:
        """Whether this worker has finished every record its partitions held: fetched all of them (fetch
        position at the high watermark) and delivered all it was handed. A short batch while records are
        still on their way (a partition fetched later, records queued for the agent) does not end a run."""
        for m in messages:
            key = (m.topic, m.partition)
            self._delivered[key] = max(self._delivered.get(key, -1), m.offset)
        if self.progress is None:
            return True
        try:
            progress = self.progress()
        except Exception:  # noqa: BLE001 - unknown: the idle gap closes the run
            return False
        for key, (position, read, hw) in progress.items():
            if position is None or hw is None or position < hw:
                return False
            if read is not None and read < hw and self._delivered.get(key, -1) < read:
                return False
        return True

    def _after_run_batch(self, n: int, caught_up: bool = True) -> None:
        if not self.run_open:
            return
        self.run_count += n
        self.last_batch_done = self.clock.now()
        size, _ = self.batch_settings()
        first, self._first_of_run = self._first_of_run, False
        if n < size and not first and caught_up:
            self._close_run()

    def _close_run(self) -> None:
        interval = self.settings.interval_s if self.settings else None
        duration = max(0.0, self.last_batch_done - self.run_started)
        metrics.LAST_RUN_COUNT.labels(self.endpoint).set(self.run_count)
        metrics.LAST_RUN_SECONDS.labels(self.endpoint).set(duration)
        self.next_run = self.run_started + (interval or 0)
        metrics.NEXT_RUN.labels(self.endpoint).set(self.next_run)
        log.info("endpoint %s: bulk run delivered %d record(s) in %.1fs; next run in %.0fs", self.endpoint,
                 self.run_count, duration, max(0.0, self.next_run - self.clock.now()))
        self.run_open = False


async def _quietly_stop(sink) -> None:
    if sink is None:
        return
    try:
        await sink.stop()
    except Exception as exc:  # noqa: BLE001 - stopping must not take the worker down
        log.warning("stopping a sink failed: %s: %s", type(exc).__name__, exc)
