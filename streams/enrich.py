"""Enrichment: one raw event in, one ``activity.enriched`` record out. Pure, no Kafka.

The record is a dict in the shape of ``schemas/activity_enriched.avsc``.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.catalog import UNCATEGORIZED, Catalog
from core.details import render_details
from core.envelope import decode_event, parse_date, to_micros
from core.routing import Routing


def choose_customer(event: dict, candidates: tuple[str, ...]) -> tuple[str | None, str | None]:
    """The member's AMS/CRM customer ID: the first non-empty candidate property; and its name."""
    for name in candidates:
        v = event.get(name)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():
            return str(v).strip(), name
    return None, None


def contact_key_of(customer_field: str | None, event: dict) -> str | None:
    """The community contact key of the person the activity is about (AuthorExternalKey -> AuthorContactKey)."""
    if customer_field and customer_field.endswith("ExternalKey"):
        v = event.get(customer_field[: -len("ExternalKey")] + "ContactKey")
        if isinstance(v, str) and v:
            return v
    v = event.get("AgentContactKey")
    return v if isinstance(v, str) and v else None


#: where an event may carry its member's e-mail or phone, after each role's prefix (Author, Member, …)
EMAIL_SUFFIXES = ("Email", "EmailAddress", "PrimaryEmailAddress")
PHONE_SUFFIXES = ("Phone", "PhoneNumber", "MobileNumber", "MobilePhone")


def resolution_candidates(customer_key: tuple[str, ...], by: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``(how, property)`` pairs to look the member up by, in the tenant's order: for each role of the
    code's customer-key properties (``AuthorExternalKey`` -> ``Author``) and then without a role, its
    contact key (``AuthorContactKey``), e-mail (``AuthorEmail``, …) or phone (``AuthorPhone``, …)."""
    roles = [k[: -len("ExternalKey")] for k in customer_key if k.endswith("ExternalKey")] + [""]
    out: list[tuple[str, str]] = []
    for how in by:
        for role in roles:
            if how == "contact_key":
                names = [role + "ContactKey"]
            elif how == "email":
                names = [role + s for s in EMAIL_SUFFIXES]
            else:
                names = [role + s for s in PHONE_SUFFIXES]
            out += [(how, n) for n in names if (how, n) not in out]
    return tuple(out)


def link_of(event: dict) -> str | None:
    for name in ("LinkUrl", "ParentLinkUrl"):
        v = event.get(name)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


@dataclass
class Enriched:
    key: bytes
    record: dict
    unknown_code: bool


class Enricher:
    def __init__(self, catalog: Catalog, routing: Routing, max_event_bytes: int = 1_048_576, directory=None) -> None:
        """``directory``: a :class:`core.directory.Directory` to resolve members the event does not name."""
        self.catalog = catalog
        self.routing = routing
        self.max_event_bytes = max_event_bytes
        self.directory = directory
        self._candidates: dict[tuple, tuple] = {}

    def resolve(self, event: dict, customer_key: tuple[str, ...]) -> tuple[str | None, str | None, str | None]:
        """The member's ContactId from the Push API directory: ``(customer_id, property, how)``."""
        tenant = event["TenantCode"]
        by = self.routing.tenant(tenant).resolve_by
        cands = self._candidates.get((customer_key, by))
        if cands is None:
            cands = self._candidates[(customer_key, by)] = resolution_candidates(customer_key, by)
        for how, name in cands:
            v = event.get(name)
            if isinstance(v, str) and v.strip():
                found = self.directory.resolve(tenant, how, v.strip())
                if found is not None:
                    return found, name, f"directory:{how}"
        return None, None, None

    def enrich(self, raw: bytes | None, key: bytes | None, topic: str, partition: int, offset: int,
               now_ms: int) -> Enriched:
        """Raise :class:`~core.envelope.MalformedEvent` for input that can never be enriched."""
        event = decode_event(raw, self.max_event_bytes)
        when = parse_date(event["ActivityDate"])
        code = event["ActivityCode"]
        info = self.catalog.lookup(code)
        customer_key = info.customer_key if info else self.catalog.default_customer_key
        customer_id, customer_field = choose_customer(event, customer_key)
        contact_key = contact_key_of(customer_field, event)
        resolved_by = None
        if customer_id is None and self.directory is not None:
            customer_id, customer_field, resolved_by = self.resolve(event, customer_key)
        pairs, as_json, as_xml = render_details(event)
        deliveries = [
            {"endpoint": r.endpoint, "provider_type": r.provider_type, "description": r.template.render(event),
             "writeback_code1": r.writeback_code1, "writeback_code2": r.writeback_code2}
            for r in self.routing.routes(code, event["TenantCode"])
            # the loop guard: a change that came from an endpoint's own AMS is never written back to it
            if r.endpoint != event.get("OriginSystem")
        ]
        record = {
            "activity_key": event["ActivityKey"],
            "activity_code": code,
            "category": info.category if info else UNCATEGORIZED,
            "tenant_code": event["TenantCode"],
            "activity_date": to_micros(when),
            "customer_id": customer_id,
            "customer_key_field": customer_field,
            "contact_key": contact_key,
            "customer_resolved_by": resolved_by,
            "link_url": link_of(event),
            "details": pairs,
            "details_json": as_json,
            "details_xml": as_xml,
            "deliveries": deliveries,
            "source": {"topic": topic, "partition": partition, "offset": offset},
            "enriched_at": now_ms,
        }
        # Keep one member's activities in one partition downstream: the raw key (the member's
        # contact key, as producers are asked to set it), else the contact key, else the activity.
        out_key = key or (contact_key or event["ActivityKey"]).encode()
        return Enriched(out_key, record, info is None)
