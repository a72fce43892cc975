"""Endpoint settings declared as data: one typed model per provider, parsed by one path.

A provider declares its settings as a pydantic model that extends :class:`EndpointSettings` (the
settings every endpoint has: batching, timeouts, rate limit, retries, schedule). Each field has
its type, default, bounds and help text; a field that names where a secret is (``…_env``: an
environment variable, ``…_file``: a file) is declared with :func:`secret_ref`. The same model
serves ``load-config``, the sink workers, ``activity-sync providers --schema`` (JSON Schema for
forms) and the admin API, through :func:`parse` in :mod:`sinks.registry`.

Secrets are never values here: :func:`core.secrets.find_inline_secrets` refuses anything that
looks like a credential outside a secret reference.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.headers import TWO_WEEKS_S
from core.settingsmodel import (ENV_NAME, SecretSettings, describe_errors, http_url, parse_duration,  # noqa: F401
                                secret_ref)

from .contract import DEFAULT_BATCH_SIZE, DEFAULT_LINGER_MS, DEFAULT_TIMEOUT_S

class Interval(BaseModel):
    """Bulk at an interval: everything that arrived since the last run, in the largest batches."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    every: Annotated[float, Field(description="time between runs: 30m, 1h, 90s …")]

    @field_validator("every", mode="before")
    @classmethod
    def _duration(cls, v):
        return parse_duration(v)


class RateWindow(BaseModel):
    """A request budget over a sliding window, kept client-side (e.g. Dataverse: 6,000 per 300 s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    requests: int = Field(ge=1, le=10_000_000, description="requests at most in any window")
    seconds: float = Field(gt=0, le=86_400, description="the window's length in seconds")


class EndpointSettings(SecretSettings):
    """Settings every endpoint has, whatever its provider."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    #: the largest batch the provider's API accepts (a class constant, not a setting)
    max_batch: ClassVar[int] = 1000

    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1,
                            description="activities per request (at most the provider's limit)")
    linger_ms: int = Field(DEFAULT_LINGER_MS, ge=0, le=60_000,
                           description="how long to wait to fill a batch, in milliseconds")
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=600,
                             description="seconds one request may take before it is retried")
    concurrent_requests: int = Field(
        1, ge=1, le=16, description="requests of one take in flight at once (after the first, which goes alone); "
                                    "more than 1 only where the API's limits allow concurrent calls")
    rate_limit_per_s: float = Field(0, ge=0, le=100_000, description="requests per second at most; 0: no limit")
    rate_window: RateWindow | None = Field(
        None, description="a request budget over a sliding window, e.g. {requests: 6000, seconds: 300}; "
                          "kept per sink worker process")
    retry_delays_s: tuple[float, float, float, float] | None = Field(
        None, description="seconds before a retry from each of the four retry tiers (default 60, 600, 3600, 21600)")
    retry_window_s: float | None = Field(None, gt=0, le=TWO_WEEKS_S,
                                         description="seconds after the first failure before a delivery is "
                                                     "dead-lettered (default and most: two weeks)")
    inline_retries: int | None = Field(None, ge=0, le=10,
                                       description="in-process tries of a failed batch before it goes to a retry tier")
    schedule: Literal["realtime"] | Interval = Field(
        "realtime", description="realtime (default), or {every: 30m}: deliver in bulk at an interval")

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _delays(cls, v):
        if isinstance(v, (list, tuple)):
            if any(isinstance(x, bool) or not isinstance(x, (int, float)) or x <= 0 for x in v):
                raise ValueError("four positive numbers of seconds")
            return tuple(v)
        elif v is not None:
            raise ValueError("a list of four numbers of seconds, e.g. [60, 600, 3600, 21600]")
        return v

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, v):
        if isinstance(v, str) and v.strip().startswith("every"):
            return {"every": v.strip()[5:].strip(" :")}
        if isinstance(v, str) and v != "realtime":
            raise ValueError(f"{v!r}: realtime, or an interval such as {{every: 30m}}")
        return v

    @field_validator("batch_size")
    @classmethod
    def _within_provider_limit(cls, v):
        if v > cls.max_batch:
            raise ValueError(f"{v} is over this provider's limit of {cls.max_batch} a request")
        return v

    @classmethod
    def json_schema(cls) -> dict:
        schema = cls.model_json_schema()
        schema["properties"]["batch_size"]["maximum"] = cls.max_batch
        return schema

    @property
    def interval_s(self) -> float | None:
        return self.schedule.every if isinstance(self.schedule, Interval) else None

def named_fields(v: dict, pattern: "re.Pattern", what: str, fixed: tuple[str, ...] = ()) -> dict:
    """A field validator's body for ``fields:`` — every target a valid name of the vendor's kind,
    none of the ``fixed`` ones (the sink fills those itself), every source known."""
    from .mapping import check_fields

    for name in v:
        if not pattern.match(name):
            raise ValueError(f"{name!r} is not {what}")
        if name in fixed:
            raise ValueError(f"{name}: filled by the sink itself, not from fields")
    return check_fields(v)


def fields_setting(defaults: dict[str, str], what: str) -> Any:
    """The ``fields:`` setting of a provider that writes named fields: ``{what}: source``."""
    return Field(default_factory=lambda: dict(defaults),
                 description=f"{what}: source (customer_id, activity_datetime, writeback_code1, writeback_code2, "
                             f"description, description:N, details, detail:Name, activity_key, link_url, …)")


def constants_setting(what: str) -> Any:
    """The ``constants:`` setting: ``{what}: a fixed value``."""
    return Field(default_factory=dict, description=f"{what}: a fixed value")


class SecretHeaders:
    """For settings with ``headers_env`` / ``headers_file``: the secret headers, ``Name: value`` lines."""

    def secret_headers(self) -> dict[str, str]:
        text = self.secret("headers") or ""
        out = {}
        for line in text.splitlines():
            if line.strip():
                name, sep, value = line.partition(":")
                if not sep:
                    raise LookupError("secret headers must be 'Name: value' lines")
                out[name.strip()] = value.strip()
        return out


def require_secret(settings: "EndpointSettings", name: str) -> None:
    """A model validator's body: ``name_env`` or ``name_file`` must be set."""
    if not (getattr(settings, f"{name}_env") or getattr(settings, f"{name}_file")):
        raise ValueError(f"{name}_env or {name}_file is required")


class HttpSettings(EndpointSettings):
    """Settings every HTTP provider has."""

    ca_file: str | None = Field(None, max_length=4096,
                                description="a PEM file of extra CA certificates to trust (a private CA, a "
                                            "TLS-inspecting proxy, a fake's test CA); the system's CAs stay trusted")
    client_cert_file: str | None = Field(None, max_length=4096,
                                         description="mutual TLS: the PEM client certificate (chain) to present")
    client_key_file: str | None = Field(None, max_length=4096,
                                        description="mutual TLS: the PEM private key of client_cert_file (a file, "
                                                    "kept out of the config)")

    @model_validator(mode="after")
    def _client_cert(self):
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ValueError("client_cert_file and client_key_file go together (mutual TLS)")
        return self


class PerRecordSettings(HttpSettings):
    """Settings of a provider whose API takes one record per request (see :class:`sinks.http.PerRecordSink`)."""

    max_batch: ClassVar[int] = 100  # records per write; each is its own request

    batch_size: int = Field(50, ge=1, description="activities per write (each is its own request)")
    concurrency: int = Field(4, ge=1, le=64, description="requests in flight at once for one sink worker")
