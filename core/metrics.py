"""Metrics every worker has, and the one rule for labels taken from input.

A label value that comes from input (a TenantCode, an activity code) would give Prometheus a new
series for every value any producer ever sends: such a label takes the values the configuration
names (the tenants endpoints serve: :meth:`core.routing.Routing.tenants`), or a bounded set of first
seen ones, and counts every other value as :data:`OTHER`.
"""

from __future__ import annotations

from prometheus_client import Counter

CONFIG_RECORDS = Counter("activity_sync_config_records_total", "activity.config records applied", ["outcome"])

OTHER = "_other"
