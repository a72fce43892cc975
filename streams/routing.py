"""Endpoints and subscriptions: where each activity code is delivered, and how it is described.

They live in the compacted ``activity.config`` topic as JSON records keyed
``endpoint:<name>`` and ``subscription:<code>:<endpoint>``; a tombstone deletes one. The
embedded default loads them from a YAML file at start. Pure: nothing here talks to Kafka.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .catalog import Catalog
from .templates import Template, TemplateError, compile_template

PROVIDER_TYPES = ("membership", "activity-history")
_SECRETISH = re.compile(r"(secret|password|passwd|api[_-]?key|token|credential)", re.I)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Endpoint:
    name: str
    provider_type: str = "membership"
    enabled: bool = True
    settings: dict = field(default_factory=dict)

    def key(self) -> str:
        return f"endpoint:{self.name}"


@dataclass(frozen=True)
class Subscription:
    activity_code: str
    endpoint: str
    description: str
    enabled: bool = True
    writeback_code1: str | None = None
    writeback_code2: str | None = None

    def key(self) -> str:
        return f"subscription:{self.activity_code}:{self.endpoint}"


@dataclass(frozen=True)
class Route:
    """One enabled subscription on an enabled endpoint, its template compiled."""

    endpoint: str
    provider_type: str
    template: Template
    writeback_code1: str | None
    writeback_code2: str | None


def check_endpoint(ep: Endpoint) -> Endpoint:
    if not isinstance(ep.name, str) or not _NAME.fullmatch(ep.name):
        raise ConfigError(f"endpoint name {ep.name!r}: letters, digits, '_', '.', '-' (at most 100)")
    if ep.provider_type not in PROVIDER_TYPES:
        raise ConfigError(f"endpoint {ep.name}: provider_type must be one of {', '.join(PROVIDER_TYPES)}, "
                          f"not {ep.provider_type!r}")
    if not isinstance(ep.settings, dict):
        raise ConfigError(f"endpoint {ep.name}: settings must be a mapping")
    for k, v in _walk(ep.settings):
        if _SECRETISH.search(k) and not re.search(r"_(env|file)$", k):
            raise ConfigError(f"endpoint {ep.name}: setting {k!r} looks like a secret; name the environment "
                              f"variable or file that holds it ({k}_env / {k}_file) instead")
    return ep


def _walk(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _walk(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def check_subscription(sub: Subscription, catalog: Catalog) -> Template:
    """Validate a subscription against the catalog; answer its compiled template."""
    if not isinstance(sub.activity_code, str) or not sub.activity_code:
        raise ConfigError("subscription: activity_code is required")
    for n in ("writeback_code1", "writeback_code2"):
        v = getattr(sub, n)
        if v is not None and (not isinstance(v, str) or len(v) > 100):
            raise ConfigError(f"subscription {sub.activity_code} -> {sub.endpoint}: {n} must be text of at most 100")
    try:
        return compile_template(sub.description, catalog.known_properties(sub.activity_code),
                                catalog.aliases(sub.activity_code),
                                where=f"description of {sub.activity_code} -> {sub.endpoint}")
    except TemplateError as exc:
        raise ConfigError(str(exc)) from None


class Routing:
    """The route index the enrich agent reads: activity code -> routes, rebuilt on each change."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.endpoints: dict[str, Endpoint] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self._templates: dict[str, Template] = {}
        self._index: dict[str, tuple[Route, ...]] = {}

    def routes(self, code: str) -> tuple[Route, ...]:
        return self._index.get(code, ())

    def put_endpoint(self, ep: Endpoint) -> None:
        self.endpoints[ep.name] = check_endpoint(ep)
        self._rebuild()

    def put_subscription(self, sub: Subscription) -> None:
        self._templates[sub.key()] = check_subscription(sub, self.catalog)
        self.subscriptions[sub.key()] = sub
        self._rebuild()

    def delete(self, key: str) -> None:
        if key.startswith("endpoint:"):
            self.endpoints.pop(key.split(":", 1)[1], None)
        else:
            self.subscriptions.pop(key, None)
            self._templates.pop(key, None)
        self._rebuild()

    def apply_record(self, key: str, value: bytes | None) -> None:
        """Apply one ``activity.config`` record (``None`` value: tombstone)."""
        if value is None:
            self.delete(key)
            return
        data = json.loads(value)
        if key.startswith("endpoint:"):
            self.put_endpoint(endpoint_from_dict(data))
        elif key.startswith("subscription:"):
            self.put_subscription(subscription_from_dict(data))
        else:
            raise ConfigError(f"unknown config record key {key!r}")

    def _rebuild(self) -> None:
        index: dict[str, list[Route]] = {}
        for key, sub in sorted(self.subscriptions.items()):
            ep = self.endpoints.get(sub.endpoint)
            if not sub.enabled or ep is None or not ep.enabled:
                continue
            index.setdefault(sub.activity_code, []).append(
                Route(ep.name, ep.provider_type, self._templates[key], sub.writeback_code1, sub.writeback_code2))
        self._index = {k: tuple(v) for k, v in index.items()}


def endpoint_from_dict(d: dict) -> Endpoint:
    try:
        return Endpoint(name=d["name"], provider_type=d.get("provider_type", "membership"),
                        enabled=bool(d.get("enabled", True)), settings=dict(d.get("settings") or {}))
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"endpoint {d!r}: {exc}") from None


def subscription_from_dict(d: dict) -> Subscription:
    codes = d.get("writeback_codes") or [d.get("writeback_code1"), d.get("writeback_code2")]
    codes = list(codes) + [None, None]
    try:
        return Subscription(activity_code=d["activity_code"], endpoint=d["endpoint"],
                            description=d.get("description", ""), enabled=bool(d.get("enabled", True)),
                            writeback_code1=codes[0], writeback_code2=codes[1])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"subscription {d!r}: missing {exc}") from None


@dataclass
class ConfigFile:
    endpoints: list[Endpoint]
    subscriptions: list[Subscription]

    def records(self) -> list[tuple[str, bytes]]:
        """The ``activity.config`` records for this file: endpoints first, then subscriptions."""
        out = [(e.key(), json.dumps(asdict(e)).encode()) for e in self.endpoints]
        for s in self.subscriptions:
            d = asdict(s)
            d["writeback_codes"] = [d.pop("writeback_code1"), d.pop("writeback_code2")]
            out.append((s.key(), json.dumps(d).encode()))
        return out


def parse_config(doc: dict, catalog: Catalog) -> ConfigFile:
    """Validate a config document entirely (every template against the catalog) before it is used."""
    if not isinstance(doc, dict):
        raise ConfigError("config must be a mapping with endpoints: and subscriptions:")
    eps = [check_endpoint(endpoint_from_dict(e)) for e in doc.get("endpoints") or []]
    names = [e.name for e in eps]
    if len(set(names)) != len(names):
        raise ConfigError("endpoint names must be unique")
    subs = []
    for d in doc.get("subscriptions") or []:
        sub = subscription_from_dict(d)
        if sub.endpoint not in names:
            raise ConfigError(f"subscription {sub.activity_code} names unknown endpoint {sub.endpoint!r}")
        check_subscription(sub, catalog)
        subs.append(sub)
    return ConfigFile(eps, subs)


def read_config_file(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text()) or {}
