"""The Activity History provider: an append-only SQLite store an operator queries."""

from sinks.spec import ProviderSpec

PROVIDER = ProviderSpec(
    "activity-history",
    "append-only SQLite store, queried with `activity-sync history`",
    settings=".settings:HistorySettings",
    sink=".sink:ActivityHistorySink",
    provider_types=("activity-history",),
    bench=(),
)
