"""One endpoint's config, followed: which sink and runner deliver now, or why deliveries wait.

Between batches the delivery asks :meth:`EndpointFollower.refresh` for the runner to use; it reads
the endpoint in the worker's :class:`~core.routing.Routing` (kept current from ``activity.config``):

- settings changed (URL, batch size, rate limit, credential reference …): the sink is stopped and
  started again with the new settings; a Retry-After still running and the request budget carry over;
- endpoint disabled: deliveries pause (the batch in hand and everything after it wait in Kafka,
  unacknowledged; nothing is dead-lettered) until it is enabled again;
- settings this version cannot use (refused by the provider's settings model, an unknown
  provider, a secret that cannot be read): one log line with the reason, and a pause as above;
- endpoint deleted: one log line, and ``on_deleted`` (the worker stops itself).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from core.config import Endpoint
from core.envvars import env_float
from core.routing import Routing

from . import metrics
from .contract import Sink, SinkContext
from .registry import SettingsError, parse_endpoint, sink_class
from .runner import Clock, DeliveryRunner, Outcome, Publisher

log = logging.getLogger("activity_sync.sinks")


def setup_retry_s() -> float:
    """Seconds an endpoint paused by a setup error waits before it tries again (unless its settings change)."""
    return env_float("ACTIVITY_SYNC_SETUP_RETRY_S", 300.0, 1, 86_400)


@dataclass
class Active:
    """The sink started for the endpoint's current settings, and its runner."""

    endpoint: Endpoint
    sink: Sink
    runner: DeliveryRunner


class EndpointFollower:
    def __init__(self, endpoint: str, routing: Routing, publisher: Publisher, outcome: Outcome, clock: Clock,
                 on_deleted: Callable[[], Awaitable[None] | None], poll_s: float = 0.5, holds=None,
                 share: Callable[[], float] | None = None, stopping: Callable[[], bool] | None = None) -> None:
        self.endpoint, self.routing, self.publisher, self.outcome = endpoint, routing, publisher, outcome
        self.clock, self.on_deleted, self.poll_s = clock, on_deleted, poll_s
        self.holds = holds                        # endpoint-wide Retry-After (sinks.holds.EndpointHolds)
        self.share = share                        # this worker's share of the endpoint's partitions
        self.stopping = stopping                  # a graceful stop is under way (no new request then)
        self.active: Active | None = None
        self.paused: str | None = "starting"      # why deliveries wait, or None
        self.busy: Callable[[], bool] = lambda: False  # a write under way with the active sink
        self._said: str | None = None
        self._seen = False                        # the endpoint was in the config at some point
        self._version = -1
        self._lock = asyncio.Lock()
        self.setup_hold: tuple[int, float, str] | None = None  # (config version, retry at, reason)

    @property
    def settings(self):
        """The active sink's parsed settings (None before one started)."""
        return self.active.runner.sink.ctx.settings if self.active else None

    def current(self) -> Endpoint | None:
        return self.active.endpoint if self.active else self.routing.endpoints.get(self.endpoint)

    def _say(self, message: str, level=logging.WARNING) -> None:
        if message != self._said:  # one line per state, not one per poll
            self._said = message
            log.log(level, "endpoint %s: %s", self.endpoint, message)

    async def refresh(self) -> DeliveryRunner | None:
        """Apply config changes; the runner to deliver with, or None while deliveries are paused."""
        async with self._lock:
            if self.routing.version == self._version and self.active is not None and not self.paused:
                return self.active.runner
            if self.setup_hold is not None:
                version, until, why = self.setup_hold
                if self.routing.version == version and self.clock.now() < until:
                    return self._pause(why)
                self.setup_hold = None  # the settings changed, or it is time to try again
            self._version = self.routing.version
            ep = self.routing.endpoints.get(self.endpoint)
            if ep is None:
                return await self._missing()
            self._seen = True
            if not ep.enabled:
                return self._pause("disabled: deliveries wait in Kafka until it is enabled")
            if self.active is not None and self.active.endpoint == ep:
                self._resume()
                return self.active.runner
            try:
                settings = parse_endpoint(ep)
            except SettingsError as exc:
                return self._pause(f"settings cannot be used ({exc}); deliveries wait in Kafka")
            return await self._start(ep, settings)

    async def _missing(self) -> None:
        why = self.routing.refused.get(f"endpoint:{self.endpoint}")
        if why:
            return self._pause(f"its latest activity.config record cannot be used ({why}); "
                               "deliveries wait in Kafka until it is fixed")
        if not self._seen:
            return self._pause("not in activity.config yet; waiting for it")
        self.paused = "deleted"
        if self._said != "deleted":
            self._say("deleted from activity.config: this worker stops", logging.WARNING)
            self._said = "deleted"
            await self.stop()
            res = self.on_deleted()
            if asyncio.iscoroutine(res):
                await res
        return None

    async def _start(self, ep: Endpoint, settings) -> DeliveryRunner | None:
        previous = self.active
        while self.busy():  # another agent's write is under way with this sink: let it finish
            await asyncio.sleep(0.02)
        await self.stop()
        sink = None
        try:
            sink = sink_class(ep.provider)()
            await sink.start(SinkContext(self.endpoint, settings,
                                         lambda st: metrics.HTTP.labels(self.endpoint, str(st)).inc()))
        except (SettingsError, LookupError, ValueError, OSError) as exc:
            await quietly_stop(sink)
            return self._pause(f"provider {ep.provider} cannot start ({exc}); deliveries wait in Kafka")
        runner = DeliveryRunner.for_endpoint(self.endpoint, sink, self.publisher, settings, clock=self.clock,
                                             outcome=self.outcome)
        if self.holds is not None:
            runner.hold_until, runner.on_hold = self.holds.hold_until, self.holds.publish
        runner.share, runner.stopping = self.share, self.stopping
        if previous is not None:
            runner.not_before = previous.runner.not_before  # a Retry-After outlives a settings change
            if runner.window is not None:
                runner.window.carry_over(previous.runner.window)
        self.active = Active(ep, sink, runner)
        self._resume()
        self._say(f"provider {ep.provider}, batch {runner.batch_size}, "
                  f"{'every %gs' % settings.interval_s if settings.interval_s else 'real-time'}"
                  + (" (settings changed)" if previous is not None else ""), logging.INFO)
        return runner

    async def runner(self) -> DeliveryRunner:
        """Wait until deliveries may go (config known, endpoint enabled, settings usable)."""
        while True:
            r = await self.refresh()
            if r is not None:
                return r
            await asyncio.sleep(self.poll_s)

    async def watch(self) -> None:
        """Called every second or so, between batches or not: stop the worker once its endpoint is deleted
        (an idle worker gets no batch that would tell it)."""
        if self._seen and self.endpoint not in self.routing.endpoints \
                and f"endpoint:{self.endpoint}" not in self.routing.refused:
            await self.refresh()

    async def hold_for_setup(self, exc: Exception) -> bool:
        """A request answered a setup error: pause the endpoint with the reason until its config changes
        or ``setup_retry_s()`` passes; False when a graceful stop came first."""
        retry = setup_retry_s()
        why = (f"setup error, no record can succeed until it is fixed: {exc}; deliveries wait in Kafka and "
               f"are tried again when the endpoint's settings change, or in {retry:g}s")
        if self.setup_hold is None:
            metrics.SETUP_ERRORS.labels(self.endpoint).inc()
            log.error("endpoint %s: %s", self.endpoint, why)
        self.setup_hold = (self.routing.version, self.clock.now() + retry, why)
        self._version = -1  # the next refresh looks at the hold
        self._pause(why)
        while await self.refresh() is None:
            if self.stopping is not None and self.stopping():
                return False
            await asyncio.sleep(self.poll_s)
        log.info("endpoint %s: trying again after the setup error", self.endpoint)
        return True

    def _pause(self, why: str) -> None:
        self.paused = why
        metrics.PAUSED.labels(self.endpoint).set(1)
        self._say(why)
        return None

    def _resume(self) -> None:
        if self.paused:
            self.paused = None
            metrics.PAUSED.labels(self.endpoint).set(0)

    async def stop(self) -> None:
        if self.active is not None:
            await quietly_stop(self.active.sink)
            self.active = None


async def quietly_stop(sink) -> None:
    if sink is None:
        return
    try:
        await sink.stop()
    except Exception as exc:  # noqa: BLE001 - stopping must not take the worker down
        log.warning("stopping a sink failed: %s: %s", type(exc).__name__, exc)
