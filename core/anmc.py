"""The Action Network ↔ Mobile Commons sync: its settings, field mappings and rules. Pure: no Kafka.

Modelled on Upland's "Setting up Action Network" (``../shared/seeds/action-network-mobile-commons.txt``):

- **Settings** (``anmc:`` in a config document, ``anmc:<name>`` on ``activity.config``): the two
  sources that poll Action Network and Mobile Commons, the two endpoints that write to them, the
  default web opt-in path (new subscribers get its welcome message), the source code identifying
  Mobile Commons to Action Network (default ``Mobile Commons``), the Action Network checkbox field
  that marks a constituent as a Mobile Commons subscriber, the Action Network login and where its
  password is, notes, and the field mappings.
- **Field mappings**: each Mobile Commons field ↔ its Action Network API field, with Required?.
  Phone number, email and opt-in status must be mapped and must not be Required (they are required
  by both systems already), nor may the constituent id be; only standard profile fields (custom
  fields are not synced, except the opt-in checkbox); a field name this sync does not know is
  refused, naming it (a wrong name must fail loudly, not sync nothing).
- **Rules**, per person, keyed by mobile number in the identity table (:func:`an_change` for an
  Action Network person the nightly poll read, :func:`mc_change` for a Mobile Commons profile the
  five-minute poll read). Each answers the new identity entry, the raw activities to send (codes
  :data:`MC_UPDATE`, :data:`AN_UPSERT`, :data:`AN_UPDATE`, which the sync's subscriptions route to
  its endpoints) and the report lines. What the sync wrote last to each side is kept in the entry,
  so a change the sync itself made is not sent back when the other poll reads it (no echo).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .settingsmodel import SecretSettings, parse_strict, secret_ref

#: the codes of the sync's deliveries (catalog category "Mobile Sync")
MC_UPDATE = "AnmcProfileUpdate"      # Mobile Commons profile_update (subscribe through the opt-in path, or update)
AN_UPSERT = "AnmcPersonUpsert"       # Action Network person signup helper (create, opt in, opt out)
AN_UPDATE = "AnmcPersonUpdate"       # Action Network PUT people/{id} (the Mobile Commons identifier)
CODES = (MC_UPDATE, AN_UPSERT, AN_UPDATE)

#: Mobile Commons profile fields (profile_update's parameters) the sync knows
MC_FIELDS = ("phone_number", "email", "opt_in_status", "first_name", "last_name", "street1", "street2", "city",
             "state", "postal_code", "country", "constituent_id")
#: Action Network standard person fields (OSDI), as the mappings name them
AN_FIELDS = ("phone_numbers.number", "email_addresses.address", "given_name", "family_name",
             "postal_addresses.address_lines.0", "postal_addresses.address_lines.1", "postal_addresses.locality",
             "postal_addresses.region", "postal_addresses.postal_code", "postal_addresses.country",
             "identifiers.action_network")
ALWAYS = ("phone_number", "email", "opt_in_status")     # required by both systems: mapped, never "Required?"
DEFAULT_MAPPINGS = (
    ("phone_number", "phone_numbers.number"), ("email", "email_addresses.address"),
    ("opt_in_status", "custom_fields.{optin_field}"), ("first_name", "given_name"), ("last_name", "family_name"),
    ("street1", "postal_addresses.address_lines.0"), ("street2", "postal_addresses.address_lines.1"),
    ("city", "postal_addresses.locality"), ("state", "postal_addresses.region"),
    ("postal_code", "postal_addresses.postal_code"), ("country", "postal_addresses.country"),
    ("constituent_id", "identifiers.action_network"),
)
#: what a report line says happened to a profile (the seed's Synchronization report, in our words)
OUTCOMES = ("created", "updated", "subscribed", "opted out", "opted in", "linked", "no difference",
            "missing required field", "no import (missing phone)", "no export (missing email)", "not opted in",
            "no match", "error")
NO_CHANGES = "no new changes"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_CUSTOM = re.compile(r"^[A-Za-z0-9_ -]{1,100}$")


class FieldMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str = Field(description="the Mobile Commons field")
    api_field: str = Field(description="the Action Network API field name")
    required: bool = Field(False, description="sync only records with a value here")


class SyncSettings(SecretSettings):
    """One Action Network ↔ Mobile Commons sync."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str
    tenant: str = Field(min_length=1, max_length=100)
    enabled: bool = Field(True, description="active (false: deactivated, nothing is synced)")
    action_network_source: str = Field(description="the source (kind actionnetwork) that reads Action Network")
    mobile_commons_source: str = Field(description="the source (kind mobilecommons) that reads Mobile Commons")
    action_network_endpoint: str = Field(description="the endpoint (provider actionnetwork) that writes to it")
    mobile_commons_endpoint: str = Field(description="the endpoint (provider mobilecommons) that writes to it")
    opt_in_path_id: str | None = Field(None, description="the default web opt-in path: new subscribers from "
                                                         "Action Network get its welcome message")
    source_code: str = Field("Mobile Commons", min_length=1, max_length=100,
                             description="the source code identifying Mobile Commons to Action Network")
    optin_field: str = Field(description="the Action Network checkbox field that marks a constituent as a "
                                         "Mobile Commons subscriber")
    login: str | None = Field(None, max_length=200, description="the Action Network login (an e-mail address)")
    password_env: str | None = secret_ref("env", "the Action Network password")
    password_file: str | None = secret_ref("file", "the Action Network password")
    notes: str | None = Field(None, max_length=4000, description="for internal use only")
    field_mappings: tuple[FieldMapping, ...] = Field(
        default=(), description="Mobile Commons field <-> Action Network API field, Required? (default: the "
                                "standard profile fields)")

    @field_validator("name", "action_network_source", "mobile_commons_source", "action_network_endpoint",
                     "mobile_commons_endpoint")
    @classmethod
    def _names(cls, v):
        if not _NAME.match(v):
            raise ValueError("letters, digits, '_', '.', '-' (at most 100)")
        return v

    @field_validator("optin_field")
    @classmethod
    def _optin(cls, v):
        if not _CUSTOM.match(v):
            raise ValueError("an Action Network custom field name (letters, digits, '_', '-', spaces)")
        return v

    @model_validator(mode="after")
    def _mappings(self):
        if not self.field_mappings:
            object.__setattr__(self, "field_mappings", tuple(
                FieldMapping(field=f, api_field=a.format(optin_field=self.optin_field)) for f, a in DEFAULT_MAPPINGS))
        seen: set[str] = set()
        for i, m in enumerate(self.field_mappings):
            where = f"field_mappings[{i}]"
            if m.field not in MC_FIELDS:
                raise ValueError(f"{where}.field: {m.field!r} is not a Mobile Commons field this sync knows "
                                 f"({', '.join(MC_FIELDS)})")
            if m.field in seen:
                raise ValueError(f"{where}.field: {m.field} is mapped twice")
            seen.add(m.field)
            if m.field == "opt_in_status":
                if m.api_field != f"custom_fields.{self.optin_field}":
                    raise ValueError(f"{where}.api_field: opt-in status is the checkbox optin_field names "
                                     f"(custom_fields.{self.optin_field}), not {m.api_field!r}")
            elif m.api_field.startswith("custom_fields."):
                raise ValueError(f"{where}.api_field: {m.api_field}: custom fields are not synced (only the "
                                 f"opt-in checkbox)")
            elif m.api_field not in AN_FIELDS:
                raise ValueError(f"{where}.api_field: {m.api_field!r} is not an Action Network standard field "
                                 f"({', '.join(AN_FIELDS)})")
            if m.required and m.field in ALWAYS:
                raise ValueError(f"{where}.required: do not mark {m.field} Required: phone number, email and "
                                 f"opt-in status must exist in both systems for any record to sync")
            if m.required and m.field == "constituent_id":
                raise ValueError(f"{where}.required: do not mark constituent_id Required: Action Network "
                                 f"provides it, and profiles without it could never sync back")
        missing = [f for f in ALWAYS if f not in seen]
        if missing:
            raise ValueError(f"field_mappings: {', '.join(missing)} must be mapped")
        return self

    def key(self) -> str:
        return f"anmc:{self.name}"

    def record(self) -> dict:
        return self.model_dump(mode="json")

    def an_field(self, mc_field: str) -> str | None:
        return next((m.api_field for m in self.field_mappings if m.field == mc_field), None)

    def required(self) -> list[str]:
        return [m.field for m in self.field_mappings if m.required]


class SyncError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def parse_sync(d: dict) -> SyncSettings:
    """A sync's settings, strictly (as JSON), or a SyncError naming the field."""
    from .secrets import find_inline_secrets

    if not isinstance(d, dict):
        raise SyncError("an anmc sync must be a mapping")
    parsed, problems = parse_strict(SyncSettings, d, find_inline_secrets(d, "anmc"))
    if problems:
        fix = []
        for w, why in problems:
            w = w.replace("settings.", "", 1) if w.startswith("settings.") else w
            m = re.match(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+)?): (.*)$", why) if w == "settings" else None
            if m:  # a check of the whole model names its field in the message
                w, why = m.groups()
            fix.append((w, why))
        name = d.get("name") if isinstance(d.get("name"), str) else "?"
        raise SyncError(f"anmc {name}: " + "; ".join(f"{w}: {why}" for w, why in fix), fix[0][0])
    return parsed


# ----------------------------------------------------------------------------- reading the two sides

def mobile(number) -> str | None:
    """A US mobile number as both systems key it (11 digits, leading 1), or None."""
    d = re.sub(r"\D", "", str(number or ""))
    if len(d) == 10:
        d = "1" + d
    return d if len(d) == 11 and d[0] == "1" else None


def _get(person: dict, path: str):
    head, _, rest = path.partition(".")
    if head == "identifiers":
        prefix = rest + ":"
        return next((i.split(":", 1)[1] for i in person.get("identifiers") or [] if i.startswith(prefix)), None)
    if head in ("phone_numbers", "email_addresses", "postal_addresses"):
        items = person.get(head) or []
        primary = next((x for x in items if x.get("primary")), items[0] if items else None)
        if primary is None:
            return None
        if rest.startswith("address_lines."):
            lines = primary.get("address_lines") or []
            i = int(rest.rsplit(".", 1)[1])
            return lines[i] if i < len(lines) else None
        return primary.get(rest)
    if head == "custom_fields":
        return (person.get("custom_fields") or {}).get(rest)
    return person.get(path)


def truthy(v) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "y", "on", "checked"))


def an_values(person: dict, sync: SyncSettings) -> dict:
    """An Action Network person as Mobile Commons fields, through the mappings."""
    out = {}
    for m in sync.field_mappings:
        v = _get(person, m.api_field)
        out[m.field] = (mobile(v) if m.field == "phone_number" else v) if v not in ("", None) else None
    out["opt_in_status"] = truthy(out.get("opt_in_status"))
    return out


def an_id_of(person: dict) -> str | None:
    return _get(person, "identifiers.action_network")


# ----------------------------------------------------------------------------- the rules

def _activity(sync: SyncSettings, code: str, number: str, fields: dict, when: str, an_id=None, mc_id=None,
              why="") -> dict:
    """A delivery as a raw activity: the same change read twice (a poll repeated after a crash) gets
    the same ActivityKey."""
    body = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{code}|{number}|{when}|{body}".encode()).hexdigest()[:24]
    return {"ActivityKey": f"anmc:{sync.name}:{digest}", "ActivityCode": code, "ActivityDate": when,
            "TenantCode": sync.tenant, "SyncName": sync.name, "MobileNumber": number, "SyncFields": body,
            "ActionNetworkId": an_id, "MobileCommonsId": mc_id, "PersonExternalKey": an_id or mc_id or number,
            "ActivityDescription": why}


def _report(sync, side: str, run: str, who: str, outcome: str, detail: str = "") -> dict:
    return {"sync": sync.name, "tenant": sync.tenant, "side": side, "run": run, "profile": who,
            "outcome": outcome, "detail": detail}


def masked(number: str | None) -> str:
    """A phone number as a report shows it (the last four digits)."""
    return f"…{number[-4:]}" if number else "-"


def an_change(entry: dict | None, person: dict, sync: SyncSettings, run: str, when: str):
    """A person the Action Network poll read: answers (entry, activities, report lines)."""
    an_id = an_id_of(person)
    values = an_values(person, sync)
    number = values.get("phone_number")
    who = masked(number) if number else f"an:{an_id}"
    if not number:
        return entry, [], [_report(sync, "action_network", run, who, "no import (missing phone)")]
    e = dict(entry or {"mobile": number})
    e["an_id"] = an_id or e.get("an_id")
    missing = [f for f in sync.required() if not values.get(f)]
    if missing:
        return e, [], [_report(sync, "action_network", run, who, "missing required field", ", ".join(missing))]
    if not values.get("email"):
        return e, [], [_report(sync, "action_network", run, who, "no export (missing email)")]
    acts, lines = [], []
    params = {f: v for f, v in values.items() if f not in ("opt_in_status",) and v is not None}
    params["constituent_id"] = e["an_id"]
    known = bool(e.get("mc_id")) or bool(e.get("to_mc"))
    # through the default opt-in path once, and not someone Mobile Commons has as a subscriber already
    subscribe = bool(values["opt_in_status"] and sync.opt_in_path_id and not e.get("subscribed")
                     and e.get("mc_status") != "active")
    if not values["opt_in_status"] and not known:
        lines.append(_report(sync, "action_network", run, who, "not opted in"))
    elif params == e.get("to_mc") and not subscribe:
        lines.append(_report(sync, "action_network", run, who, "no difference"))
    else:
        send = dict(params)
        if subscribe:
            send["opt_in_path_id"] = sync.opt_in_path_id
            e["subscribed"] = True
        acts.append(_activity(sync, MC_UPDATE, number, send, when, e["an_id"], e.get("mc_id"),
                              "subscribe through the default opt-in path" if subscribe else "update the profile"))
        e["to_mc"] = params
        lines.append(_report(sync, "action_network", run, who, "subscribed" if subscribe else "updated"))
    acts += _link(e, sync, number, when, person)
    e["an_seen"] = when
    return e, acts, lines


def _link(e: dict, sync: SyncSettings, number: str, when: str, person: dict | None = None) -> list[dict]:
    """The Mobile Commons identifier written to the Action Network person, once both ids are known."""
    mc_id, an_id = e.get("mc_id"), e.get("an_id")
    if not (mc_id and an_id) or e.get("to_an_id") == mc_id:
        return []
    if person is not None and f"mobile_commons:{mc_id}" in (person.get("identifiers") or []):
        e["to_an_id"] = mc_id
        return []
    e["to_an_id"] = mc_id
    return [_activity(sync, AN_UPDATE, number, {"identifiers": [f"mobile_commons:{mc_id}"]}, when, an_id, mc_id,
                      "write the Mobile Commons identifier to the Action Network person")]


def mc_change(entry: dict | None, profile: dict, sync: SyncSettings, run: str, when: str):
    """A profile the Mobile Commons poll read: answers (entry, activities, report lines)."""
    number = mobile(profile.get("phone_number"))
    who = masked(number)
    if not number:
        return entry, [], [_report(sync, "mobile_commons", run, f"mc:{profile.get('id')}", "no import (missing phone)")]
    e = dict(entry or {"mobile": number})
    e["mc_id"] = profile.get("id") or e.get("mc_id")
    constituent = (profile.get("custom_columns") or {}).get("constituent_id")
    if constituent and not e.get("an_id"):
        e["an_id"] = constituent
    status = "opted_out" if profile.get("status") == "Opted-Out" else \
        "active" if profile.get("status") == "Active Subscriber" else "other"
    before = e.get("mc_status")
    e["mc_status"] = status
    acts, lines = [], []
    email = profile.get("email")
    if status == "opted_out" and before != "opted_out":
        if not e.get("an_id"):
            lines.append(_report(sync, "mobile_commons", run, who, "no match", "an opt-out of nobody in Action Network"))
        elif e.get("to_an_status") != "unsubscribed":
            body = {"person": {"phone_numbers": [{"number": number, "status": "unsubscribed"}],
                               "custom_fields": {sync.optin_field: False}}}
            if email:
                body["person"]["email_addresses"] = [{"address": email}]
            acts.append(_activity(sync, AN_UPSERT, number, body, when, e["an_id"], e["mc_id"],
                                  "set the Action Network person's mobile status unsubscribed"))
            e["to_an_status"] = "unsubscribed"
            lines.append(_report(sync, "mobile_commons", run, who, "opted out"))
    elif status == "active" and before != "active":
        ours = bool(e.get("to_mc")) and e.get("to_an_status") != "unsubscribed"
        if ours:
            lines.append(_report(sync, "mobile_commons", run, who, "linked"))
        elif not email and not e.get("an_id"):
            lines.append(_report(sync, "mobile_commons", run, who, "no export (missing email)",
                                 "a new opt-in without an e-mail address is not exported"))
        elif e.get("to_an_status") != "subscribed":
            person = {"phone_numbers": [{"number": number, "status": "subscribed"}],
                      "custom_fields": {sync.optin_field: True},
                      "identifiers": [f"mobile_commons:{e['mc_id']}"]}
            if email:
                person["email_addresses"] = [{"address": email}]
            for f, an in (("first_name", "given_name"), ("last_name", "family_name")):
                if profile.get(f):
                    person[an] = profile[f]
            body = {"person": person, "action_network:referrer_data": {"source": sync.source_code}}
            acts.append(_activity(sync, AN_UPSERT, number, body, when, e.get("an_id"), e["mc_id"],
                                  "a Mobile Commons opt-in: an Action Network person opted in"))
            e["to_an_status"] = "subscribed"
            e["to_an_id"] = e["mc_id"]
            lines.append(_report(sync, "mobile_commons", run, who, "opted in" if e.get("an_id") else "created"))
    else:
        lines.append(_report(sync, "mobile_commons", run, who, "no difference"))
    acts += _link(e, sync, number, when)
    e["mc_seen"] = when
    return e, acts, lines


Side = Literal["action_network", "mobile_commons"]


# ----------------------------------------------------------------------------- the report

def summarize(lines: list[dict], sources: dict[str, str] | None = None) -> list[dict]:
    """Report lines (``anmc.report``) grouped by run, oldest first: each run's side, what it read, its
    outcome counts and profiles. ``sources`` maps a source name to its sync (a run's summary line
    names only the source). A run that read nothing new says :data:`NO_CHANGES`."""
    runs: dict[str, dict] = {}
    for x in lines:
        run = x.get("run") or "?"
        r = runs.setdefault(run, {"run": run, "sync": None, "side": x.get("side"), "read": None, "changes": None,
                                  "outcomes": {}, "profiles": []})
        if x.get("summary"):
            r["read"], r["changes"] = x.get("records"), x.get("changes")
            r["sync"] = r["sync"] or (sources or {}).get(x.get("source"))
        else:
            r["sync"] = x.get("sync") or r["sync"]
            r["outcomes"][x["outcome"]] = r["outcomes"].get(x["outcome"], 0) + 1
            r["profiles"].append({k: x.get(k) for k in ("profile", "outcome", "detail")})
    out = []
    for r in runs.values():
        try:
            r["at"] = int(str(r["run"]).rsplit(":", 1)[1])
        except (IndexError, ValueError):
            r["at"] = None
        if r["changes"] == 0 and not r["profiles"]:
            r["outcomes"] = {NO_CHANGES: 1}
        out.append(r)
    return sorted(out, key=lambda r: (r["at"] or 0, r["run"]))
