"""Endpoints and subscriptions: the config model and its one parser.

They live in the compacted ``activity.config`` topic as JSON records keyed ``endpoint:<name>`` and
``subscription:<code>:<endpoint>``; a tombstone deletes one. ``load-config`` reads them from a YAML
file, the admin API from JSON bodies, every worker from the topic: all three go through the
functions here, so a record is accepted or refused the same way wherever it comes from.

The parser is strict. A value of the wrong type is refused, never coerced (``enabled: "false"``
is not a boolean, ``writeback_codes: COMMUNITY`` is not a list, ``batch_size: true`` is not a
number); unknown fields are refused; nesting and numbers are bounded. Each :class:`ConfigError`
carries the field it is about as data (``field``), so the admin API names it without reading the
message. Pure: nothing here talks to Kafka. A provider's own settings are checked by its model
(:func:`sinks.registry.parse_endpoint`), the second step every caller takes.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .catalog import Catalog, load_catalog
from .secrets import find_inline_secrets, secret_value
from .templates import Template, TemplateError, compile_template

PROVIDER_TYPES = ("membership", "activity-history")
ALL_TENANTS = "*"
#: the description a subscription gets when none is given (the activity's own description)
DEFAULT_DESCRIPTION = "{ActivityDescription}"
WRITEBACK_CODE_MAX = 100
TENANT_CODE_MAX = 100
ENDPOINT_FIELDS = frozenset({"name", "provider_type", "provider", "enabled", "settings", "tenant", "tenants"})
SUBSCRIPTION_FIELDS = frozenset({"activity_code", "endpoint", "description", "enabled", "writeback_codes",
                                 "writeback_code1", "writeback_code2"})
DOCUMENT_FIELDS = frozenset({"endpoints", "subscriptions", "catalog", "customer_keys", "tenants", "sources", "anmc", "scoring", "lists"})
SOURCE_FIELDS = frozenset({"name", "kind", "enabled", "tenant", "settings"})
TENANT_FIELDS = frozenset({"code", "community_essentials", "resolve_by"})
#: how the stream stage may find an activity's member in the Push API directory, in the tenant's order
RESOLVE_BY = ("contact_key", "email", "phone")
MAX_DEPTH = 32            # nesting of a config document (settings included)
MAX_INT = 2 ** 53         # the largest whole number a config may hold (what JSON readers carry exactly)
MAX_CONFIG_BYTES = 4 * 1024 * 1024

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NAME_RULE = "letters, digits, '_', '.', '-' (at most 100), starting with a letter or digit"


class ConfigError(ValueError):
    """A config that cannot be used; ``field`` names the field it is about (``name``, ``enabled``,
    ``settings.batch_size``, …) where there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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

    def record(self) -> dict:
        """The ``activity.config`` record's value (plain JSON data)."""
        d = asdict(self)
        d["tenants"] = list(self.tenants)
        return d


@dataclass(frozen=True)
class Subscription:
    activity_code: str
    endpoint: str
    description: str = DEFAULT_DESCRIPTION
    enabled: bool = True
    writeback_code1: str | None = None
    writeback_code2: str | None = None

    def key(self) -> str:
        return f"subscription:{self.activity_code}:{self.endpoint}"

    def record(self) -> dict:
        """The ``activity.config`` record's value (plain JSON data)."""
        d = asdict(self)
        d["writeback_codes"] = [d.pop("writeback_code1"), d.pop("writeback_code2")]
        return d


@dataclass(frozen=True)
class Tenant:
    """A tenant's own settings (``tenants:`` in a config document, ``tenant:<code>`` on the topic).

    ``community_essentials``: the Push API refuses what Community Essentials does not support (lists,
    demographics, job history, education, orders) and stores every group as a security group.
    ``resolve_by``: when an activity carries no customer ID, the stream stage looks its member up in
    the Push API directory by these, in this order (empty: no look-up).
    """

    code: str
    community_essentials: bool = False
    resolve_by: tuple[str, ...] = RESOLVE_BY

    def key(self) -> str:
        return f"tenant:{self.code}"

    def record(self) -> dict:
        return {"code": self.code, "community_essentials": self.community_essentials,
                "resolve_by": list(self.resolve_by)}


@dataclass(frozen=True)
class Source:
    """A polling source (``sources:`` in a config document, ``source:<name>`` on the topic): what brings
    a vendor's records into ``activity.raw``. ``kind`` names the package in ``sources/`` (``alida``);
    ``tenant`` is the TenantCode its activities carry; ``settings`` are checked by the kind's model
    (:func:`sources.registry.parse_source`, the second step every caller takes)."""

    name: str
    kind: str
    tenant: str
    enabled: bool = True
    settings: dict = field(default_factory=dict)

    def key(self) -> str:
        return f"source:{self.name}"

    def record(self) -> dict:
        return asdict(self)


def source_from_dict(d: dict) -> Source:
    if not isinstance(d, dict):
        raise ConfigError(f"a source must be a mapping, not {_kind(d)}")
    name = _text(d, "name", "source", required=True)
    if not NAME.fullmatch(name):
        raise ConfigError(f"source name {name!r}: {NAME_RULE}", "name")
    where = f"source {name}"
    _unknown(d, SOURCE_FIELDS, where)
    kind = _text(d, "kind", where, required=True)
    if not NAME.fullmatch(kind):
        raise ConfigError(f"{where}: kind must name a source kind (activity-sync sources lists them)", "kind")
    tenant = _text(d, "tenant", where, required=True)
    if not tenant or len(tenant) > TENANT_CODE_MAX or tenant == ALL_TENANTS:
        raise ConfigError(f"{where}: tenant must be one tenant code (the TenantCode its activities carry), "
                          f"1 to {TENANT_CODE_MAX} characters", "tenant")
    settings = d.get("settings", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: settings must be a mapping, not {_kind(settings)}", "settings")
    for path, what in find_inline_secrets(settings):
        raise ConfigError(f"{where}: {path} looks like a secret: {what}", path)
    return Source(name, kind, tenant, _flag(d, "enabled", where), settings)


def tenant_from_dict(d: dict) -> Tenant:
    """A tenant's settings, strictly: ``code`` required, ``community_essentials`` a boolean,
    ``resolve_by`` a list of ``contact_key``, ``email``, ``phone`` without repeats."""
    if not isinstance(d, dict):
        raise ConfigError(f"a tenant must be a mapping, not {_kind(d)}")
    check_plain(d, "tenant")
    code = _text(d, "code", "tenant", required=True)
    where = f"tenant {code}"
    if not code.strip() or len(code) > TENANT_CODE_MAX or code == ALL_TENANTS:
        raise ConfigError(f"{where}: code must be a tenant code of 1 to {TENANT_CODE_MAX} characters", "code")
    _unknown(d, TENANT_FIELDS, where)
    essentials = d.get("community_essentials", False)
    if not isinstance(essentials, bool):
        raise ConfigError(f"{where}: community_essentials must be true or false, not {_kind(essentials)}",
                          "community_essentials")
    by = d.get("resolve_by", list(RESOLVE_BY))
    if not isinstance(by, list) or any(not isinstance(b, str) or b not in RESOLVE_BY for b in by) \
            or len(set(by)) != len(by):
        raise ConfigError(f"{where}: resolve_by must be a list of {', '.join(RESOLVE_BY)} (each at most once)",
                          "resolve_by")
    return Tenant(code, essentials, tuple(by))


# ----------------------------------------------------------------------------- plain data

def check_plain(value, where: str = "config", depth: int = 0) -> None:
    """Bounded plain data: nesting at most :data:`MAX_DEPTH`, whole numbers at most :data:`MAX_INT`,
    finite numbers, text keys."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels", where)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: key {k!r} is not text", where)
            check_plain(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ConfigError(f"{where}: {str(value)[:20]}… is larger than {MAX_INT}", where)
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: not a finite number", where)
    else:
        raise ConfigError(f"{where}: {type(value).__name__} is not plain data", where)


def _text(d: dict, key: str, where: str, *, required: bool = False, default: str | None = None) -> str | None:
    v = d.get(key, default)
    if v is None:
        if required:
            raise ConfigError(f"{where}: {key} is required", key)
        return None
    if not isinstance(v, str):
        raise ConfigError(f"{where}: {key} must be text, not {_kind(v)}", key)
    return v


def _flag(d: dict, key: str, where: str) -> bool:
    v = d.get(key, True)
    if not isinstance(v, bool):
        raise ConfigError(f"{where}: {key} must be true or false, not {_kind(v)}", key)
    return v


def _kind(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return f"the text {v[:40]!r}"
    return {dict: "a mapping", list: "a list", int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _unknown(d: dict, allowed: frozenset, where: str) -> None:
    unknown = sorted(map(str, set(d) - allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}", unknown[0])


# ----------------------------------------------------------------------------- endpoints

def endpoint_from_dict(d: dict) -> Endpoint:
    """An endpoint from plain data (a YAML entry, an admin body, an ``activity.config`` record),
    checked: name, provider, provider type, enabled, settings (a mapping, no inline secret) and
    tenants. The provider's own settings model is the caller's second step."""
    if not isinstance(d, dict):
        raise ConfigError(f"an endpoint must be a mapping, not {_kind(d)}")
    name = d.get("name")
    if name is None or name == "":
        raise ConfigError("endpoint: name is required", "name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"endpoint name {name!r}: {NAME_RULE}", "name")
    where = f"endpoint {name}"
    check_plain(d, where)
    settings = d.get("settings")
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: settings must be a mapping, not {_kind(settings)}", "settings")
    settings = dict(settings)
    ptype = _text(d, "provider_type", where, default="membership")
    if ptype not in PROVIDER_TYPES:
        raise ConfigError(f"{where}: provider_type must be one of {', '.join(PROVIDER_TYPES)}, not {ptype!r}",
                          "provider_type")
    provider = d.get("provider")
    if provider is None and "sink" in settings:  # written before the provider had a field of its own
        provider = settings.pop("sink")
    if provider is None:
        if ptype != "activity-history":
            raise ConfigError(f"{where}: provider is required (activity-sync providers lists them)", "provider")
        provider = "activity-history"
    if not isinstance(provider, str) or not NAME.fullmatch(provider):
        raise ConfigError(f"{where}: provider must name a provider (activity-sync providers lists them)", "provider")
    enabled = _flag(d, "enabled", where)
    _unknown(d, ENDPOINT_FIELDS, where)
    secrets = find_inline_secrets(settings)
    if secrets:
        path, what = secrets[0]
        raise ConfigError(f"{where}: {path} looks like a secret: {what}", path)
    return Endpoint(name=name, provider_type=ptype, provider=provider, enabled=enabled, settings=settings,
                    tenants=parse_tenants(d))


def parse_tenants(d: dict) -> tuple[str, ...]:
    """``tenant: HUG``, ``tenant: [HUG, ACME]`` or ``tenant: "*"`` (every tenant); required, no silent default."""
    name = d.get("name")
    value = d.get("tenants", d.get("tenant"))
    if value is None:
        raise ConfigError(f'endpoint {name}: tenant is required: the TenantCode whose activities it receives, '
                          f'a list of them, or "*" for every tenant (a single-organisation deployment)', "tenant")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise ConfigError(f"endpoint {name}: tenant must be a tenant code, a non-empty list of them, or \"*\"",
                          "tenant")
    if any(len(v) > TENANT_CODE_MAX for v in values):
        raise ConfigError(f"endpoint {name}: a tenant code is at most {TENANT_CODE_MAX} characters", "tenant")
    if ALL_TENANTS in values and len(values) > 1:
        raise ConfigError(f'endpoint {name}: tenant "*" (every tenant) stands alone, not in a list', "tenant")
    return tuple(dict.fromkeys(v.strip() for v in values))


# ----------------------------------------------------------------------------- subscriptions

def subscription_from_dict(d: dict, writeback_max: int = WRITEBACK_CODE_MAX) -> Subscription:
    """A subscription from plain data, its types checked (its template is checked by
    :func:`check_subscription`, against the catalog)."""
    if not isinstance(d, dict):
        raise ConfigError(f"a subscription must be a mapping, not {_kind(d)}")
    code = d.get("activity_code")
    if not isinstance(code, str) or not code:
        raise ConfigError("subscription: activity_code is required (text)", "activity_code")
    endpoint = d.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigError(f"subscription {code}: endpoint is required (the endpoint's name)", "endpoint")
    where = f"subscription {code} -> {endpoint}"
    check_plain(d, where)
    _unknown(d, SUBSCRIPTION_FIELDS, where)
    description = _text(d, "description", where, default=DEFAULT_DESCRIPTION)
    enabled = _flag(d, "enabled", where)
    if "writeback_codes" in d and d["writeback_codes"] is not None:
        codes = d["writeback_codes"]
        if not isinstance(codes, list) or len(codes) > 2:
            raise ConfigError(f"{where}: writeback_codes must be a list of at most two codes, not {_kind(codes)}",
                              "writeback_codes")
        codes = list(codes) + [None, None]
        names = ("writeback_codes", "writeback_codes")
    else:
        codes = [d.get("writeback_code1"), d.get("writeback_code2")]
        names = ("writeback_code1", "writeback_code2")
    for i, n in enumerate(names):
        v = codes[i]
        if v == "":
            codes[i] = None
        elif v is not None and not isinstance(v, str):
            raise ConfigError(f"{where}: a write-back code must be text, not {_kind(v)}",
                              n if n != "writeback_codes" else f"writeback_code{i + 1}")
        elif isinstance(v, str) and len(v) > writeback_max:
            raise ConfigError(f"{where}: writeback_code{i + 1}: {len(v)} characters, at most {writeback_max}",
                              f"writeback_code{i + 1}")
    return Subscription(activity_code=code, endpoint=endpoint, description=description, enabled=enabled,
                        writeback_code1=codes[0], writeback_code2=codes[1])


def check_subscription(sub: Subscription, catalog: Catalog) -> Template:
    """Validate a subscription's template against the catalog; answer it compiled. A template holding
    what looks like a credential (``Bearer …``) is refused like a secret in settings."""
    where = f"description of {sub.activity_code} -> {sub.endpoint}"
    found = secret_value(where, sub.description)
    if found:
        raise ConfigError(f"{where}: looks like {found[0][1]}", "description")
    try:
        return compile_template(sub.description, catalog.known_properties(sub.activity_code),
                                catalog.aliases(sub.activity_code), where=where)
    except TemplateError as exc:
        raise ConfigError(str(exc), "description") from None


# ----------------------------------------------------------------------------- documents

@dataclass
class ConfigFile:
    endpoints: list[Endpoint]
    subscriptions: list[Subscription]
    tenants: list[Tenant] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    syncs: list = field(default_factory=list)  # core.anmc.SyncSettings
    scoring: list = field(default_factory=list)  # core.scoring.ScoringModel
    lists: list = field(default_factory=list)  # core.lists.ListDef

    def records(self) -> list[tuple[str, bytes]]:
        """The ``activity.config`` records for this file: tenants, endpoints, subscriptions, sources, syncs,
        scoring models."""
        return [(x.key(), json.dumps(x.record()).encode())
                for x in [*self.tenants, *self.endpoints, *self.subscriptions, *self.sources, *self.syncs,
                          *self.scoring, *self.lists]]


def _entries(doc: dict, key: str) -> list:
    v = doc.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ConfigError(f"{key} must be a list, not {_kind(v)}", key)
    return v


def parse_config(doc: dict, catalog: Catalog | None = None) -> ConfigFile:
    """Validate a config document entirely (every template against the catalog) before it is used.
    Without ``catalog``, the bundled one with the document's own additions."""
    if not isinstance(doc, dict):
        raise ConfigError(f"config must be a mapping with endpoints: and subscriptions:, not {_kind(doc)}")
    check_plain(doc)
    _unknown(doc, DOCUMENT_FIELDS, "config")
    if catalog is None:
        catalog = catalog_of(doc)
    eps = [endpoint_from_dict(e) for e in _entries(doc, "endpoints")]
    names = [e.name for e in eps]
    if len(set(names)) != len(names):
        raise ConfigError("endpoint names must be unique", "name")
    subs = []
    for d in _entries(doc, "subscriptions"):
        sub = subscription_from_dict(d)
        if sub.endpoint not in names:
            raise ConfigError(f"subscription {sub.activity_code} names unknown endpoint {sub.endpoint!r}", "endpoint")
        check_subscription(sub, catalog)
        subs.append(sub)
    tenants = [tenant_from_dict(t) for t in _entries(doc, "tenants")]
    codes = [t.code for t in tenants]
    if len(set(codes)) != len(codes):
        raise ConfigError("tenant codes must be unique", "code")
    sources = [source_from_dict(x) for x in _entries(doc, "sources")]
    names = [x.name for x in sources]
    if len(set(names)) != len(names):
        raise ConfigError("source names must be unique", "name")
    syncs = [sync_from_dict(x, eps, sources) for x in _entries(doc, "anmc")]
    if len({x.name for x in syncs}) != len(syncs):
        raise ConfigError("anmc sync names must be unique", "name")
    have = {s.key() for s in subs}
    for sync in syncs:  # a sync's deliveries are routed to its endpoints by subscriptions of its own
        for sub in sync_subscriptions(sync):
            if sub.key() not in have:
                subs.append(sub)
                have.add(sub.key())
    from .scoring import ScoringError, parse_model

    scoring = []
    for x in _entries(doc, "scoring"):
        try:
            scoring.append(parse_model(x))
        except ScoringError as exc:
            raise ConfigError(str(exc), exc.field) from None
    if len({m.tenant for m in scoring}) != len(scoring):
        raise ConfigError("one scoring model per tenant", "tenant")
    lists = [list_from_dict(x, catalog) for x in _entries(doc, "lists")]
    if len({x.key() for x in lists}) != len(lists):
        raise ConfigError("list ids must be unique per tenant (an id defaults to the name's slug)", "id")
    if not eps and not subs and not tenants and not sources and not scoring and not lists:
        raise ConfigError("holds no endpoints and no subscriptions (a config has endpoints: and subscriptions:)")
    return ConfigFile(eps, subs, tenants, sources, syncs, scoring, lists)


ACTIVITY_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{1,63}$")
PROPERTY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
ACTIVITY_FIELDS = ("code", "category", "customer_key", "properties", "object", "description")
MAX_PROPERTIES = 200


def activity_code_from_dict(d: dict, catalog: Catalog) -> tuple[str, dict]:
    """An activity code defined on the admin page or API (an ``activity:<code>`` record): its name,
    category, who the activity is about (``customer_key``: the properties to read the member's
    customer ID from, first present wins), its properties (the merge variables), optionally an
    ``object`` of the catalog, and a default description (a template over those properties).
    Answers ``(code, spec)``, the spec as :meth:`core.catalog.Catalog.define` takes it."""
    if not isinstance(d, dict):
        raise ConfigError("an activity code must be a mapping")
    unknown = sorted(set(d) - set(ACTIVITY_FIELDS))
    if unknown:
        raise ConfigError(f"activity code: unknown field {unknown[0]!r} (fields: {', '.join(ACTIVITY_FIELDS)})",
                          unknown[0])
    code = d.get("code")
    if not isinstance(code, str) or not ACTIVITY_CODE.match(code):
        raise ConfigError("code: a letter, then letters, digits or _ (2 to 64 characters), e.g. WebinarAttend",
                          "code")
    category = d.get("category")
    if category not in catalog.categories:
        raise ConfigError(f"category: {category!r} is not a category of the catalog (one of "
                          f"{', '.join(catalog.categories)})", "category")
    spec: dict = {"code": code, "category": category}
    for name in ("customer_key", "properties"):
        v = d.get(name)
        if v in (None, [], ""):
            continue
        if isinstance(v, str):
            v = [x.strip() for x in v.split(",") if x.strip()]
        if not isinstance(v, list) or not all(isinstance(x, str) and PROPERTY_NAME.match(x) for x in v):
            raise ConfigError(f"{name}: a list of property names (letters, digits, _)", name)
        if len(v) > MAX_PROPERTIES:
            raise ConfigError(f"{name}: at most {MAX_PROPERTIES} properties", name)
        spec[name] = list(dict.fromkeys(v))
    if d.get("object") not in (None, ""):
        if d["object"] not in catalog.objects:
            raise ConfigError(f"object: {d['object']!r} is not an object of the catalog", "object")
        spec["object"] = d["object"]
    try:
        info = catalog.build(code, spec)
    except ValueError as exc:
        raise ConfigError(str(exc), "category") from None
    description = d.get("description")
    if description not in (None, ""):
        known = info.properties if info.properties is not None else catalog.common_properties
        try:
            compile_template(description, known, info.aliases, where="description")
        except TemplateError as exc:
            raise ConfigError(str(exc), "description") from None
        spec["description"] = description
    return code, spec


def list_from_dict(d: dict, catalog: Catalog | None = None):
    """A community list (``lists:``, :mod:`core.lists`); with ``catalog``, its codes and categories must exist."""
    from .lists import ListError, parse_list

    try:
        lst = parse_list(d)
    except ListError as exc:
        raise ConfigError(str(exc), exc.field) from None
    if catalog is not None:
        unknown = [c for c in sorted(codes_of(lst.raw, "codes")) if c not in catalog.codes]
        unknown_cats = [c for c in sorted(codes_of(lst.raw, "categories")) if c not in catalog.categories]
        if unknown or unknown_cats:
            what = ", ".join([f"code {c}" for c in unknown] + [f"category {c}" for c in unknown_cats])
            raise ConfigError(f"list {lst.name}: unknown {what} (the admin page's Activities tab lists them; `catalog:` adds codes)", "criteria")
    return lst


def codes_of(criteria, kind: str) -> set[str]:
    """Every name under ``kind`` (``codes`` or ``categories``) anywhere in a list's criteria."""
    out: set[str] = set()
    if isinstance(criteria, dict):
        for k, v in criteria.items():
            if k == kind and isinstance(v, list):
                out |= {x for x in v if isinstance(x, str)}
            else:
                out |= codes_of(v, kind)
    elif isinstance(criteria, list):
        for x in criteria:
            out |= codes_of(x, kind)
    return out


def sync_from_dict(d: dict, endpoints: list[Endpoint], sources: list[Source]):
    """An Action Network <-> Mobile Commons sync (``anmc:``): its settings (:mod:`core.anmc`), and the
    sources and endpoints it names, of the right kinds, serving its tenant."""
    from .anmc import SyncError, parse_sync

    try:
        sync = parse_sync(d)
    except SyncError as exc:
        raise ConfigError(str(exc), exc.field) from None
    where = f"anmc {sync.name}"
    eps = {e.name: e for e in endpoints}
    srcs = {x.name: x for x in sources}
    for fld, name, kind in (("action_network_source", sync.action_network_source, "actionnetwork"),
                            ("mobile_commons_source", sync.mobile_commons_source, "mobilecommons")):
        if name not in srcs or srcs[name].kind != kind:
            raise ConfigError(f"{where}: {fld} must name a source of kind {kind} in this config", fld)
    for fld, name, provider in (("action_network_endpoint", sync.action_network_endpoint, "actionnetwork"),
                                ("mobile_commons_endpoint", sync.mobile_commons_endpoint, "mobilecommons")):
        if name not in eps or eps[name].provider != provider:
            raise ConfigError(f"{where}: {fld} must name an endpoint of provider {provider} in this config", fld)
        if not eps[name].serves(sync.tenant):
            raise ConfigError(f"{where}: endpoint {name} does not serve tenant {sync.tenant}", fld)
    return sync


def sync_subscriptions(sync) -> list[Subscription]:
    from .anmc import AN_UPDATE, AN_UPSERT, MC_UPDATE

    return [Subscription(MC_UPDATE, sync.mobile_commons_endpoint), Subscription(AN_UPSERT, sync.action_network_endpoint),
            Subscription(AN_UPDATE, sync.action_network_endpoint)]


def catalog_of(doc: dict) -> Catalog:
    """The bundled catalog with a config document's additions (``catalog:``, ``customer_keys:``)."""
    extra, keys = doc.get("catalog"), doc.get("customer_keys")
    for what, v in (("catalog", extra), ("customer_keys", keys)):
        if v is not None and not isinstance(v, dict):
            raise ConfigError(f"{what} must be a mapping, not {_kind(v)}", what)
    try:
        return load_catalog(extra, keys)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"catalog: {exc}", "catalog") from None


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML without anchors, aliases or explicit tags, nested at most :data:`MAX_DEPTH` deep: a
    config is plain data, and an alias bomb ("billion laughs") or a document nested thousands deep
    must not pass a check and then exhaust a worker's memory or stack."""

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
        depth = getattr(self, "_depth", 0)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if depth >= MAX_DEPTH:
                raise ConfigError(f"line {event.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
            self._depth = depth + 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth = depth
        if isinstance(event, yaml.ScalarEvent) and event.implicit[0] and len(event.value) > 40 \
                and event.value.lstrip("+-").replace("_", "").isdigit():
            raise ConfigError(f"line {event.start_mark.line + 1}: the number {event.value[:20]}… is too large")
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
    except RecursionError:
        raise ConfigError(f"nested deeper than {MAX_DEPTH} levels") from None
    if doc is None:
        raise ConfigError("is empty: a config is a mapping with endpoints: and subscriptions:")
    if not isinstance(doc, dict):
        raise ConfigError(f"must be a mapping with endpoints: and subscriptions:, not {_kind(doc)}")
    check_plain(doc)
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
        raise ConfigError(f"{p}: {exc}", exc.field) from None


def catalog_for(settings) -> Catalog:
    """The catalog with a config file's additions (``catalog:``, ``customer_keys:``), if one is named."""
    if settings.config_path:
        return catalog_of(read_config_file(settings.config_path))
    return load_catalog()
