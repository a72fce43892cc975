"""One endpoint's delivery: everything a sink worker's agents do, as a class testable without Kafka.

The agents hand it batches of messages (anything with ``key``, ``value``, ``headers``, ``topic``,
``partition``, ``offset``): :meth:`EndpointDelivery.deliver` for ``activity.enriched``,
:meth:`EndpointDelivery.retry` for a retry tier. It decodes what is addressed to its endpoint
(the ``endpoints`` header lets it skip the rest undecoded), hands deliveries to the
:class:`~sinks.runner.DeliveryRunner`, and returns once every retry and dead letter it produced
is acknowledged, so the agent may then acknowledge the batch.

It is made of three parts a reader can take one at a time:

- :class:`~sinks.follow.EndpointFollower`: the endpoint's config followed, the sink started and
  restarted with it, and why deliveries wait (disabled, unusable settings, deleted);
- :class:`~sinks.schedule.IntervalSchedule`: bulk runs for ``schedule: {every: 30m}``;
- this class: decoding and the tenant check, writes (each request's records committed once done),
  and dead letters, counted through the same :class:`~sinks.metrics.MetricsOutcome` as the runner's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from core import headers as H
from core.envvars import env_float
from core.routing import Routing

from . import metrics
from .contract import DEFAULT_BATCH_SIZE, DEFAULT_LINGER_MS, Delivery, SetupError
from .follow import EndpointFollower
from .registry import SettingsError, parse_endpoint
from .runner import Clock, DeliveryRunner, Pending, Publisher, pending_from_retry
from .schedule import IntervalSchedule, Progress

log = logging.getLogger("activity_sync.sinks")


#: retry records due within this long of each other go in one request: a backlog drains in full
#: requests, not in one request per record that came due a moment after the last
RETRY_COALESCE_S = 1.0


def drain_s() -> float:
    """The least a stop or a rebalance waits for the write under way (``ACTIVITY_SYNC_DRAIN_S``)."""
    return env_float("ACTIVITY_SYNC_DRAIN_S", 20.0, 0, 600)


class TenantMismatch(Exception):
    """A record addressed to this endpoint belongs to a tenant the endpoint does not serve.

    Routing never addresses one (the stream stage filters by tenant); this is the sink's own check
    that one organisation's activity is never written into another's CRM, whatever went wrong
    upstream (a record written by another tool, an endpoint's tenant changed while records waited)."""


class EndpointDelivery:
    def __init__(self, endpoint: str, routing: Routing, publisher: Publisher, decode: Callable[[bytes], dict],
                 clock: Clock | None = None, on_deleted: Callable[[], Awaitable[None] | None] = lambda: None,
                 poll_s: float = 0.5, ack: Callable[[list], Awaitable[None]] | None = None,
                 holds=None, share: Callable[[], float] | None = None, progress: Progress | None = None) -> None:
        self.endpoint = endpoint
        self.routing = routing
        self.publisher = publisher
        self.decode = decode
        self.clock = clock or Clock()
        self.ack = ack                            # acknowledge and commit consumed messages (the worker's)
        self.outcome = metrics.MetricsOutcome(endpoint)
        self.config = EndpointFollower(endpoint, routing, publisher, self.outcome, self.clock, on_deleted, poll_s,
                                       holds, share, stopping=lambda: self.stopping)
        self.config.busy = lambda: self._inflight > 0
        self.schedule = IntervalSchedule(endpoint, self.clock, progress, poll_s, lambda: self.config.settings,
                                         lambda: self.batch_settings()[0], self.runner)
        self.stopping = False                     # a graceful stop: no new batch is started
        self.writes = 0                           # writes started (the idle memory trim watches it)
        self._inflight = 0                        # writes under way (the main agent and the retry agents share a sink)
        # (topic, partition) -> the highest offset this process has finished: a record read again after a
        # rebalance (the group re-read from its committed offsets while a request was under way) is skipped
        self._finished: dict[tuple[str, int], int] = {}

    # ------------------------------------------------------------------ config (EndpointFollower)
    @property
    def active(self):
        return self.config.active

    @property
    def paused(self) -> str | None:
        return self.config.paused

    @property
    def settings(self):
        return self.config.settings

    async def runner(self) -> DeliveryRunner:
        return await self.config.runner()

    async def watch(self) -> None:
        await self.config.watch()

    async def stop(self) -> None:
        await self.config.stop()

    def batch_settings(self) -> tuple[int, float]:
        """How many to take at once and how long to wait for them, for the agents."""
        ep = self.routing.endpoints.get(self.endpoint)
        try:
            s = parse_endpoint(ep) if ep is not None else None
        except SettingsError:
            s = None
        if s is None:
            return DEFAULT_BATCH_SIZE, DEFAULT_LINGER_MS / 1000
        if getattr(s, "concurrent_requests", 1) > 1 and not getattr(s, "interval_s", None):
            # takes delivered side by side: one request each, so a crash repeats at most the
            # requests in flight (and those finished after the oldest of them, not yet committed)
            return s.batch_size, s.linger_ms / 1000
        # Take up to the provider's limit; the runner cuts requests to batch_size (so a changed batch_size
        # applies at once), and an interval run goes in the largest batches the API takes.
        return s.max_batch, s.linger_ms / 1000

    def takes_in_flight(self) -> int:
        """How many takes the agent may deliver at once: the endpoint's ``concurrent_requests`` for a
        real-time endpoint (an interval one delivers its run in order, one take after another)."""
        active = self.config.active
        if active is None or getattr(self.config.settings, "interval_s", None):
            return 1
        return max(1, active.runner.concurrency)

    # ------------------------------------------------------------------ writes
    async def _write(self, items: list[Pending], messages=()) -> bool:
        """Hand ``items`` to the current runner; a settings change waits until this write is done. Each
        request's records are committed as soon as they are done (``messages``: those they were read from),
        so a crash sends again at most the request that was under way. False: a graceful stop came first,
        and what was not sent stays unacknowledged."""
        while True:
            runner = await self.runner()
            if self.active is not None and self.active.runner is runner:
                break  # nothing awaited between this check and the count below
        by_origin = {(m.topic, m.partition, m.offset): m for m in messages}

        delivered: set = set()

        async def chunk_done(chunk: list[Pending]) -> None:
            delivered.update(p.origin for p in chunk)
            self._finish(p.origin for p in chunk if p.origin in by_origin)
            if self.ack is not None and by_origin:
                await self.publisher.flush()  # its retry and dead-letter records are written first
                await self.ack([by_origin[p.origin] for p in chunk if p.origin in by_origin])

        self._inflight += 1
        self.writes += 1
        try:
            while True:
                try:
                    return await runner.deliver(items, chunk_done)
                except SetupError as exc:  # nothing of this write is dead-lettered: it waits, then goes again
                    items = [p for p in items if p.origin not in delivered]
                    self._inflight -= 1  # not writing while it waits: a settings change may restart the sink
                    try:
                        if not await self.config.hold_for_setup(exc):
                            return False
                        runner = await self.runner()
                    finally:
                        self._inflight += 1
        finally:
            self._inflight -= 1

    def _finish(self, origins) -> None:
        for topic, partition, offset in origins:
            key = (topic, partition)
            if offset > self._finished.get(key, -1):
                self._finished[key] = offset

    def _unfinished(self, messages) -> list:
        """The messages this process has not finished yet (the rest were read again after a rebalance)."""
        done = self._finished
        if not done:
            return list(messages)
        fresh = [m for m in messages if m.offset > done.get((m.topic, m.partition), -1)]
        if len(fresh) < len(messages):
            log.info("endpoint %s: %d record(s) read again after a rebalance were delivered already: skipped",
                     self.endpoint, len(messages) - len(fresh))
        return fresh

    def drain_budget(self) -> float:
        """How long a stop or a rebalance waits for the write under way: ``ACTIVITY_SYNC_DRAIN_S``, or
        longer when one request may take longer (the endpoint's ``timeout_s``: the request in flight
        gets its whole timeout, and is committed, rather than being abandoned and sent again)."""
        active = self.config.active
        longest = active.runner.sink.write_timeout_s(active.runner.batch_size) if active else 0.0
        return max(drain_s(), longest + 1.0)

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` s, by default :meth:`drain_budget`) for the writes under way to
        finish; True if there were any and they finished."""
        timeout = self.drain_budget() if timeout is None else timeout
        if not self._inflight:
            return False
        deadline = asyncio.get_running_loop().time() + timeout
        while self._inflight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # the agent acknowledges the batch right after the write returns
        return not self._inflight

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
        ep = self.config.current()
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
        self.outcome.failed(exc)
        self.outcome.dead(None, type(exc).__name__)

    # ------------------------------------------------------------------ batches
    async def deliver(self, messages) -> bool:
        """A batch from ``activity.enriched``: deliver what is addressed to this endpoint. False: a
        graceful stop came first (what was not sent stays unacknowledged)."""
        await self.schedule.wait_for_run(await self.runner())  # real-time: at once; interval: when a run opens
        todo = self._unfinished(messages)
        items: list[Pending] = []
        for msg in todo:
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
        if items and not await self._write(items, todo):
            return False
        await self.publisher.flush()
        self._finish((m.topic, m.partition, m.offset) for m in messages)
        self.schedule.batch_done(messages)
        return True

    async def retry(self, messages) -> bool:
        """A batch from a retry tier: deliver each of this endpoint's records when it is due, those due
        within :data:`RETRY_COALESCE_S` of each other in one request. False: a graceful stop came first."""
        runner = await self.runner()
        due_now: list[Pending] = []
        for msg in self._unfinished(messages):
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
            wait = due - self.clock.now()
            if wait > 0:
                if due_now and (wait > RETRY_COALESCE_S or len(due_now) >= runner.batch_size):
                    if not await self._write(due_now):  # what is due goes now, not after a long wait
                        return False
                    due_now = []
                await self.clock.sleep_until(due)
                runner = await self.runner()  # the config may have changed while it waited
                if await runner.expire_or_keep(p, last):
                    continue
            due_now.append(p)
        if due_now and not await self._write(due_now):
            return False
        await self.publisher.flush()
        self._finish((m.topic, m.partition, m.offset) for m in messages)
        return True
