"""Providers by name, registered by import path, and the one path that parses an endpoint's settings.

A provider's sink module is imported only when an endpoint uses it, so its optional dependency
(a SOAP library, a PostgreSQL driver) is needed only there; its settings module imports nothing
optional, so ``load-config``, ``activity-sync providers`` and the admin API can read every
provider's settings without any of those libraries.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from pydantic import ValidationError

from .settings import EndpointSettings, describe_errors, find_inline_secrets


class SettingsError(ValueError):
    """An endpoint's provider or settings cannot be used; the message names endpoint and field."""


class ProviderUnavailable(SettingsError):
    """The provider's optional dependency is not installed."""


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    summary: str
    settings: str                       # "module:Class" of its EndpointSettings model
    sink: str                           # "module:Class" of its Sink
    fake: str | None = None             # "module:Class" of its fake server, if it has one
    extra: str | None = None            # the pip extra that brings its dependencies
    provider_types: tuple[str, ...] = ("membership",)


PROVIDERS: dict[str, ProviderSpec] = {p.name: p for p in [
    ProviderSpec("webhook", "JSON batch POST, HMAC-signed, an idempotency key per activity",
                 "sinks.providers.webhook.settings:WebhookSettings", "sinks.providers.webhook.sink:WebhookSink",
                 "sinks.providers.webhook.fake:FakeCRM"),
    ProviderSpec("salesforce", "Salesforce (Fonteva, Nimble AMS): idempotent upsert through sObject Collections, "
                               "200 a call, OAuth client credentials or JWT bearer",
                 "sinks.providers.salesforce.settings:SalesforceSettings",
                 "sinks.providers.salesforce.sink:SalesforceSink",
                 "sinks.providers.salesforce.fake:FakeSalesforce", "salesforce"),
    ProviderSpec("dynamics", "Microsoft Dynamics 365 / Dataverse (Cobalt): upsert by alternate key, "
                             "UpsertMultiple or $batch, Entra ID client credentials (msal)",
                 "sinks.providers.dynamics.settings:DynamicsSettings",
                 "sinks.providers.dynamics.sink:DynamicsSink",
                 "sinks.providers.dynamics.fake:FakeDataverse", "dynamics"),
    ProviderSpec("imis", "iMIS (ASI REST API): one Activity generic entity per request, bounded concurrency, "
                         "a duplicate guard by ActivityKey; password or refresh-token grant",
                 "sinks.providers.imis.settings:ImisSettings", "sinks.providers.imis.sink:ImisSink",
                 "sinks.providers.imis.fake:FakeImis"),
    ProviderSpec("netforum", "netFORUM Enterprise (xWeb SOAP 1.1): InsertFacadeObject of CustomerMessagingActivity "
                             "rows, the rotating token of every answer, SOAP faults classified",
                 "sinks.providers.netforum.settings:NetforumSettings", "sinks.providers.netforum.sink:NetforumSink",
                 "sinks.providers.netforum.fake:FakeNetforum", "netforum"),
    ProviderSpec("ramco", "RAMCO AMS (API v2): CreateEntity form posts, the string delimiter escaped, "
                          "ResponseCode read from the body",
                 "sinks.providers.ramco.settings:RamcoSettings", "sinks.providers.ramco.sink:RamcoSink",
                 "sinks.providers.ramco.fake:FakeRamco"),
    ProviderSpec("aptify", "Aptify (Services API): GenericEntity AddData, one record per request, "
                           "AptifyAuthorization token from the Login endpoint",
                 "sinks.providers.aptify.settings:AptifySettings", "sinks.providers.aptify.sink:AptifySink",
                 "sinks.providers.aptify.fake:FakeAptify"),
    ProviderSpec("personify", "Personify360 (Personify Data Services, OData): Create template then Save of the "
                              "activity entity, HTTP Basic",
                 "sinks.providers.personify.settings:PersonifySettings",
                 "sinks.providers.personify.sink:PersonifySink", "sinks.providers.personify.fake:FakePersonify"),
    ProviderSpec("http", "Configurable HTTP: URL, method, auth, JSON/XML/form body templates, one or a batch a "
                         "request, answer rules; presets for Impexium, MemberSuite, Association Anywhere, "
                         "UX Online, YourMembership and the seed vendor's activity webhook",
                 "sinks.providers.http.settings:HttpSinkSettings", "sinks.providers.http.sink:ConfigurableHttpSink",
                 "sinks.providers.http.fake:FakeReceiver"),
    ProviderSpec("postgresql", "PostgreSQL activity table: batched upsert on (endpoint, activity_key), "
                               "indexes by member, code and date, details as jsonb (asyncpg)",
                 "sinks.providers.postgresql.settings:PostgresSettings",
                 "sinks.providers.postgresql.sink:PostgresSink", None, "postgresql"),
    ProviderSpec("activity-history", "append-only SQLite store, queried with `activity-sync history`",
                 "sinks.providers.activity_history.settings:HistorySettings",
                 "sinks.providers.activity_history.sink:ActivityHistorySink", None, None, ("activity-history",)),
]}


def _load(path: str, spec: ProviderSpec):
    module, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as exc:
        hint = f" (pip install 'activity-sync[{spec.extra}]')" if spec.extra else ""
        raise ProviderUnavailable(f"provider {spec.name} needs {exc.name or exc}{hint}") from None


def spec(name: str) -> ProviderSpec:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise SettingsError(f"unknown provider {name!r}; known: {', '.join(sorted(PROVIDERS))}") from None


def settings_class(name: str) -> type[EndpointSettings]:
    return _load(spec(name).settings, spec(name))


def sink_class(name: str):
    return _load(spec(name).sink, spec(name))


def parse_settings(provider: str, raw: dict, provider_type: str = "membership") -> EndpointSettings:
    """The one parse path: ``raw`` settings to the provider's typed model, or a SettingsError naming each field."""
    s = spec(provider)
    if provider_type not in s.provider_types:
        raise SettingsError(f"provider {provider} is for provider_type {' or '.join(s.provider_types)}, "
                            f"not {provider_type}")
    if not isinstance(raw, dict):
        raise SettingsError("settings must be a mapping")
    problems = [f"{where}: looks like {what}" for where, what in find_inline_secrets(raw)]
    try:
        parsed = settings_class(provider).model_validate(raw)
    except ValidationError as exc:
        problems += [p for p in describe_errors(exc) if p.split(":")[0] not in {q.split(":")[0] for q in problems}]
    if problems:
        raise SettingsError("; ".join(problems))
    return parsed


def parse_endpoint(ep) -> EndpointSettings:
    """An endpoint's settings parsed by its provider's model; SettingsError names the endpoint."""
    try:
        return parse_settings(ep.provider, ep.settings, ep.provider_type)
    except SettingsError as exc:
        raise type(exc)(f"endpoint {ep.name}: {exc}") from None


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
