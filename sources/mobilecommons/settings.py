"""The Mobile Commons source's settings (``kind: mobilecommons``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from core.settingsmodel import http_url, secret_ref

from ..framework import SourceSettings


class MobileCommonsSourceSettings(SourceSettings):
    """Mobile Commons profiles changed since the last poll, every five minutes."""

    max_page_size: ClassVar[int] = 1000  # GET profiles: limit at most 1000

    url: str = Field("https://secure.mcommons.com/api", max_length=2048, description="the REST API root")
    login: str | None = Field(None, max_length=255, description="the API user's e-mail (HTTP Basic)")
    password_env: str | None = secret_ref("env", "that user's password")
    password_file: str | None = secret_ref("file", "that user's password")
    token_env: str | None = secret_ref("env", "the Bearer token (Upland Credential Manager)")
    token_file: str | None = secret_ref("file", "the Bearer token (Upland Credential Manager)")
    company: str | None = Field(None, max_length=100, description="the company key (multi-company accounts)")
    page_size: int = Field(1000, ge=1, description="profiles a page (at most 1000)")
    every: float = Field(300.0, description="time between polls: five minutes by default")
    overlap_s: float = Field(300.0, ge=0, le=7 * 86_400, description="each poll re-reads this far before the cursor")
    start_from: str = Field("1d", description="the first poll reads profiles changed this far back")

    @field_validator("url")
    @classmethod
    def _url(cls, v):
        return http_url(v)

    @model_validator(mode="after")
    def _auth(self):
        if not (self.token_env or self.token_file or (self.login and (self.password_env or self.password_file))):
            raise ValueError("token_env/token_file (Bearer), or login with password_env/password_file (HTTP Basic)")
        return self
