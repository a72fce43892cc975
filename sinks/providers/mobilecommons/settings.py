"""Settings of the Mobile Commons provider (REST API)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from sinks.settings import PerRecordSettings, http_url, secret_ref


class MobileCommonsSettings(PerRecordSettings):
    max_batch: ClassVar[int] = 100

    url: str = Field("https://secure.mcommons.com/api", max_length=2048, description="the REST API root")
    login: str | None = Field(None, max_length=255, description="the API user's e-mail (HTTP Basic; companies not "
                                                                "on Upland Credential Manager)")
    password_env: str | None = secret_ref("env", "that user's password")
    password_file: str | None = secret_ref("file", "that user's password")
    token_env: str | None = secret_ref("env", "the Bearer token (companies on Upland Credential Manager)")
    token_file: str | None = secret_ref("file", "the Bearer token (companies on Upland Credential Manager)")
    company: str | None = Field(None, max_length=100, description="the company key (multi-company accounts)")
    concurrency: int = Field(8, ge=1, le=160, description="requests in flight at once (Mobile Commons allows 160 "
                                                          "concurrent calls a company, all clients together)")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v)

    @model_validator(mode="after")
    def _needs(self):
        token = self.token_env or self.token_file
        basic = self.login and (self.password_env or self.password_file)
        if not (token or basic):
            raise ValueError("token_env/token_file (Bearer), or login with password_env/password_file (HTTP Basic)")
        return self
