"""Field mapping as configuration: what an AMS/CRM field is filled from.

A provider whose target is a table with named fields (a Salesforce sObject, a Dataverse table)
declares ``fields: {TargetField: source}`` and ``constants: {TargetField: value}`` in its
settings, with documented defaults. A source is one of :data:`SOURCES`; ``load-config`` refuses
any other name, with the list.
"""

from __future__ import annotations

import re
from typing import Callable

from .contract import Delivery


def details_text(d: Delivery, limit: int | None = None) -> str:
    """The activity's details as readable ``Name: value`` lines (what a CRM user reads)."""
    text = "\n".join(f"{k}: {v}" for k, v in d.details if v not in (None, ""))
    return text[:limit] if limit else text


SOURCES: dict[str, tuple[str, Callable[[Delivery], object]]] = {
    "activity_key": ("the ActivityKey (also the external/alternate key)", lambda d: d.activity_key),
    "customer_id": ("the member's AMS/CRM customer ID", lambda d: d.customer_id),
    "contact_key": ("the member's community contact key", lambda d: d.contact_key),
    "activity_code": ("the activity code, e.g. DiscussionMessageCreate", lambda d: d.activity_code),
    "category": ("the activity's category", lambda d: d.category),
    "tenant_code": ("the community site (TenantCode)", lambda d: d.tenant_code),
    "activity_date": ("the activity's UTC date, YYYY-MM-DD", lambda d: d.activity_date_iso[:10]),
    "activity_datetime": ("the activity's UTC date and time, ISO 8601 with Z",
                          lambda d: d.activity_date_iso[:19] + "Z"),
    "description": ("the rendered description", lambda d: d.description),
    "subject": ("the rendered description cut to 255 characters", lambda d: d.description[:255]),
    "details": ("the details as readable 'Name: value' lines", details_text),
    "details_json": ("the details as JSON", lambda d: d.details_json),
    "details_xml": ("the details as XML", lambda d: d.details_xml),
    "link_url": ("the link to the activity", lambda d: d.link_url),
    "writeback_code1": ("the subscription's first write-back code", lambda d: d.writeback_code1),
    "writeback_code2": ("the subscription's second write-back code", lambda d: d.writeback_code2),
    "detail": ("detail:Name is the activity's property Name (e.g. detail:Subject), detail:Name:N cut to N",
               lambda d: None),
}


def detail(d: Delivery, name: str) -> str | None:
    """The value of the activity's detail (event property) ``name``, None if it has none."""
    for k, v in d.details:
        if k == name:
            return v
    return None


_DETAIL = re.compile(r"^detail:([A-Za-z_][A-Za-z0-9_]{0,127})(?::(\d+))?$")


def _split(source: str) -> tuple[str, int | None]:
    """``description:200`` is the description cut to 200 characters."""
    if _DETAIL.match(source):
        return "detail", None
    name, sep, limit = source.partition(":")
    if sep and limit.isdigit() and int(limit) > 0:
        return name, int(limit)
    return (source, None) if not sep else ("", None)


def check_fields(fields: dict[str, str]) -> dict[str, str]:
    """A pydantic validator's body: every source must be known (``name`` or ``name:N``, cut to N)."""
    for t, s in fields.items():
        if not isinstance(s, str) or _split(s)[0] not in SOURCES:
            raise ValueError(f"{t}: unknown source {s!r}; sources (add :N to cut to N characters): "
                             f"{', '.join(SOURCES)}")
    return fields


def value(source: str, d: Delivery) -> object:
    m = _DETAIL.match(source)
    if m:
        v = detail(d, m.group(1))
        return v[:int(m.group(2))] if m.group(2) and isinstance(v, str) else v
    name, limit = _split(source)
    v = SOURCES[name][1](d)
    return v[:limit] if limit and isinstance(v, str) else v


#: what a text cut to a field's limit ends with, so a reader sees that something is missing
CUT_MARKER = " […cut]"


def cut_to(value: object, limit: int) -> object:
    """Text longer than ``limit`` characters cut to exactly ``limit``, ending with :data:`CUT_MARKER`."""
    if not isinstance(value, str) or len(value) <= limit:
        return value
    if limit <= len(CUT_MARKER):
        return value[:limit]
    return value[:limit - len(CUT_MARKER)] + CUT_MARKER


def within_limits(record: dict, limits: dict[str, int]) -> dict:
    """Each field with a declared limit (the target API's field length) cut to it, with the marker: a
    long rendered text lands shortened rather than being refused and dead-lettered."""
    for name, limit in limits.items():
        if name in record:
            record[name] = cut_to(record[name], limit)
    return record


def apply(fields: dict[str, str], constants: dict[str, object], d: Delivery) -> dict[str, object]:
    """The target record's fields for one delivery (None values are sent as null)."""
    out = {target: value(source, d) for target, source in fields.items()}
    out.update(constants)
    return out
