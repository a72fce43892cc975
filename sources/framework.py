"""The polling-source framework: what every source that reads a vendor's API shares.

A source is a package in ``sources/`` (``sources/alida``): its settings model (extends
:class:`SourceSettings`), its client, its mapping of vendor records to raw activities (a
:class:`PollingSource` subclass named ``SOURCE`` in ``source.py``), an ``example.yaml``, and its fake.
The framework gives it:

- :class:`SourceHttp`: one ``aiohttp`` session with the request timeout, at most
  ``concurrent_requests`` requests in flight, ``Retry-After`` on 429, exponential backoff on 5xx,
  timeouts and lost connections (``max_retries`` per request), and one token refresh after a 401
  (the OAuth2 client-credentials cache is :class:`core.http.TokenCache`);
- :class:`Cursor`: the position in the vendor's stream (``lastUpdateDate`` plus the last id as the
  tie-breaker, and the ids seen inside the overlap window), kept by :mod:`sources.runner` in the
  compacted ``source.offsets`` topic;
- the error classes every source counts its failures by (:data:`ERROR_CLASSES`).

Delivery is at least once: a page's activities are all acknowledged by Kafka before the cursor
moves past them, so a worker killed mid-page reads that page again and re-sends what it had sent
(the same ``ActivityKey``: sinks' idempotent upserts and ``ActivityKey`` dedupe make them one).
A graceful stop finishes the page it is on, moves the cursor, and repeats nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, field_validator

from core.config import Source
from core.envelope import parse_date
from core.http import HttpResponse, TokenCache, TokenRefused, parse_retry_after, without_query
from core.settingsmodel import SecretSettings, parse_duration

log = logging.getLogger("activity_sync.source")

#: the classes ``activity_sync_source_errors_total`` counts by (``error`` label)
ERROR_CLASSES = ("throttled", "server", "timeout", "connection", "auth", "refused", "bad_record", "kafka")


class SourceError(Exception):
    """A request that failed; ``error_class`` is one of :data:`ERROR_CLASSES`."""

    error_class = "server"
    retriable = True

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Throttled(SourceError):
    error_class = "throttled"


class ServerError(SourceError):
    error_class = "server"


class TimedOut(SourceError):
    error_class = "timeout"


class ConnectionLost(SourceError):
    error_class = "connection"


class AuthRefused(SourceError):
    """401 again after a fresh token, or the token endpoint refused the credentials."""

    error_class = "auth"
    retriable = False


class Refused(SourceError):
    """A 4xx other than 401/408/429: the request itself is wrong (``status`` says which)."""

    error_class = "refused"
    retriable = False


class BadRecord(ValueError):
    """A vendor record that cannot become a raw activity; ``reason`` is the dead letter's class
    (``x-error-class`` header), the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def classify(resp: HttpResponse) -> SourceError | None:
    """None for 2xx; else the error the status means."""
    s = resp.status
    if 200 <= s < 300:
        return None
    text = f"HTTP {s}: {resp.text[:300]}" if resp.text else f"HTTP {s}"
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if s == 429:
        return Throttled(text, s, retry_after)
    if s in (408, 425) or s >= 500:
        return ServerError(text, s, retry_after)
    if s == 401:
        return AuthRefused(text, s)
    return Refused(text, s)


# ----------------------------------------------------------------------------- settings

class SourceSettings(SecretSettings):
    """Settings every polling source has, whatever its vendor."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    #: the largest page the vendor's API serves (a class constant, not a setting)
    max_page_size: ClassVar[int] = 1000

    every: float = Field(60.0, description="time between polls (30s, 5m, 1h): each poll reads until caught up")
    page_size: int = Field(100, ge=1, description="records per page (at most the vendor's limit)")
    overlap_s: float = Field(60.0, ge=0, le=7 * 86_400,
                             description="each poll re-reads this many seconds before the cursor, for records "
                                         "the vendor commits late; what was already sent is not sent again")
    start_from: str = Field("7d", description="where a source without a cursor starts: a duration back from now "
                                              "(7d, 12h) or an ISO 8601 date-time")
    concurrent_requests: int = Field(4, ge=1, le=32, description="requests in flight at once (look-ups of a page)")
    timeout_s: float = Field(30.0, gt=0, le=600, description="seconds one request may take before it is retried")
    max_retries: int = Field(6, ge=0, le=30, description="retries of one request (429, 5xx, timeouts) before the "
                                                        "poll gives up until the next one")
    backoff_s: float = Field(0.5, gt=0, le=60, description="first backoff after a 5xx or timeout (doubles, at most 30 s)")
    at: str | None = Field(None, description="HH:MM (UTC): the first poll waits for this time of day (with every: "
                                             "24h, a nightly run); `source --once` runs now")
    commit_interval_s: float = Field(0.0, ge=0, le=300, description="write the cursor at most this often within a "
                                                                  "poll (0: after every page); a killed worker "
                                                                  "sends again at most this long's pages")

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v):
        return parse_duration(v)

    @field_validator("page_size")
    @classmethod
    def _page(cls, v):
        if v > cls.max_page_size:
            raise ValueError(f"{v} is over this vendor's page limit of {cls.max_page_size}")
        return v

    @field_validator("start_from")
    @classmethod
    def _start(cls, v):
        start_time(v)
        return v

    @field_validator("at")
    @classmethod
    def _at(cls, v):
        if v is not None and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("a time of day HH:MM (UTC), e.g. 03:00")
        return v

    def seconds_to_at(self, now: dt.datetime | None = None) -> float:
        """Seconds until the next ``at`` (0 without one)."""
        if self.at is None:
            return 0.0
        now = now or dt.datetime.now(dt.timezone.utc)
        h, m = map(int, self.at.split(":"))
        nxt = now.replace(hour=h, minute=m, second=0, microsecond=0)
        if nxt <= now:
            nxt += dt.timedelta(days=1)
        return (nxt - now).total_seconds()


def start_time(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """``start_from`` as a UTC date-time: a duration back from now, or an ISO 8601 date-time."""
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        return now - dt.timedelta(seconds=parse_duration(value, most=3650 * 86400))
    except ValueError:
        pass
    try:
        return parse_date(value, "start_from")
    except ValueError:
        raise ValueError(f"{value!r}: a duration back from now (7d, 12h) or an ISO 8601 date-time "
                         f"such as 2026-01-01T00:00:00Z") from None


# ----------------------------------------------------------------------------- cursor

@functools.lru_cache(maxsize=131_072)
def when(text: str, field: str = "lastUpdateDate") -> dt.datetime:
    """A vendor's date-time parsed (cached: a record's update time is read several times a page)."""
    return parse_date(text, field)


@dataclass
class Cursor:
    """Where a source is: the last record's update time (as the vendor wrote it, and parsed) and id,
    and the ids sent whose update time is inside the overlap window (so a re-read sends none twice)."""

    updated: str | None = None
    id: str | None = None
    recent: dict[str, str] = field(default_factory=dict)  # id -> updated, inside the overlap window
    records: int = 0        # records read, all time
    activities: int = 0     # activities produced, all time
    caught_up_at: float | None = None  # epoch seconds: the start of the last poll that reached the end
    MAX_RECENT: ClassVar[int] = 50_000

    @property
    def when(self) -> dt.datetime | None:
        return when(self.updated, "cursor") if self.updated else None

    def seen(self, version: str, rid: str) -> bool:
        """Whether this very version of a record (its id at this update time) was sent already. Records
        inside the overlap window are remembered; a re-read sends none of them again, a record updated
        since (a new update time) is sent again, and a late one (never sent) is taken."""
        return self.recent.get(rid) == version

    def advance(self, updated: str, rid: str, move: bool = True, version: str | None = None) -> None:
        """A record sent: remembered (by ``version``, its update time unless the source says more),
        and (``move``) the cursor past it if it is the newest yet."""
        if move and (self.updated is None or (when(updated), rid) > (self.when, self.id or "")):
            self.updated, self.id = updated, rid
        self.recent[rid] = version or updated

    def prune(self, overlap_s: float) -> None:
        if self.updated is None:
            return
        floor = self.when - dt.timedelta(seconds=overlap_s)
        self.recent = {k: v for k, v in self.recent.items() if when(v.split("#", 1)[0]) >= floor}
        if len(self.recent) > self.MAX_RECENT:  # bounded: the newest are kept
            newest = sorted(self.recent.items(), key=lambda kv: when(kv[1].split("#", 1)[0]))
            self.recent = dict(newest[-self.MAX_RECENT:])

    def record(self) -> dict:
        return {"updated": self.updated, "id": self.id, "recent": self.recent, "records": self.records,
                "activities": self.activities, "caught_up_at": self.caught_up_at}

    @classmethod
    def from_record(cls, d: dict | None) -> "Cursor":
        if not isinstance(d, dict):
            return cls()
        return cls(d.get("updated"), d.get("id"), dict(d.get("recent") or {}), int(d.get("records") or 0),
                   int(d.get("activities") or 0), d.get("caught_up_at"))


# ----------------------------------------------------------------------------- HTTP

class SourceHttp:
    """A source's HTTP client: session, timeouts, bounded concurrency, retries, one refresh after a 401."""

    def __init__(self, settings: SourceSettings, observe=None, ssl=True) -> None:
        self.settings = settings
        self.observe = observe or (lambda status: None)
        self.sem = asyncio.Semaphore(settings.concurrent_requests)
        self.session = None
        self.tokens: TokenCache | None = None
        self.ssl = ssl
        self.retries = 0
        self.on_error = lambda error_class: None  # every failed request, by ERROR_CLASSES (the runner counts them)

    async def start(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
                                             connector=aiohttp.TCPConnector(ssl=self.ssl))

    async def stop(self) -> None:
        if self.session is not None and not self.session.closed:
            await self.session.close()

    async def once(self, method: str, url: str, **kwargs) -> HttpResponse:
        import aiohttp

        async with self.sem:
            try:
                async with self.session.request(method, url, **kwargs) as r:
                    resp = HttpResponse(r.status, r.headers, await r.text())
            except asyncio.TimeoutError:
                self.observe("timeout")
                raise TimedOut(f"no answer within {self.settings.timeout_s:g}s: {method} {without_query(url)}")
            except (aiohttp.ClientError, OSError) as exc:
                self.observe("error")
                raise ConnectionLost(f"{type(exc).__name__}: {without_query(str(exc))}") from None
        self.observe(resp.status)
        return resp

    async def request(self, method: str, url: str, *, headers=None, auth=True, **kwargs) -> HttpResponse:
        """One request, retried on 429 (after its Retry-After), 5xx, timeouts and lost connections, with one
        new token after a 401; raises the :class:`SourceError` of the last answer otherwise. A 4xx other
        than those is returned, not raised, when the caller expects it (``expect`` statuses)."""
        expect = kwargs.pop("expect", ())
        delay = self.settings.backoff_s
        refreshed = False
        attempt = 0
        while True:
            token = None
            h = dict(headers or {})
            if auth and self.tokens is not None:
                try:
                    token = await self.tokens.get()
                except TokenRefused as exc:
                    raise self._token_error(exc) from None
                if token is not None:
                    h["Authorization"] = f"Bearer {token.value}"
            try:
                resp = await self.once(method, url, headers=h, **kwargs)
                error = None if resp.status in expect else classify(resp)
            except SourceError as exc:
                error, resp = exc, None
            if error is None:
                return resp
            self.on_error(error.error_class)
            if isinstance(error, AuthRefused) and auth and self.tokens is not None and not refreshed:
                refreshed = True  # one new token, then the request once more
                try:
                    await self.tokens.refresh(token)
                except TokenRefused as exc:
                    raise self._token_error(exc) from None
                continue
            if not error.retriable or attempt >= self.settings.max_retries:
                raise error
            attempt += 1
            self.retries += 1
            wait = error.retry_after if error.retry_after is not None else delay * (0.5 + random.random())
            if error.retry_after is None:
                delay = min(30.0, delay * 2)
            log.warning("%s %s: %s; retry %d/%d in %.1fs", method, without_query(url), error, attempt,
                        self.settings.max_retries, wait)
            await asyncio.sleep(wait)

    @staticmethod
    def _token_error(exc: TokenRefused) -> SourceError:
        if exc.status == 429:
            return Throttled(f"token endpoint: {exc}", 429, exc.retry_after)
        if exc.status >= 500 or exc.status in (0, 408):
            return ServerError(f"token endpoint: {exc}", exc.status, exc.retry_after)
        return AuthRefused(f"token endpoint: {exc}", exc.status)

    async def get_json(self, url: str, **kwargs) -> Any:
        resp = await self.request("GET", url, **kwargs)
        body = resp.json(None)
        if body is None and resp.status < 300:
            raise ServerError(f"GET {without_query(url)}: HTTP {resp.status} with a body that is not JSON",
                              resp.status)
        return body if resp.status < 300 else None


# ----------------------------------------------------------------------------- the source contract

@dataclass
class Page:
    """One page of vendor records, in the vendor's order (ascending update time, then id)."""

    records: list[dict]
    last: bool  # no more pages in this poll


class PollingSource:
    """A vendor's source: subclasses set ``kind`` and ``Settings`` and implement the methods below."""

    kind: ClassVar[str] = ""
    Settings: ClassVar[type[SourceSettings]] = SourceSettings
    #: whether pages come in update order (the cursor then moves page by page); a vendor whose
    #: collection is in another order moves it once the poll is through (its pages are remembered
    #: in the cursor's ``recent`` meanwhile, so a restart re-sends none of them)
    ordered: ClassVar[bool] = True

    def __init__(self, source: Source, settings: SourceSettings) -> None:
        self.source, self.settings = source, settings
        self.http = SourceHttp(settings)
        self.run = ""  # the poll under way (``<source>:<epoch>``), set by the runner

    async def start(self) -> None:
        await self.http.start()

    async def stop(self) -> None:
        await self.http.stop()

    def pages(self, since: dt.datetime):
        """An async iterator of :class:`Page` holding every record updated at or after ``since``."""
        raise NotImplementedError

    def position(self, record: dict) -> tuple[str, str] | None:
        """A record's ``(update time as written, id)``: where the cursor goes after it (None: a record
        without them, which :meth:`activities` dead-letters)."""
        raise NotImplementedError

    def version(self, record: dict, position: tuple[str, str]) -> str:
        """What tells two versions of a record apart: its update time; a vendor whose update times are
        coarse (whole seconds) adds ``#`` and a digest of what it syncs, so a second change within the
        same second is not taken for the first."""
        return position[0]

    async def activities(self, records: list[dict]) -> list[dict | BadRecord | None]:
        """Each record's raw activity (a dict with the envelope), the :class:`BadRecord` it is, or None
        for a record the source does not take (a type it is not set to take)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What the status page shows about the vendor side (no secrets)."""
        return {}

    def destination(self, topics) -> str:
        """The topic this source's output goes to (``activity.raw``: raw activities, the default)."""
        return topics.raw

    def key_of(self, item: dict) -> bytes:
        """An output record's Kafka key (a raw activity's: its ActivityKey)."""
        return str(item["ActivityKey"]).encode()

    def poll_report(self, run: str, records: int, produced: int) -> tuple[str, dict] | None:
        """What to write once a poll has reached the end: ``(topic, record)`` (``topic`` a
        :class:`core.topics.Topics` attribute, e.g. ``"anmc_report"``), or None (nothing)."""
        return None
