"""The Kafka header formats of retry records and dead letters, the retry tiers and the two-week window.

Defined once, here, for everyone who writes or reads them: the stream stage (dead letters of
malformed input), the sink runner (retries, dead letters of deliveries), replay (dead letters back
into a retry tier) and the tools that show them. Names follow Kafka Connect's dead-letter
convention (``__connect.errors.topic`` ...) under our own ``error.`` and ``retry.`` prefixes.

It lives in ``streams/`` because both stages share it and ``streams/`` never imports ``sinks/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

TWO_WEEKS_S = 14 * 24 * 3600
TWO_WEEKS_MS = TWO_WEEKS_S * 1000  # 1209600000: the write-back queue's two weeks

# Retry tiers by delay: a record due in a minute never waits behind one due in six hours.
RETRY_TIERS: tuple[tuple[str, float], ...] = (("1m", 60), ("10m", 600), ("1h", 3600), ("6h", 21600))
FIRST_TIER = RETRY_TIERS[0][0]

MAX_TEXT = 2000  # error messages are cut to this many characters

# Dead letters (both stages)
ERROR_STAGE = "error.stage"            # enrich | deliver
ERROR_TOPIC = "error.topic"
ERROR_PARTITION = "error.partition"
ERROR_OFFSET = "error.offset"
ERROR_CLASS = "error.class"
ERROR_MESSAGE = "error.message"
ERROR_STATUS = "error.status"          # the CRM's HTTP status, if any
ERROR_ATTEMPTS = "error.attempts"
ERROR_FIRST_FAILURE = "error.first_failure_ms"
ERROR_TIMESTAMP = "error.timestamp"    # when it was dead-lettered (ms)
ERROR_ENDPOINT = "error.endpoint"
ERROR_TENANT = "error.tenant"

# Retry records
RETRY_ENDPOINT = "retry.endpoint"
RETRY_ATTEMPTS = "retry.attempts"
RETRY_FIRST_FAILURE = "retry.first_failure_ms"
RETRY_DUE = "retry.due_ms"
RETRY_TIER = "retry.tier"
RETRY_LAST_ERROR_CLASS = "retry.last_error_class"
RETRY_LAST_ERROR = "retry.last_error"
RETRY_TENANT = "retry.tenant"

# Both
ACTIVITY_KEY = "activity_key"
REPLAY_COUNT = "replay.count"
REPLAY_FROM = "replay.from"
ORIGIN_TOPIC = "origin.topic"
ORIGIN_PARTITION = "origin.partition"
ORIGIN_OFFSET = "origin.offset"

# On activity.enriched: the endpoints a record is addressed to, so a sink skips others' undecoded.
ENDPOINTS = "endpoints"
TENANT = "tenant"

Headers = list[tuple[str, bytes]]


def _b(value) -> bytes:
    return str(value).encode("utf-8", "replace")


def ms(t: float) -> bytes:
    return str(int(t * 1000)).encode()


def text(headers) -> dict[str, str]:
    """Kafka headers (pairs of name and bytes) as a dict of text; a repeated name keeps its last value."""
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (headers or [])}


def dead_letter(stage: str, origin: tuple[str, int, int], error: BaseException, *, attempts: int = 1,
                first_failure: float | None = None, endpoint: str | None = None, tenant: str | None = None,
                activity_key: str | None = None, replay_count: int = 0, now: float | None = None) -> Headers:
    """Headers of a dead letter: where it came from, why, how often it was tried."""
    now = time.time() if now is None else now
    h: Headers = [
        (ERROR_STAGE, stage.encode()),
        (ERROR_TOPIC, _b(origin[0])),
        (ERROR_PARTITION, _b(origin[1])),
        (ERROR_OFFSET, _b(origin[2])),
        (ERROR_CLASS, type(error).__name__.encode()),
        (ERROR_MESSAGE, str(error)[:MAX_TEXT].encode("utf-8", "replace")),
        (ERROR_ATTEMPTS, _b(attempts)),
        (ERROR_TIMESTAMP, ms(now)),
    ]
    status = getattr(error, "status", None)
    if stage == "deliver":
        h += [(ERROR_STATUS, _b(status or "")), (ERROR_FIRST_FAILURE, ms(first_failure if first_failure else now)),
              (REPLAY_COUNT, _b(replay_count))]
    if endpoint is not None:
        h.append((ERROR_ENDPOINT, endpoint.encode()))
    if tenant is not None:
        h.append((ERROR_TENANT, tenant.encode("utf-8", "replace")))
    if activity_key is not None:
        h.append((ACTIVITY_KEY, activity_key.encode("utf-8", "replace")))
    return h


def retry(endpoint: str, tenant: str | None, activity_key: str, origin: tuple[str, int, int], *, attempts: int,
          first_failure: float, due: float, tier: str, error_class: str, error: str, replay_count: int = 0,
          replay_from: str | None = None) -> Headers:
    """Headers of a retry record: whose it is, how often it failed, since when, and when it is due."""
    h: Headers = [
        (RETRY_ENDPOINT, endpoint.encode()),
        (RETRY_ATTEMPTS, _b(attempts)),
        (RETRY_FIRST_FAILURE, ms(first_failure)),
        (RETRY_DUE, ms(due)),
        (RETRY_TIER, tier.encode()),
        (RETRY_LAST_ERROR_CLASS, error_class.encode()),
        (RETRY_LAST_ERROR, error[:MAX_TEXT].encode("utf-8", "replace")),
        (REPLAY_COUNT, _b(replay_count)),
        (ACTIVITY_KEY, activity_key.encode("utf-8", "replace")),
        (ORIGIN_TOPIC, _b(origin[0])),
        (ORIGIN_PARTITION, _b(origin[1])),
        (ORIGIN_OFFSET, _b(origin[2])),
    ]
    if tenant is not None:
        h.append((RETRY_TENANT, tenant.encode("utf-8", "replace")))
    if replay_from:
        h.append((REPLAY_FROM, replay_from.encode()))
    return h


@dataclass(frozen=True)
class RetryInfo:
    """What a retry record's headers say."""

    endpoint: str
    tenant: str | None
    attempts: int
    first_failure: float | None
    due: float
    tier: str
    last_error: str            # "Class: message"
    replay_count: int
    origin: tuple[str, int, int]


def parse_retry(headers) -> RetryInfo:
    h = text(headers)
    return RetryInfo(
        endpoint=h.get(RETRY_ENDPOINT, ""), tenant=h.get(RETRY_TENANT),
        attempts=int(h.get(RETRY_ATTEMPTS) or 0),
        first_failure=int(h[RETRY_FIRST_FAILURE]) / 1000 if h.get(RETRY_FIRST_FAILURE) else None,
        due=int(h.get(RETRY_DUE) or 0) / 1000, tier=h.get(RETRY_TIER, ""),
        last_error=f"{h.get(RETRY_LAST_ERROR_CLASS, '?')}: {h.get(RETRY_LAST_ERROR, '')}",
        replay_count=int(h.get(REPLAY_COUNT) or 0),
        origin=(h.get(ORIGIN_TOPIC, "?"), int(h.get(ORIGIN_PARTITION) or -1), int(h.get(ORIGIN_OFFSET) or -1)),
    )


@dataclass(frozen=True)
class DeadInfo:
    """What a dead letter's headers say."""

    stage: str
    endpoint: str | None
    tenant: str | None
    activity_key: str
    error_class: str
    message: str
    status: str
    attempts: int
    first_failure: float | None
    timestamp: float | None
    replay_count: int
    origin: tuple[str, int, int]


def parse_dead(headers, fallback_timestamp_ms: int | None = None) -> DeadInfo:
    h = text(headers)
    ts = h.get(ERROR_TIMESTAMP) or fallback_timestamp_ms
    return DeadInfo(
        stage=h.get(ERROR_STAGE, ""), endpoint=h.get(ERROR_ENDPOINT) or None, tenant=h.get(ERROR_TENANT) or None,
        activity_key=h.get(ACTIVITY_KEY, ""), error_class=h.get(ERROR_CLASS, ""), message=h.get(ERROR_MESSAGE, ""),
        status=h.get(ERROR_STATUS, ""), attempts=int(h.get(ERROR_ATTEMPTS) or 0),
        first_failure=int(h[ERROR_FIRST_FAILURE]) / 1000 if h.get(ERROR_FIRST_FAILURE) else None,
        timestamp=int(ts) / 1000 if ts else None, replay_count=int(h.get(REPLAY_COUNT) or 0),
        origin=(h.get(ERROR_TOPIC, "?"), int(h.get(ERROR_PARTITION) or -1), int(h.get(ERROR_OFFSET) or -1)),
    )


def addressed_to(headers, endpoint: str) -> bool | None:
    """Whether an enriched record's ``endpoints`` header names ``endpoint`` (None: no such header)."""
    for k, v in headers or ():
        if k == ENDPOINTS:
            return endpoint in v.decode().split(",")
    return None
