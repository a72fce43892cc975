"""The route index every worker keeps: activity code -> the enabled subscriptions of enabled
endpoints, their templates compiled, rebuilt on each ``activity.config`` change.

Records are parsed by :mod:`core.config` (the one parser); a record that cannot be applied is
refused with its reason kept in ``refused``, and the previous state stays in force.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .catalog import Catalog
from .config import (ALL_TENANTS, ConfigError, Endpoint, Subscription, Tenant, activity_code_from_dict,
                     check_subscription, endpoint_from_dict, subscription_from_dict, tenant_from_dict)
from .templates import Template


@dataclass(frozen=True)
class Route:
    """One enabled subscription on an enabled endpoint, its template compiled."""

    endpoint: str
    provider_type: str
    template: Template
    writeback_code1: str | None
    writeback_code2: str | None
    tenants: frozenset[str] | None  # None: every tenant


class Routing:
    """The route index the enrich agent reads: activity code -> routes, rebuilt on each change."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.endpoints: dict[str, Endpoint] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.tenant_settings: dict[str, Tenant] = {}  # tenant code -> its own settings (``tenants:``)
        self._templates: dict[str, Template] = {}
        self._index: dict[str, tuple[Route, ...]] = {}
        self.refused: dict[str, str] = {}  # config key -> why its latest record was refused
        self.version = 0                   # bumped by every change
        self._tenants: tuple[int, frozenset[str]] = (-1, frozenset())

    def tenants(self) -> frozenset[str]:
        """The tenant codes the endpoints name (``*`` aside): the label values a metric may take from
        input, the rest being ``_other`` (core.metrics)."""
        if self._tenants[0] != self.version:
            self._tenants = (self.version, frozenset(t for ep in self.endpoints.values() for t in ep.tenants
                                                     if t != ALL_TENANTS))
        return self._tenants[1]

    def routes(self, code: str, tenant: str | None = None) -> tuple[Route, ...]:
        """The routes of an activity code; with ``tenant``, only those of endpoints serving that tenant."""
        routes = self._index.get(code, ())
        if tenant is None:
            return routes
        return tuple(r for r in routes if r.tenants is None or tenant in r.tenants)

    def tenant(self, code: str) -> Tenant:
        """A tenant's settings (the defaults for a tenant the config does not name)."""
        return self.tenant_settings.get(code) or Tenant(code)

    def put_endpoint(self, ep: Endpoint) -> None:
        self.endpoints[ep.name] = ep
        self._rebuild()

    def put_subscription(self, sub: Subscription) -> None:
        self._templates[sub.key()] = check_subscription(sub, self.catalog)
        self.subscriptions[sub.key()] = sub
        self._rebuild()

    def delete(self, key: str) -> None:
        if key.startswith("endpoint:"):
            self.endpoints.pop(key.split(":", 1)[1], None)
        elif key.startswith("tenant:"):
            self.tenant_settings.pop(key.split(":", 1)[1], None)
        elif key.startswith("activity:"):
            self.catalog.undefine(key.split(":", 1)[1])
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
            elif key.startswith("tenant:"):
                tenant = tenant_from_dict(data)
                if tenant.key() != key:
                    raise ConfigError(f"record {key!r} holds tenant {tenant.code!r}")
                self.tenant_settings[tenant.code] = tenant
                self.version += 1
            elif key.startswith("activity:"):
                code, spec = activity_code_from_dict(data, self.catalog)
                if f"activity:{code}" != key:
                    raise ConfigError(f"record {key!r} holds activity code {code!r}")
                self.catalog.define(code, spec)
                self.version += 1
            elif key.startswith(("source:", "anmc:", "scoring:", "list:", "occ:")):
                pass  # a polling source's (sources.runner reads it), a sync's (streams.anmc), a list's (streams.lists)
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
