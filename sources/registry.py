"""The source kinds: each package under ``sources/`` with a ``source.py`` declaring ``SOURCE`` (a
:class:`sources.framework.PollingSource` subclass), and the one parse path of a source's settings."""

from __future__ import annotations

import importlib
import pkgutil
from importlib import resources
from pathlib import Path

from core.config import Source
from core.secrets import find_inline_secrets
from core.settingsmodel import parse_strict

from .framework import PollingSource, SourceSettings


class SourceSettingsError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _discover() -> dict[str, str]:
    import sources

    out = {}
    for m in pkgutil.iter_modules(sources.__path__):
        if m.ispkg and Path(sources.__path__[0], m.name, "source.py").exists():
            out[m.name] = f"sources.{m.name}.source"
    return dict(sorted(out.items()))


KINDS: dict[str, str] = _discover()


def source_class(kind: str) -> type[PollingSource]:
    try:
        module = KINDS[kind]
    except KeyError:
        raise SourceSettingsError(f"unknown source kind {kind!r}; known: {', '.join(KINDS) or 'none'}",
                                  "kind") from None
    return importlib.import_module(module).SOURCE


def example_config(kind: str) -> Path | None:
    path = Path(str(resources.files(f"sources.{kind}").joinpath("example.yaml")))
    return path if path.exists() else None


def parse_source_settings(kind: str, raw: dict) -> SourceSettings:
    """``raw`` settings to the kind's typed model (strict, as JSON), or a SourceSettingsError naming each field."""
    cls = source_class(kind).Settings
    if not isinstance(raw, dict):
        raise SourceSettingsError("settings must be a mapping", "settings")
    parsed, problems = parse_strict(cls, raw, find_inline_secrets(raw))
    if problems:
        raise SourceSettingsError("; ".join(f"{where}: {why}" for where, why in problems), problems[0][0])
    return parsed


def parse_source(src: Source) -> SourceSettings:
    try:
        return parse_source_settings(src.kind, src.settings)
    except SourceSettingsError as exc:
        raise SourceSettingsError(f"source {src.name}: {exc}", exc.field) from None


def make_source(src: Source) -> PollingSource:
    return source_class(src.kind)(src, parse_source(src))


def describe() -> list[dict]:
    """Every source kind with its settings' JSON Schema (``activity-sync sources``)."""
    return [{"kind": k, "description": (source_class(k).__doc__ or "").strip().splitlines()[0],
             "settings": source_class(k).Settings.model_json_schema()} for k in KINDS]
