"""Settings of the Action Network provider (API v2, OSDI)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from sinks.settings import PerRecordSettings, http_url, require_secret, secret_ref


class ActionNetworkSettings(PerRecordSettings):
    max_batch: ClassVar[int] = 100

    url: str = Field("https://actionnetwork.org/api/v2", max_length=2048, description="the API v2 root")
    api_token_env: str | None = secret_ref("env", "the OSDI API token (OSDI-API-Token)")
    api_token_file: str | None = secret_ref("file", "the OSDI API token (OSDI-API-Token)")
    concurrency: int = Field(2, ge=1, le=16, description="requests in flight at once (Action Network publishes "
                                                         "no number; about 4 a second is seen)")
    rate_limit_per_s: float = Field(4, ge=0, le=100_000, description="requests per second at most")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v)

    @model_validator(mode="after")
    def _needs(self):
        require_secret(self, "api_token")
        return self
