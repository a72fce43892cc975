"""The sink contract: what a provider implements, and the errors it reports.

A provider turns a batch of deliveries into requests and says which failures are retriable.
Everything else (consuming, batching, rate limiting, Retry-After, in-process retries, the retry
topics, dead letters, metrics) belongs to :mod:`sinks.runner`. Providers never import Faust or
aiokafka.

    class MySink(Sink):
        async def start(self, ctx): ...                        # build the client (ctx.settings is typed)
        async def write(self, batch) -> list[RecordFailure]:   # per-record failures as values
            ...                                                # whole-batch failures raise SinkError
        async def stop(self): ...

HTTP providers extend :class:`sinks.http.HttpSink` instead, which owns the session, timeouts,
status classification, Retry-After and the token cache. A provider's settings are a model in its
package (:mod:`sinks.settings`); :mod:`sinks.registry` finds both by import path.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


class SinkError(Exception):
    """Base of every provider error; ``retriable`` says whether trying again can help."""

    retriable = False

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetriableError(SinkError):
    """Connection errors, timeouts, 408, 5xx: the same request may succeed later."""

    retriable = True


class Throttled(RetriableError):
    """429 (or a provider's own limit code): wait ``retry_after`` seconds before any further request."""


class AuthExpired(RetriableError):
    """The token expired (401): the runner asks the sink to authenticate again, then retries once."""


class SetupError(SinkError):
    """The endpoint's setup, not a record, is wrong for the API: a field that does not exist or that
    the integration user may not write, an API version or object the org does not have, a table the
    app has no privilege on. No record can succeed until it is fixed, so none is dead-lettered: the
    endpoint pauses with this reason (records wait in Kafka, unacknowledged) and tries again when its
    settings change, or after ``ACTIVITY_SYNC_SETUP_RETRY_S`` (the fix may be made in the AMS/CRM)."""


class FatalError(SinkError):
    """A 4xx that retrying cannot fix: the record goes to the dead-letter topic."""


class BatchRefused(FatalError):
    """The API refused the batch as a whole without saying which record it could not take (an
    all-or-nothing bulk call). The runner splits the batch and tries the halves, so one bad record
    never blocks its neighbours; a single record refused is dead-lettered with this error."""


class PayloadTooLarge(BatchRefused):
    """413: the request was too big for the API: split like :class:`BatchRefused`."""


class MappingError(FatalError):
    """The activity cannot be turned into a request for this provider (e.g. no customer ID)."""


#: the defaults every endpoint's settings start from (sinks.settings.EndpointSettings declares them)
DEFAULT_BATCH_SIZE = 200
DEFAULT_LINGER_MS = 50
DEFAULT_TIMEOUT_S = 10.0


def write_budget_s(timeout_s: float, rounds: int = 1) -> float:
    """The one formula for how long a write may take: each round of requests its timeout twice (a
    token renewal, then the request itself), plus 5 s."""
    return rounds * timeout_s * 2 + 5


@dataclass(frozen=True)
class Delivery:
    """One activity for one endpoint: the enriched record's fields plus that endpoint's entry."""

    activity_key: str
    endpoint: str
    activity_code: str
    category: str
    tenant_code: str
    activity_date: dt.datetime
    customer_id: str | None
    contact_key: str | None
    link_url: str | None
    description: str
    writeback_code1: str | None
    writeback_code2: str | None
    details_json: str
    details_xml: str
    details: tuple[tuple[str, str | None], ...] = field(default=(), repr=False)

    @classmethod
    def from_record(cls, record: dict, entry: dict) -> "Delivery":
        date = record["activity_date"]
        if not isinstance(date, dt.datetime):
            date = dt.datetime.fromtimestamp(date / 1e6, dt.timezone.utc)
        return cls(
            activity_key=record["activity_key"], endpoint=entry["endpoint"],
            activity_code=record["activity_code"], category=record["category"],
            tenant_code=record["tenant_code"], activity_date=date, customer_id=record["customer_id"],
            contact_key=record.get("contact_key"), link_url=record.get("link_url"),
            description=entry["description"], writeback_code1=entry.get("writeback_code1"),
            writeback_code2=entry.get("writeback_code2"), details_json=record["details_json"],
            details_xml=record["details_xml"],
            details=tuple((d["name"], d["value"]) for d in record.get("details", ())),
        )

    @property
    def activity_date_iso(self) -> str:
        return self.activity_date.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class RecordFailure:
    """Record ``index`` of the batch failed with ``error``; the rest of the batch succeeded."""

    index: int
    error: SinkError


@dataclass
class SinkContext:
    """What a sink gets at start: its endpoint's name and parsed settings, and a hook for metrics."""

    endpoint: str
    settings: Any  # the provider's parsed settings (a sinks.settings.EndpointSettings)
    observe_http: Callable[[int | str], None] = lambda status: None

    def secret(self, name: str) -> str | None:
        """The secret ``name`` from where ``settings.name_env`` / ``name_file`` says."""
        return self.settings.secret(name)


class Sink:
    """Base class of providers. Subclasses set ``provider`` and implement the three methods."""

    provider = "abstract"
    #: whom an activity must name to be written (the ``no customer ID`` error says so); None: nobody
    member_noun: str | None = "member"

    def __repr__(self) -> str:  # never the settings: they name where secrets are, and a repr ends up in logs
        return f"{type(self).__name__}(endpoint={getattr(self, 'ctx', None) and self.ctx.endpoint!r})"

    def no_customer(self, d: "Delivery") -> "MappingError | None":
        """The mapping error of an activity that names no member, where this provider needs one."""
        if self.member_noun and not d.customer_id:
            return MappingError(f"no customer ID: the activity names no {self.member_noun} to write to")
        return None

    def duplicate_guard(self) -> bool:
        """Whether to look an activity up before writing it (``duplicate_guard`` setting): for APIs
        with no upsert by an external key, so a redelivery is not written twice."""
        return bool(getattr(self.ctx.settings, "duplicate_guard", False))

    async def already_written(self, d: "Delivery") -> bool:
        """The duplicate guard's look-up: whether ``d`` is in the target already (by its ActivityKey)."""
        return False

    @property
    def max_batch_size(self) -> int:
        """The largest batch the provider's API accepts (its settings class says); the runner never sends more."""
        return self.ctx.settings.max_batch

    async def start(self, ctx: SinkContext) -> None:
        self.ctx = ctx

    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        raise NotImplementedError

    async def reauthenticate(self) -> None:
        """Called once after :class:`AuthExpired`; providers without tokens need nothing."""

    def pacing_s(self) -> float:
        """Seconds the API wants between requests right now (0: none). The runner's gate waits at
        least this long between writes, e.g. Salesforce as its daily API allocation runs low."""
        return 0.0

    def request_rounds(self, n: int) -> int:
        """How many requests a write of ``n`` records makes one after another (1: one request; a
        one-record-per-request API with bounded concurrency makes more)."""
        return 1

    def write_timeout_s(self, n: int) -> float:
        """How long a write of ``n`` records may take in all before the runner gives up on it."""
        settings = getattr(getattr(self, "ctx", None), "settings", None)
        return write_budget_s(settings.timeout_s if settings is not None else DEFAULT_TIMEOUT_S, self.request_rounds(n))

    def request_cost(self, n: int) -> int:
        """How many requests a write of ``n`` records counts for against the endpoint's request
        budget (``rate_window``): 1 for one HTTP request; a Dataverse ``$batch`` counts each part."""
        return 1

    async def stop(self) -> None:
        pass
