"""Worker logging: text (default) or one JSON object per line, with secrets redacted.

``ACTIVITY_SYNC_LOG_FORMAT=json`` gives, per line::

    {"ts": "2026-12-01T22:40:01.123Z", "level": "WARNING", "role": "sink", "endpoint": "crm",
     "logger": "activity_sync.sinks", "message": "…", "activity_key": "…", "topic": "…",
     "partition": 0, "offset": 42}

(``activity_key``, ``topic``, ``partition`` and ``offset`` where the line is about one record:
code logs them with ``extra=record_fields(...)``). Faust's and aiokafka's own lines go through the
same formatter (the dictConfig is handed to Faust's worker, which would otherwise install its own).

Secrets never appear: every secret the process reads through a settings reference (``…_env`` /
``…_file``, :func:`register_secret`), and the value of every environment variable whose name says
it is one (``…PASSWORD``, ``…SECRET``, ``…TOKEN``, ``…KEY``, ``…CREDENTIALS``), is replaced by
``***`` in every line, in both formats.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
import os
import re

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|_KEY$|CREDENTIAL|HEADERS$)", re.I)
RECORD_FIELDS = ("activity_key", "topic", "partition", "offset", "tenant")
_secrets: set[str] = set()
_config: dict | None = None


def register_secret(value: str | None) -> None:
    """Never log this value (nor any of its lines, for multi-line secrets such as header lists)."""
    if value and len(value) >= 4:
        _secrets.add(value)
        for part in re.split(r"[\r\n]+", value):
            part = part.split(":", 1)[1].strip() if ":" in part else part.strip()
            if len(part) >= 4:
                _secrets.add(part)


def _secrets_from_environment() -> None:
    for name, value in os.environ.items():
        if SECRET_NAME.search(name):
            register_secret(value)


def redact(text: str) -> str:
    for s in sorted(_secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, "***")
    return text


def record_fields(activity_key=None, topic=None, partition=None, offset=None, tenant=None) -> dict:
    """``extra=`` for a log line about one record."""
    return {k: v for k, v in (("activity_key", activity_key), ("topic", topic), ("partition", partition),
                              ("offset", offset), ("tenant", tenant)) if v is not None}


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str = "", endpoint: str | None = None) -> None:
        super().__init__()
        self.role, self.endpoint = role, endpoint

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
               + "Z", "level": record.levelname, "role": self.role}
        endpoint = getattr(record, "endpoint", None) or self.endpoint
        if endpoint:
            out["endpoint"] = endpoint
        out["logger"] = record.name
        out["message"] = redact(record.getMessage())
        for k in RECORD_FIELDS:
            v = getattr(record, k, None)
            if v is not None:
                out[k] = redact(v) if isinstance(v, str) else v
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, role: str = "", endpoint: str | None = None) -> None:
        prefix = f"{role}{'/' + endpoint if endpoint else ''}"
        super().__init__(f"%(asctime)s %(levelname)s [{prefix}] %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(role: str, endpoint: str | None = None) -> dict:
    """Set up this process's logging from ACTIVITY_SYNC_LOG_LEVEL / _LOG_FORMAT; the dictConfig (for Faust)."""
    from .envvars import EnvError

    global _config
    level = os.environ.get("ACTIVITY_SYNC_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise EnvError(f"ACTIVITY_SYNC_LOG_LEVEL={level!r}: DEBUG, INFO, WARNING or ERROR")
    fmt = os.environ.get("ACTIVITY_SYNC_LOG_FORMAT", "text").strip().lower() or "text"
    if fmt not in ("text", "json"):
        raise EnvError(f"ACTIVITY_SYNC_LOG_FORMAT={fmt!r}: text or json")
    _secrets_from_environment()
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    _config = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"main": {"()": f"{__name__}.{formatter.__name__}", "role": role, "endpoint": endpoint}},
        "handlers": {"main": {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["main"]},
    }
    logging.config.dictConfig(_config)
    return _config


def current_config() -> dict | None:
    """The dictConfig :func:`configure_logging` made (None if it was not called)."""
    return None if _config is None else json.loads(json.dumps(_config))


__all__ = ["configure_logging", "current_config", "record_fields", "register_secret", "redact"]
