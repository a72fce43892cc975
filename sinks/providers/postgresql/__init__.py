"""The PostgreSQL activity table: settings and sink (the server is real: Debian's package)."""

from sinks.spec import ProviderSpec

PROVIDER = ProviderSpec(
    "postgresql",
    ("PostgreSQL activity table: batched upsert on (endpoint, activity_key), indexes by member, code and "
     "date, details as jsonb (asyncpg)"),
    settings=".settings:PostgresSettings",
    sink=".sink:PostgresSink",
    extra="postgresql",
    bench=(),
)
