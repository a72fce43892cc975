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


ALL_TENANTS = "*"


@dataclass(frozen=True)
class Endpoint:
    name: str
    provider_type: str = "membership"
    provider: str = "webhook"
    enabled: bool = True
    settings: dict = field(default_factory=dict)
    #: the tenants (TenantCode) whose activities it receives; ("*",) for every tenant. Empty: none.
    tenants: tuple[str, ...] = ()

    def key(self) -> str:
        return f"endpoint:{self.name}"

    def serves(self, tenant: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant in self.tenants


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
    tenants: frozenset[str] | None  # None: every tenant


def check_endpoint(ep: Endpoint) -> Endpoint:
    if not isinstance(ep.name, str) or not _NAME.fullmatch(ep.name):
        raise ConfigError(f"endpoint name {ep.name!r}: letters, digits, '_', '.', '-' (at most 100)")
    if not isinstance(ep.provider, str) or not _NAME.fullmatch(ep.provider):
        raise ConfigError(f"endpoint {ep.name}: provider must name a provider (activity-sync providers lists them)")
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
        self.refused: dict[str, str] = {}  # config key -> why its latest record was refused
        self.version = 0                   # bumped by every change

    def routes(self, code: str, tenant: str | None = None) -> tuple[Route, ...]:
        """The routes of an activity code; with ``tenant``, only those of endpoints serving that tenant."""
        routes = self._index.get(code, ())
        if tenant is None:
            return routes
        return tuple(r for r in routes if r.tenants is None or tenant in r.tenants)

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
        """Apply one ``activity.config`` record (``None`` value: tombstone).

        A record that cannot be applied raises, and the key's reason is kept in ``refused`` (the
        previous state stays in force) so a worker can say why in one line.
        """
        try:
            self.refused.pop(key, None)
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
        except Exception as exc:
            self.refused[key] = f"{type(exc).__name__}: {exc}"
            raise

    def _rebuild(self) -> None:
        self.version += 1
        index: dict[str, list[Route]] = {}
        for key, sub in sorted(self.subscriptions.items()):
            ep = self.endpoints.get(sub.endpoint)
            if not sub.enabled or ep is None or not ep.enabled:
                continue
            index.setdefault(sub.activity_code, []).append(
                Route(ep.name, ep.provider_type, self._templates[key], sub.writeback_code1, sub.writeback_code2,
                      None if ALL_TENANTS in ep.tenants else frozenset(ep.tenants)))
        self._index = {k: tuple(v) for k, v in index.items()}


def endpoint_from_dict(d: dict) -> Endpoint:
    if not isinstance(d, dict):
        raise ConfigError(f"an endpoint must be a mapping, not {type(d).__name__}")
    if "name" not in d:
        raise ConfigError("endpoint: name is required")
    settings = d.get("settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"endpoint {d['name']}: settings must be a mapping")
    settings = dict(settings)
    ptype = d.get("provider_type", "membership")
    provider = d.get("provider")
    if provider is None and "sink" in settings:  # written before the provider had a field of its own
        provider = settings.pop("sink")
    if provider is None:
        if ptype != "activity-history":
            raise ConfigError(f"endpoint {d['name']}: provider is required (activity-sync providers lists them)")
        provider = "activity-history"
    enabled = d.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"endpoint {d['name']}: enabled must be true or false")
    unknown = set(d) - {"name", "provider_type", "provider", "enabled", "settings", "tenant", "tenants"}
    if unknown:
        raise ConfigError(f"endpoint {d['name']}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    return Endpoint(name=d["name"], provider_type=ptype, provider=provider, enabled=enabled, settings=settings,
                    tenants=parse_tenants(d))


def parse_tenants(d: dict) -> tuple[str, ...]:
    """``tenant: HUG``, ``tenant: [HUG, ACME]`` or ``tenant: "*"`` (every tenant); required, no silent default."""
    value = d.get("tenants", d.get("tenant"))
    if value is None:
        raise ConfigError(f'endpoint {d["name"]}: tenant is required: the TenantCode whose activities it receives, '
                          f'a list of them, or "*" for every tenant (a single-organisation deployment)')
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"endpoint {d['name']}: tenant must be a tenant code, a non-empty list of them, or \"*\"")
    if any(len(v) > 100 for v in values):
        raise ConfigError(f"endpoint {d['name']}: a tenant code is at most 100 characters")
    if ALL_TENANTS in values and len(values) > 1:
        raise ConfigError(f'endpoint {d["name"]}: tenant "*" (every tenant) stands alone, not in a list')
    return tuple(dict.fromkeys(v.strip() for v in values))


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


MAX_CONFIG_BYTES = 4 * 1024 * 1024


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML without anchors, aliases or explicit tags: a config is plain data, and an alias
    bomb ("billion laughs") must not pass a check and then exhaust a worker's memory."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML anchors (&{anchor}) are not allowed")
        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and not (isinstance(event, yaml.ScalarEvent) and event.implicit[0]):
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML tags ({tag}) are not allowed")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        keys = set()
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode):
                if k.value in keys:
                    raise ConfigError(f"line {k.start_mark.line + 1}: duplicate key {k.value!r}")
                keys.add(k.value)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> dict:
    """A config document from YAML text: a mapping of plain data, or ConfigError saying why not."""
    if len(text.encode()) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB")
    try:
        doc = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}".replace("\n", " ")) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"must be a mapping with endpoints: and subscriptions:, not {type(doc).__name__}")
    return doc


def read_config_file(path: str | Path) -> dict:
    """Read and parse a config file; ConfigError names the file and what is wrong with it."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB")
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    try:
        return load_yaml(text)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


def catalog_for(settings) -> Catalog:
    """The catalog with a config file's additions (``catalog:``, ``customer_keys:``), if one is named."""
    from .catalog import load_catalog

    if settings.config_path:
        doc = read_config_file(settings.config_path)
        return load_catalog(doc.get("catalog"), doc.get("customer_keys"))
    return load_catalog()
