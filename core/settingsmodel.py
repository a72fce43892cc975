"""Settings declared as pydantic models: what sinks' endpoint settings and sources' settings share.

A field that names where a secret is (``…_env``: an environment variable, ``…_file``: a file) is
declared with :func:`secret_ref`; :meth:`SecretSettings.secret` reads it and registers the value with
the log redactor. Durations (``30m``, ``90s``) parse with :func:`parse_duration`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


def secret_ref(kind: Literal["env", "file"], what: str) -> Any:
    """A field naming where a secret is: an environment variable (``env``) or a file (``file``)."""
    help_ = (f"name of the environment variable holding {what}" if kind == "env"
             else f"path of a file holding {what}")
    return Field(default=None, description=help_, json_schema_extra={"x-secret-ref": kind},
                 pattern=ENV_NAME if kind == "env" else None, max_length=4096)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any, most: float = 7 * 86400) -> float:
    """``30m``, ``90s``, ``1h``, ``1.5h``, or a number of seconds (from 1 s to ``most``, default 7 days)."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30m, 90s or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration such as 30m, 90s or 1h")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 1 <= seconds <= most:
        raise ValueError(f"an interval from 1s to {most / 86400:g}d")
    return seconds



class SecretSettings(BaseModel):
    """A settings model whose secrets are named by ``…_env`` / ``…_file`` fields (:func:`secret_ref`)."""

    def secret(self, name: str) -> str | None:
        """The secret ``name`` from where ``name_env`` / ``name_file`` says (None if neither is set);
        registered with the log redactor, so it never appears in a log line."""
        from core.logs import register_secret

        value = self._secret(name)
        register_secret(value)
        return value

    def _secret(self, name: str) -> str | None:
        env = getattr(self, f"{name}_env", None)
        if env:
            value = os.environ.get(env)
            if value is None:
                raise LookupError(f"environment variable {env} (settings.{name}_env) is not set")
            return value
        path = getattr(self, f"{name}_file", None)
        if path:
            try:
                return Path(path).read_text().strip()
            except OSError as exc:
                raise LookupError(f"cannot read settings.{name}_file {path}: {exc.strerror}") from None
        return None

    @classmethod
    def secret_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items()
                if isinstance(f.json_schema_extra, dict) and "x-secret-ref" in f.json_schema_extra]

    def public(self) -> dict:
        """The settings as they may be shown (there are no secrets in them, only where secrets are)."""
        return self.model_dump(mode="json")


def http_url(v: str | None, strip: bool = True) -> str | None:
    """A field validator's body: an http:// or https:// URL (its trailing slash dropped if ``strip``)."""
    if v is not None and not v.startswith(("http://", "https://")):
        raise ValueError("an http:// or https:// URL")
    return v.rstrip("/") if v and strip else v


def describe_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, why)`` per problem: ``("settings.batch_size", "Input should be a valid integer")``."""
    out = []
    for e in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(x) for x in e["loc"] if not (isinstance(x, str) and x in ("Interval", "literal['realtime']")))
        out.append((f"settings.{loc}" if loc else "settings", e["msg"].removeprefix("Value error, ")))
    return out


def parse_strict(cls: type[BaseModel], raw: dict, inline_secrets: list[tuple[str, str]]):
    """``raw`` settings to ``cls``, strictly as JSON (a string is never taken for a number or a
    boolean); answers ``(parsed or None, [(field, why), …])`` with ``inline_secrets`` first."""
    import json

    problems = [(where, f"looks like {what}") for where, what in inline_secrets]
    parsed = None
    try:
        parsed = cls.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as exc:
        seen = {where for where, _ in problems}
        problems += [(where, why) for where, why in describe_errors(exc) if where not in seen]
    return (None if problems else parsed), problems
