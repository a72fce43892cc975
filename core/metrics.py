"""Metrics every worker has, and the one rule for labels taken from input.

A label value that comes from input (a TenantCode, an activity code, an error class) would give
Prometheus a new series for every value any producer ever sends. :class:`BoundedLabel` keeps the
first ``limit`` values seen (or only the ``allowed`` ones, when the configuration knows them) and
counts every other value as ``_other``.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import Counter

CONFIG_RECORDS = Counter("activity_sync_config_records_total", "activity.config records applied", ["outcome"])

OTHER = "_other"


class BoundedLabel:
    """Label values from input, at most ``limit`` distinct ones; with ``allowed``, only those it answers."""

    def __init__(self, limit: int = 200, allowed: Callable[[], Iterable[str]] | None = None) -> None:
        self.limit = limit
        self.allowed = allowed
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if self.allowed is not None:
            return value if value in set(self.allowed()) else OTHER
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER
