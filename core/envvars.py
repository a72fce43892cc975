"""Every environment variable the code reads, parsed in one place with one-line errors.

A value that cannot be used raises :class:`EnvError` naming the variable and what it takes (the
command line prints it as one line and exits 2). :data:`DOCUMENTED` lists each variable with its
default and meaning; the README's table is checked against it by a test, and the code is checked
to read no variable that is not in it.
"""

from __future__ import annotations

import os


class EnvError(ValueError):
    """An environment variable's value cannot be used; the message names it and what it takes."""


#: name: (default, what it does)
DOCUMENTED: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("127.0.0.1:9092 (run: the local broker)", "the Kafka cluster; every command's "
                                "-b/--bootstrap-server sets it"),
    "KAFKA_SECURITY_PROTOCOL": ("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    "KAFKA_SASL_MECHANISM": ("", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    "KAFKA_SASL_USERNAME": ("", "the SASL user"),
    "KAFKA_SASL_PASSWORD": ("", "the SASL password (or KAFKA_SASL_PASSWORD_FILE: a file holding it)"),
    "KAFKA_SSL_CAFILE": ("", "a CA bundle to trust for SSL"),
    "KAFKA_SSL_CERTFILE": ("", "a client certificate (mutual TLS)"),
    "KAFKA_SSL_KEYFILE": ("", "the client certificate's key"),
    "SCHEMA_REGISTRY_URL": ("", "a Confluent-compatible schema registry: enriched records in its wire format"),
    "ACTIVITY_SYNC_CONFIG": ("the bundled embedded.yaml", "the YAML of endpoints and subscriptions workers start from"),
    "ACTIVITY_SYNC_TOPIC_PREFIX": ("", "a prefix for every topic name"),
    "ACTIVITY_SYNC_PARTITIONS": ("6", "partitions of the topics `topics` creates"),
    "ACTIVITY_SYNC_REPLICATION_FACTOR": ("1", "replication factor of the topics (3 on a real cluster)"),
    "ACTIVITY_SYNC_MIN_INSYNC_REPLICAS": ("2 with 3+ replicas, else 1", "min.insync.replicas of the topics"),
    "ACTIVITY_SYNC_APP_ID": ("activity-sync-streams", "the stream workers' consumer group"),
    "ACTIVITY_SYNC_SINK_GROUP": ("{prefix}activity-sync-sink-{endpoint}", "a sink worker's consumer group"),
    "ACTIVITY_SYNC_ENDPOINT": ("", "the endpoint of `python -m sinks.worker` when none is given"),
    "ACTIVITY_SYNC_MAX_EVENT_BYTES": ("1048576", "raw events larger than this are dead-lettered"),
    "ACTIVITY_SYNC_SESSION_TIMEOUT_S": ("10", "seconds before a crashed worker's partitions move to the others"),
    "ACTIVITY_SYNC_BATCH_SIZE": ("1000", "raw events a stream worker enriches per batch, at most (a quiet stream "
                                         "makes smaller ones within `_BATCH_WITHIN`)"),
    "ACTIVITY_SYNC_BATCH_WITHIN": ("0.01", "seconds a stream worker waits to fill a batch"),
    "ACTIVITY_SYNC_INGEST_HOST": ("127.0.0.1", "the address `activity-sync ingest` (the Push API) listens on"),
    "ACTIVITY_SYNC_INGEST_PORT": ("8094", "the port `activity-sync ingest` listens on"),
    "ACTIVITY_SYNC_INGEST_MAX_IN_FLIGHT": ("256", "Push API requests handled at once; more are answered 429 "
                                                  "with Retry-After"),
    "ACTIVITY_SYNC_INGEST_WRITE_TIMEOUT_S": ("10", "seconds the Push API waits for Kafka to acknowledge a "
                                                   "request's records before it answers 503 with Retry-After"),
    "ACTIVITY_SYNC_SETUP_RETRY_S": ("300", "seconds an endpoint paused by a setup error waits before it tries "
                                            "again (a settings change tries at once)"),
    "ACTIVITY_SYNC_EVENT_LOOP": ("uvloop", "the workers' event loop: `uvloop`, or `asyncio` (the standard "
                                           "library's)"),
    "ACTIVITY_SYNC_DRAIN_S": ("20", "seconds a stopping sink worker lets the write under way finish, at least "
                                    "(longer when the endpoint's `timeout_s` needs it)"),
    "ACTIVITY_SYNC_RETRY_DELAYS": ("60 600 3600 21600", "seconds before a retry from each tier, four numbers "
                                   "separated by spaces or commas"),
    "ACTIVITY_SYNC_RETRY_WINDOW_S": ("1209600", "seconds after the first failure before a delivery is dead-lettered"),
    "ACTIVITY_SYNC_INLINE_RETRIES": ("2", "in-process tries of a failed batch before it goes to a retry tier"),
    "ACTIVITY_SYNC_MAX_REPLAYS": ("3", "how often `replay` puts the same dead letter back"),
    "ACTIVITY_SYNC_PROVIDER_PACKAGES": ("", "packages outside sinks/providers that declare a provider, comma-separated"),
    "ACTIVITY_SYNC_METRICS_HOST": ("127.0.0.1", "address of a worker's /metrics, /healthz and /readyz (0.0.0.0 in "
                                   "containers)"),
    "ACTIVITY_SYNC_METRICS_PORT": ("6066", "port of a worker's /metrics, /healthz and /readyz; 0: off"),
    "ACTIVITY_SYNC_LOG_LEVEL": ("INFO", "DEBUG, INFO, WARNING or ERROR"),
    "ACTIVITY_SYNC_LOG_FORMAT": ("text", "text, or json: one JSON object per line"),
    "ACTIVITY_SYNC_DATADIR": ("a temporary folder", "a worker's Faust data folder"),
    "ACTIVITY_SYNC_CACHE": ("~/.cache/activity-sync", "where the Kafka jars are fetched to"),
    "ACTIVITY_SYNC_KAFKA_DIR": ("var/kafka", "the local broker's data folder (`run`, the broker tool)"),
    "ACTIVITY_SYNC_KAFKA_PORT": ("9092", "the local broker's port (`run`)"),
    "ACTIVITY_SYNC_PORT_BASE": ("", "moves every port `run` opens to N, N+1, …"),
    "ACTIVITY_SYNC_CLOCK_OFFSET_FILE": ("", "tests only: a file of seconds added to the sink's clock"),
    "ACTIVITY_SYNC_ADMIN_KEY": ("", "the admin API's key with every right over every tenant (16+ characters)"),
    "ACTIVITY_SYNC_ADMIN_READ_KEY": ("", "the admin API's read-only key over every tenant"),
    "ACTIVITY_SYNC_ADMIN_KEYS": ("", "admin API keys, one 'id admin|read tenants secret' a line"),
    "ACTIVITY_SYNC_ADMIN_KEYS_FILE": ("", "a file of such lines"),
    "ACTIVITY_SYNC_WRITEBACK_CODE_MAX": ("100", "the longest write-back code the admin API accepts (1 to 100)"),
    "ACTIVITY_SYNC_CHROMIUM": ("/usr/bin/chromium", "tests only: the Chromium the browser tests drive"),
    # the demo credentials `run` makes up and hands to a fake and the endpoint that writes to it
    "ACTIVITY_SYNC_WEBHOOK_SECRET": ("made up by run", "the fake CRM's HMAC secret (example configs)"),
    "ACTIVITY_SYNC_SALESFORCE_SECRET": ("made up by run", "the fake Salesforce org's consumer secret"),
    "ACTIVITY_SYNC_DYNAMICS_SECRET": ("made up by run", "the fake Entra ID's client secret"),
    "ACTIVITY_SYNC_IMIS_PASSWORD": ("made up by run", "the fake iMIS user's password"),
    "ACTIVITY_SYNC_NETFORUM_PASSWORD": ("made up by run", "the fake xWeb user's password"),
    "ACTIVITY_SYNC_RAMCO_KEY": ("made up by run", "the fake RAMCO API key"),
    "ACTIVITY_SYNC_APTIFY_PASSWORD": ("made up by run", "the fake Aptify user's password"),
    "ACTIVITY_SYNC_PERSONIFY_PASSWORD": ("made up by run", "the fake Personify user's password"),
    "ACTIVITY_SYNC_ACTIONNETWORK_KEY": ("made up by run", "the fake Action Network's OSDI API token (the anmc demo)"),
    "ACTIVITY_SYNC_MOBILECOMMONS_TOKEN": ("made up by run", "the fake Mobile Commons' Bearer token (the anmc demo)"),
    "ACTIVITY_SYNC_LISTS_TICK_S": ("30", "how often the list stage re-evaluates members whose time window passed"),
    "ACTIVITY_SYNC_INFORMZ_PASSWORD": ("made up by run", "the fake Thrive Marketing Professional's partner API password "
                                                         "(the lists demo)"),
    "ACTIVITY_SYNC_OCC_FEED_URL": ("set by run", "the fake Thrive Marketing Professional: the list feed it pulls "
                                                 "(the admin server's /occ/v1)"),
    "ACTIVITY_SYNC_OCC_IAMKEY": ("issued by run", "the fake Thrive Marketing Professional: the connection's IAMKey"),
    "ACTIVITY_SYNC_OCC_PASSWORD": ("issued by run", "the fake Thrive Marketing Professional: the connection's password"),
    "ACTIVITY_SYNC_HTTP_SECRET": ("made up by run", "the fake receiver's X-Api-Key"),
    "ACTIVITY_SYNC_HTTP_HEADERS": ("made up by run", "the example http endpoint's secret headers ('X-Api-Key: …')"),
    "ACTIVITY_SYNC_POSTGRES_PASSWORD": ("made up by run", "the local PostgreSQL's password (kept in var/postgres)"),
}


def _raw(name: str) -> str | None:
    v = os.environ.get(name)
    return None if v is None or not v.strip() else v.strip()


def env_int(name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise EnvError(f"{name}={raw!r}: a whole number{_bounds(lo, hi)}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise EnvError(f"{name}={raw!r}: a whole number{_bounds(lo, hi)}")
    return v


def env_float(name: str, default: float, lo: float | None = None, hi: float | None = None) -> float:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise EnvError(f"{name}={raw!r}: a number{_bounds(lo, hi)}") from None
    if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise EnvError(f"{name}={raw!r}: a number{_bounds(lo, hi)}")
    return v


def env_floats(name: str, count: int) -> list[float] | None:
    """``count`` positive numbers separated by spaces or commas (None when unset)."""
    raw = _raw(name)
    if raw is None:
        return None
    parts = raw.replace(",", " ").split()
    try:
        values = [float(x) for x in parts]
    except ValueError:
        values = []
    if len(values) != count or any(not v > 0 for v in values):
        raise EnvError(f"{name}={raw!r}: {count} positive numbers of seconds separated by spaces or commas, "
                       f"e.g. \"60 600 3600 21600\"")
    return values


def _bounds(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" of at least {lo}"
    return ""
