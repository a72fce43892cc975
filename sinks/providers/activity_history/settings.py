"""Settings of the Activity History provider."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from sinks.settings import EndpointSettings


class HistorySettings(EndpointSettings):
    max_batch: ClassVar[int] = 5000

    path: str = Field("var/activity-history.db", description="the SQLite database file", max_length=4096)
