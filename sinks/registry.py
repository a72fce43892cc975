"""Providers by name, as their packages declare them (:mod:`sinks.spec`), and the one path that
parses an endpoint's settings.

A provider's sink module is imported only when an endpoint uses it, so its optional dependency
(a SOAP library, a PostgreSQL driver) is needed only there; its settings module imports nothing
optional, so ``load-config``, ``activity-sync providers`` and the admin API can read every
provider's settings without any of those libraries.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from dataclasses import replace
from importlib import resources
from pathlib import Path

from core.secrets import find_inline_secrets
from core.settingsmodel import parse_strict

from .settings import EndpointSettings
from .spec import ProviderSpec


class SettingsError(ValueError):
    """An endpoint's provider or settings cannot be used; the message names endpoint and field, and
    ``field`` holds the first field it is about (``provider``, ``settings.batch_size``, …) as data."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ProviderUnavailable(SettingsError):
    """The provider's optional dependency is not installed."""


#: packages besides ``sinks.providers.*`` that declare a provider (comma-separated import names)
EXTRA_PACKAGES_ENV = "ACTIVITY_SYNC_PROVIDER_PACKAGES"


def _discover() -> dict[str, ProviderSpec]:
    """Every provider declared: each package under ``sinks.providers`` and each package named in
    ``ACTIVITY_SYNC_PROVIDER_PACKAGES``, by the ``PROVIDER`` its ``__init__`` declares."""
    from . import providers

    names = [f"{providers.__name__}.{m.name}" for m in pkgutil.iter_modules(providers.__path__) if m.ispkg]
    names += [n.strip() for n in os.environ.get(EXTRA_PACKAGES_ENV, "").split(",") if n.strip()]
    found: dict[str, ProviderSpec] = {}
    for package in names:
        try:
            declared = getattr(importlib.import_module(package), "PROVIDER", None)
        except ImportError as exc:
            raise SettingsError(f"{EXTRA_PACKAGES_ENV}: cannot import {package}: {exc}") from None
        if not isinstance(declared, ProviderSpec):
            raise SettingsError(f"{package} declares no PROVIDER = ProviderSpec(...)")
        if declared.name in found:
            raise SettingsError(f"provider {declared.name!r} is declared twice ({found[declared.name].package}, "
                                f"{package})")
        found[declared.name] = replace(declared, package=package)
    return dict(sorted(found.items()))


PROVIDERS: dict[str, ProviderSpec] = _discover()


def example_config(name: str) -> Path | None:
    """The example config a provider's package ships (``example.yaml``), if it has one."""
    s = spec(name)
    path = Path(str(resources.files(s.package).joinpath("example.yaml")))
    return path if path.exists() else None


def _load(path: str, spec: ProviderSpec):
    module, _, attr = spec.resolve(path).partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        hint = f" (pip install 'activity-sync[{spec.extra}]')" if spec.extra else ""
        raise ProviderUnavailable(f"provider {spec.name} needs {exc.name or exc}{hint}") from None


def spec(name: str) -> ProviderSpec:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise SettingsError(f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDERS))}", "provider") from None


def settings_class(name: str) -> type[EndpointSettings]:
    return _load(spec(name).settings, spec(name))


def sink_class(name: str):
    return _load(spec(name).sink, spec(name))


def parse_settings(provider: str, raw: dict, provider_type: str = "membership") -> EndpointSettings:
    """The one parse path: ``raw`` settings to the provider's typed model, or a SettingsError naming each field."""
    s = spec(provider)
    if provider_type not in s.provider_types:
        raise SettingsError(f"provider {provider} is for provider_type {' or '.join(s.provider_types)}, "
                            f"not {provider_type}", "provider_type")
    if not isinstance(raw, dict):
        raise SettingsError("settings must be a mapping", "settings")
    # strict, as JSON: a string is never taken for a number or a boolean, a boolean never for a number
    parsed, problems = parse_strict(settings_class(provider), raw, find_inline_secrets(raw))
    if problems:
        raise SettingsError("; ".join(f"{where}: {why}" for where, why in problems), problems[0][0])
    return parsed


def parse_endpoint(ep) -> EndpointSettings:
    """An endpoint's settings parsed by its provider's model; SettingsError names the endpoint."""
    try:
        return parse_settings(ep.provider, ep.settings, ep.provider_type)
    except SettingsError as exc:
        raise type(exc)(f"endpoint {ep.name}: {exc}", exc.field) from None


def describe() -> list[dict]:
    """Every provider with its settings' JSON Schema (for `activity-sync providers` and the admin page)."""
    out = []
    for name, s in sorted(PROVIDERS.items()):
        entry = {"name": name, "summary": s.summary, "provider_types": list(s.provider_types), "extra": s.extra}
        try:
            entry["settings_schema"] = settings_class(name).json_schema()
        except ProviderUnavailable as exc:
            entry["error"] = str(exc)
        out.append(entry)
    return out
