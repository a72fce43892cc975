"""The Action Network source's settings (``kind: actionnetwork``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from core.settingsmodel import http_url, secret_ref

from ..framework import SourceSettings


class ActionNetworkSourceSettings(SourceSettings):
    """Action Network people changed in the past 48 hours, read nightly."""

    max_page_size: ClassVar[int] = 25  # people are served 25 a page at most

    url: str = Field("https://actionnetwork.org/api/v2", max_length=2048, description="the API v2 root")
    api_token_env: str | None = secret_ref("env", "the OSDI API token")
    api_token_file: str | None = Field(**{**secret_ref("file", "the OSDI API token")._attributes_set,
                                          "validate_default": True})
    page_size: int = Field(25, ge=1, description="people a page (Action Network serves 25 at most)")
    every: float = Field(86_400.0, description="time between polls: nightly (24h) by default")
    at: str | None = Field("03:00", description="HH:MM (UTC) of the nightly run (the first runs the following "
                                                "morning; `source --once` runs now)")
    overlap_s: float = Field(172_800.0, ge=0, le=7 * 86_400, description="each run reads people modified since the "
                                                                          "last one less this (48 h)")
    start_from: str = Field("48h", description="the first run reads people modified this far back")
    commit_interval_s: float = Field(5.0, ge=0, le=300, description="write the cursor at most this often in a run")
    concurrent_requests: int = Field(2, ge=1, le=8, description="requests in flight at once")

    @field_validator("url")
    @classmethod
    def _url(cls, v):
        return http_url(v)

    @field_validator("api_token_file")
    @classmethod
    def _token(cls, v, info):
        if not (v or info.data.get("api_token_env")):
            raise ValueError("api_token_env or api_token_file is required (where the OSDI API token is)")
        return v
