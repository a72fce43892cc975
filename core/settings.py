"""Settings from the environment: where the cluster is, how to reach it, how topics are named.

Secrets (SASL password, TLS key) come from the environment or from files named in it
(``KAFKA_SASL_PASSWORD_FILE``), never from ``activity.config`` or the repo; ``repr`` hides them.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from .envvars import env_float, env_int


def secret_from_env(name: str) -> str | None:
    """``NAME`` or the content of the file named by ``NAME_FILE`` (stripped)."""
    if os.environ.get(name):
        return os.environ[name]
    path = os.environ.get(name + "_FILE")
    if path:
        return Path(path).read_text().strip()
    return None


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @classmethod
    def from_env(cls, default_bootstrap: str | None = None) -> "KafkaSettings":
        e = os.environ
        return cls(
            bootstrap_servers=e.get("KAFKA_BOOTSTRAP_SERVERS") or default_bootstrap or "127.0.0.1:9092",
            security_protocol=e.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper(),
            sasl_mechanism=e.get("KAFKA_SASL_MECHANISM"),
            sasl_username=e.get("KAFKA_SASL_USERNAME"),
            sasl_password=secret_from_env("KAFKA_SASL_PASSWORD"),
            ssl_cafile=e.get("KAFKA_SSL_CAFILE"),
            ssl_certfile=e.get("KAFKA_SSL_CERTFILE"),
            ssl_keyfile=e.get("KAFKA_SSL_KEYFILE"),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.security_protocol:
            return None
        ctx = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return ctx

    def aiokafka_kwargs(self) -> dict:
        """Keyword arguments for any aiokafka client."""
        kw: dict = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            kw.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                      sasl_plain_password=self.sasl_password)
        ctx = self.ssl_context()
        if ctx is not None:
            kw["ssl_context"] = ctx
        return kw

    def faust_broker(self) -> tuple[str, object | None]:
        """The Faust ``broker`` URL and ``broker_credentials``."""
        import faust

        url = ";".join("kafka://" + s.strip() for s in self.bootstrap_servers.split(","))
        creds = None
        if self.sasl_mechanism:
            creds = faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                          mechanism=self.sasl_mechanism, ssl_context=self.ssl_context())
        elif "SSL" in self.security_protocol:
            creds = faust.SSLCredentials(self.ssl_context())
        return url, creds


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings
    topic_prefix: str = ""
    partitions: int = 6
    app_id: str = "activity-sync-streams"
    config_path: str | None = None
    schema_registry_url: str | None = None
    max_event_bytes: int = 1_048_576
    metrics_port: int = 6066
    metrics_host: str = "127.0.0.1"
    # A crashed worker's partitions move to the others after this long (Faust's default is 60 s).
    session_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, default_bootstrap: str | None = None) -> "Settings":
        e = os.environ
        return cls(
            kafka=KafkaSettings.from_env(default_bootstrap),
            topic_prefix=e.get("ACTIVITY_SYNC_TOPIC_PREFIX", ""),
            partitions=env_int("ACTIVITY_SYNC_PARTITIONS", 6, 1, 10_000),
            app_id=e.get("ACTIVITY_SYNC_APP_ID", "activity-sync-streams"),
            config_path=e.get("ACTIVITY_SYNC_CONFIG"),
            schema_registry_url=e.get("SCHEMA_REGISTRY_URL") or None,
            max_event_bytes=env_int("ACTIVITY_SYNC_MAX_EVENT_BYTES", 1_048_576, 1024, 16 * 1024 * 1024),
            metrics_port=env_int("ACTIVITY_SYNC_METRICS_PORT", 6066, 0, 65535),
            metrics_host=e.get("ACTIVITY_SYNC_METRICS_HOST", "127.0.0.1"),
            session_timeout_s=env_float("ACTIVITY_SYNC_SESSION_TIMEOUT_S", 10.0, 1, 3600),
        )
