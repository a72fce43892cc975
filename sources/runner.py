"""Running a polling source: its schedule, its cursor in ``source.offsets``, and producing to ``activity.raw``.

One :class:`SourceWorker` per configured source. A poll starts ``overlap_s`` before the cursor
(or at ``start_from`` when there is none), reads pages until the vendor has no more, and for each
page: maps the records to raw activities (bad records to ``activity.dead`` with their class in
``error.class``), produces them all, waits for Kafka to acknowledge every one, and only then
writes the new cursor (``acks=all``). Between polls it waits ``every``. :func:`run_pool` runs every
enabled source of the config in one process (``activity-sync source --all``, what ``make run`` uses).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time

from core import headers as H
from core.config import ConfigError, Source, source_from_dict
from core.settings import Settings
from core.topics import MAX_EVENT_TOPIC_BYTES, Topics

from . import metrics as M
from .framework import BadRecord, Cursor, PollingSource, SourceError, start_time, when
from .registry import SourceSettingsError, make_source

log = logging.getLogger("activity_sync.source")


async def read_sources(settings: Settings) -> dict[str, Source]:
    """The sources ``activity.config`` holds now (records it refuses are logged and left out)."""
    from core.configtable import read_config_topic

    out: dict[str, Source] = {}
    for key, value in await read_config_topic(settings.kafka, Topics(settings.topic_prefix).config):
        if not key.startswith("source:"):
            continue
        if value is None:
            out.pop(key.split(":", 1)[1], None)
            continue
        try:
            src = source_from_dict(json.loads(value))
        except (ValueError, ConfigError) as exc:
            log.error("activity.config record %s refused: %s", key, exc)
            continue
        out[src.name] = src
    return out


async def read_cursors(settings: Settings) -> dict[str, dict]:
    """Every source's cursor record as ``source.offsets`` holds it now (for the status page and tools)."""
    from core.configtable import read_config_topic

    out: dict[str, dict] = {}
    for key, value in await read_config_topic(settings.kafka, Topics(settings.topic_prefix).source_offsets):
        try:
            out[key] = json.loads(value) if value else None
        except ValueError:
            continue
    return {k: v for k, v in out.items() if v}


class SourceWorker:
    """One source polling on its schedule until :meth:`stop` (which lets the current page finish)."""

    def __init__(self, settings: Settings, source: Source, producer, *, poller: PollingSource | None = None,
                 once: bool = False) -> None:
        self.settings, self.source, self.producer = settings, source, producer
        self.topics = Topics(settings.topic_prefix)
        self.poller = poller or make_source(source)
        self.destination = self.poller.destination(self.topics)
        self._poll_records = 0
        self._poll_newest = None
        self._committed_at = time.monotonic()
        self.poller.http.observe = lambda status: M.REQUESTS.labels(source.name, str(status)).inc()
        self.poller.http.on_error = lambda error_class: M.ERRORS.labels(source.name, error_class).inc()
        self.cursor = Cursor()
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.polls = 0
        self.last_error: str | None = None
        self.caught_up = asyncio.Event()  # set at the end of every poll that reached the end
        self.once = once                  # one poll, then stop ("run now")

    @property
    def name(self) -> str:
        return self.source.name

    async def load_cursor(self) -> None:
        cursors = await read_cursors(self.settings)
        self.cursor = Cursor.from_record(cursors.get(self.name))
        if self.cursor.updated:
            M.CURSOR.labels(self.name).set(self.cursor.when.timestamp())
        log.info("source %s: cursor %s / %s", self.name, self.cursor.updated or "(none)", self.cursor.id or "-")

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.poller.start()
        try:
            await self.load_cursor()
            self.started.set()
            first = 0.0 if self.once else self.poller.settings.seconds_to_at()
            if first:
                log.info("source %s: first poll at %s UTC (in %.0f s; `source --once` runs now)", self.name,
                         self.poller.settings.at, first)
                try:
                    await asyncio.wait_for(self.stopping.wait(), first)
                except asyncio.TimeoutError:
                    pass
            while not self.stopping.is_set():
                began = time.time()
                try:
                    await self.poll_once()
                except SourceError as exc:
                    await self.commit()  # what was acknowledged before the failure stays behind the cursor
                    M.POLLS_FAILED.labels(self.name, exc.error_class).inc()
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("source %s: poll stopped: %s (the next poll starts where it stopped)", self.name, exc)
                except _KafkaError as exc:
                    M.ERRORS.labels(self.name, "kafka").inc()
                    M.POLLS_FAILED.labels(self.name, "kafka").inc()
                    self.last_error = f"Kafka: {exc}"
                    log.error("source %s: Kafka refused a write: %s (the page is read again)", self.name, exc)
                if self.once:
                    break
                wait = max(0.0, self.poller.settings.every - (time.time() - began))
                try:
                    await asyncio.wait_for(self.stopping.wait(), wait)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.poller.stop()

    async def poll_once(self) -> int:
        """One poll: every page from the cursor (less the overlap) to the end. Answers activities produced."""
        s = self.poller.settings
        began = time.time()
        since = self.cursor.when
        if since is None:
            since = start_time(s.start_from)
        else:
            since = since - dt.timedelta(seconds=s.overlap_s)
        produced = 0
        self.polls += 1
        self._poll_records = 0
        self._poll_newest: tuple | None = None  # an unordered source's newest position this poll
        self._committed_at = time.monotonic()
        # one page ahead: the next page is fetched while this one is mapped, produced and acknowledged
        self.poller.run = f"{self.name}:{int(began)}"
        pages = self.poller.pages(since).__aiter__()
        ahead = asyncio.ensure_future(pages.__anext__())
        try:
            while ahead is not None:
                try:
                    page = await ahead
                except StopAsyncIteration:
                    break
                ahead = None if page.last else asyncio.ensure_future(pages.__anext__())
                produced += await self.take(page.records)
                if self.stopping.is_set() and ahead is not None:
                    log.info("source %s: stopping after the page in hand (cursor %s)", self.name,
                             self.cursor.updated)
                    await self.commit()
                    return produced
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()
                try:
                    await ahead
                except (asyncio.CancelledError, StopAsyncIteration, Exception):  # noqa: BLE001 - abandoned
                    pass
            await pages.aclose()
        if self._poll_newest is not None:  # an unordered source's cursor moves once the poll is through
            self.cursor.advance(*self._poll_newest)
        self.cursor.prune(s.overlap_s)
        self.cursor.caught_up_at = began
        await self.commit()
        report = self.poller.poll_report(self.poller.run, self._poll_records, produced)
        if report is not None:
            topic, record = report
            await self.producer.send_and_wait(getattr(self.topics, topic), value=json.dumps(record).encode(),
                                              key=self.name.encode())
        M.LAST_SUCCESS.labels(self.name).set(time.time())
        M.LAG.labels(self.name).set(0)
        self.last_error = None
        self.caught_up.set()
        return produced

    async def take(self, records: list[dict]) -> int:
        """One page: the records not yet sent become activities, produced and acknowledged; then the cursor."""
        name = self.name
        M.RECORDS.labels(name).inc(len(records))
        fresh = []
        for r in records:
            pos = self.poller.position(r)
            if pos is None or not self.cursor.seen(self.poller.version(r, pos), pos[1]):
                fresh.append(r)
        results = await self.poller.activities(fresh) if fresh else []
        futures = []
        dead = 0
        skipped = 0
        for r, result in zip(fresh, results):
            if result is None:  # a record the source does not take
                skipped += 1
                continue
            if isinstance(result, BadRecord):
                futures.append(await self.dead_letter(r, result))
                dead += 1
                continue
            value = json.dumps(result, ensure_ascii=False).encode()
            futures.append(await self.producer.send(self.destination, value=value, key=self.poller.key_of(result)))
        if futures:
            await asyncio.gather(*futures)  # every one acknowledged before the cursor moves
        ordered = self.poller.ordered
        for r in records:
            pos = self.poller.position(r)
            if pos is None:
                continue
            self.cursor.advance(*pos, move=ordered, version=self.poller.version(r, pos))
            if not ordered and (self._poll_newest is None or (when(pos[0]), pos[1]) >
                                (when(self._poll_newest[0]), self._poll_newest[1])):
                self._poll_newest = pos
        if ordered:
            self.cursor.prune(self.poller.settings.overlap_s)
        self.cursor.records += len(records)
        self._poll_records += len(records)
        produced = len(fresh) - dead - skipped
        self.cursor.activities += produced
        M.ACTIVITIES.labels(name).inc(produced)
        interval = self.poller.settings.commit_interval_s
        if records and time.monotonic() - self._committed_at >= interval:
            await self.commit()
            self._committed_at = time.monotonic()
        if records and self.cursor.when is not None:
            at = self.cursor.when.timestamp()
            M.CURSOR.labels(name).set(at)
            M.LAG.labels(name).set(max(0.0, time.time() - at))
        return produced

    async def dead_letter(self, record: dict, error: BadRecord):
        M.DEAD.labels(self.name, error.reason).inc()
        M.ERRORS.labels(self.name, "bad_record").inc()
        hdrs = H.dead_letter("source", (f"source:{self.name}", -1, -1), error, tenant=self.source.tenant)
        hdrs = [(k, error.reason.encode() if k == H.ERROR_CLASS else v) for k, v in hdrs]
        log.warning("source %s: record %s dead-lettered: %s: %s", self.name, record.get("id"), error.reason, error)
        return await self.producer.send(self.topics.dead, value=json.dumps(record).encode(), headers=hdrs)

    async def commit(self) -> None:
        value = json.dumps({"source": self.name, "kind": self.source.kind, "tenant": self.source.tenant,
                            "at": time.time(), **self.cursor.record()}).encode()
        await self.producer.send_and_wait(self.topics.source_offsets, value=value, key=self.name.encode())

    def status(self) -> dict:
        c = self.cursor
        return {"source": self.name, "kind": self.source.kind, "tenant": self.source.tenant,
                "cursor": c.updated, "cursor_id": c.id, "records": c.records, "activities": c.activities,
                "polls": self.polls, "last_error": self.last_error}


try:  # the errors a producer raises when Kafka refuses a write
    from aiokafka.errors import KafkaError as _KafkaError
except ImportError:  # pragma: no cover
    _KafkaError = OSError


async def make_producer(settings: Settings):
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, linger_ms=5,
                                max_request_size=MAX_EVENT_TOPIC_BYTES, **settings.kafka.aiokafka_kwargs())
    await producer.start()
    return producer


async def run_pool(settings: Settings, names: list[str] | None = None, stop: asyncio.Event | None = None,
                   on_ready=None, once: bool = False) -> dict[str, SourceWorker]:
    """Every enabled source ``activity.config`` holds (or those ``names``), each a :class:`SourceWorker`,
    in this process, until ``stop`` is set. A source whose settings are refused is logged and left out."""
    stop = stop or asyncio.Event()
    sources = await read_sources(settings)
    if names:
        missing = [n for n in names if n not in sources]
        if missing:
            raise LookupError(f"activity.config holds no source {', '.join(missing)} "
                              f"(it holds: {', '.join(sorted(sources)) or 'none'}; load-config publishes them)")
        sources = {n: sources[n] for n in names}
    producer = await make_producer(settings)
    workers: dict[str, SourceWorker] = {}
    try:
        for src in sources.values():
            if not src.enabled:
                log.info("source %s is disabled", src.name)
                continue
            try:
                workers[src.name] = SourceWorker(settings, src, producer, once=once)
            except SourceSettingsError as exc:
                log.error("source %s refused: %s", src.name, exc)
        tasks = [asyncio.create_task(w.run(), name=f"source-{n}") for n, w in workers.items()]
        if on_ready is not None:
            await asyncio.gather(*(w.started.wait() for w in workers.values()))
            on_ready(workers)
        if not tasks:
            log.warning("no enabled source to run")
        waiter = asyncio.create_task(stop.wait())
        pending = set(tasks)
        while pending and not stop.is_set():
            done, _ = await asyncio.wait(pending | {waiter}, return_when=asyncio.FIRST_COMPLETED)
            for t in done - {waiter}:
                pending.discard(t)
                if t.exception() is not None:
                    log.error("source %s stopped: %r", t.get_name(), t.exception())
        for w in workers.values():
            w.stop()
        await asyncio.gather(*pending, return_exceptions=True)
        waiter.cancel()
    finally:
        await producer.stop()
    return workers
