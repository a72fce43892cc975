"""The interval schedule (``schedule: {every: 30m}``): an endpoint delivered in bulk runs.

A run takes everything that has arrived, in the provider's largest batches, then the endpoint
waits for the next run holding one batch at most (the rest stays in Kafka: the worker's stream
buffer is bounded, and offsets are committed only after delivery). A run ends once the worker has
fetched and delivered everything its partitions held (``progress``: fetch position at the high
watermark, every record handed to the agent delivered), or after an idle gap. Retry tiers are not
held back by the schedule: a retry is sent when it is due, as in real-time mode.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from . import metrics
from .runner import Clock, DeliveryRunner

log = logging.getLogger("activity_sync.sinks")

#: (topic, partition) -> (fetch position, offset of the last record handed to the agent, high watermark)
Progress = Callable[[], dict[tuple[str, int], tuple[int | None, int | None, int | None]]]


class IntervalSchedule:
    def __init__(self, endpoint: str, clock: Clock, progress: Progress | None, poll_s: float,
                 settings: Callable[[], object], batch_size: Callable[[], int],
                 runner: Callable[[], Awaitable[DeliveryRunner]]) -> None:
        self.endpoint, self.clock, self.progress, self.poll_s = endpoint, clock, progress, poll_s
        self.settings, self.batch_size, self.runner = settings, batch_size, runner
        self._delivered: dict[tuple[str, int], int] = {}  # the last offset finished, per partition
        self.next_run = 0.0
        self.run_open = False
        self.run_started = 0.0
        self.run_count = 0
        self.last_batch_done = 0.0
        self._first_of_run = False

    def _interval(self) -> float | None:
        s = self.settings()
        return s.interval_s if s else None

    async def wait_for_run(self, runner: DeliveryRunner) -> DeliveryRunner:
        """In interval mode, hold the batch until a run is open; real-time mode passes straight through."""
        if not self._interval():
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
            interval = self._interval()
            if not interval:  # switched to real-time while waiting
                return runner
            self.next_run = min(self.next_run, self.run_started + interval) if self.run_started else self.next_run
        self.run_open, self.run_started, self.run_count = True, self.clock.now(), 0
        self._first_of_run = True
        log.info("endpoint %s: bulk run started", self.endpoint)
        return runner

    def _idle_gap(self) -> float:
        s = self.settings()
        return 2 * (s.linger_ms / 1000 if s else 0.05) + 1.0

    def caught_up(self, messages) -> bool:
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

    def batch_done(self, messages) -> None:
        """A batch of ``activity.enriched`` was delivered: count it, and end the run once caught up."""
        caught_up = self.caught_up(messages)
        if not self.run_open:
            return
        self.run_count += len(messages)
        self.last_batch_done = self.clock.now()
        first, self._first_of_run = self._first_of_run, False
        if len(messages) < self.batch_size() and not first and caught_up:
            self._close_run()

    def _close_run(self) -> None:
        duration = max(0.0, self.last_batch_done - self.run_started)
        metrics.LAST_RUN_COUNT.labels(self.endpoint).set(self.run_count)
        metrics.LAST_RUN_SECONDS.labels(self.endpoint).set(duration)
        self.next_run = self.run_started + (self._interval() or 0)
        metrics.NEXT_RUN.labels(self.endpoint).set(self.next_run)
        log.info("endpoint %s: bulk run delivered %d record(s) in %.1fs; next run in %.0fs", self.endpoint,
                 self.run_count, duration, max(0.0, self.next_run - self.clock.now()))
        self.run_open = False
