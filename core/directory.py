"""The member directory as every reader sees it: ``push.directory`` (the directory agent's table
changelog, :mod:`streams.directory`) followed whole into per-tenant indexes.

An entry is one contact of one tenant, as the AMS last pushed it through the Push API, with its
groups and list memberships (JSON, see :func:`streams.directory.entry_of`). Look-ups: by
ContactId (or AlternativeContactId), e-mail (PrimaryEmailAddress and any EmailAddresses entry's
``EmailAddress``, case-insensitive), phone (digits only; the last ten when longer, so
``+1 (555) 010-0199`` finds ``555-010-0199``) and name (a case-insensitive part of the display
name). A soft-deleted contact is kept (``deleted``) but never resolves an activity.
"""

from __future__ import annotations

import json
import re

from .compacted import CompactedTopic
from .settings import KafkaSettings

_NOT_DIGIT = re.compile(r"\D")


def phone_key(text: str | None) -> str | None:
    if not isinstance(text, str):
        return None
    digits = _NOT_DIGIT.sub("", text)
    if len(digits) < 7:
        return None
    return digits[-10:]


def email_key(text: str | None) -> str | None:
    if not isinstance(text, str) or "@" not in text:
        return None
    return text.strip().lower() or None


def emails_of(entry: dict) -> list[str]:
    out = [entry.get("details", {}).get("PrimaryEmailAddress")]
    for e in entry.get("EmailAddresses") or []:
        try:
            out.append(json.loads(e).get("EmailAddress"))
        except (ValueError, AttributeError):
            pass
    return [k for k in map(email_key, out) if k]


def phones_of(entry: dict) -> list[str]:
    return [k for k in (phone_key(p.get("FormattedNumber")) for p in entry.get("PhoneNumbers") or []) if k]


def display_name(entry: dict) -> str:
    d = entry.get("details") or {}
    if d.get("IsOrganization"):
        return d.get("OrganizationName") or ""
    return " ".join(x for x in (d.get("FirstName"), d.get("LastName")) if x) or d.get("OrganizationName") or ""


class _Tenant:
    def __init__(self) -> None:
        self.by_id: dict[str, dict] = {}
        self.alt: dict[str, set[str]] = {}
        self.email: dict[str, set[str]] = {}
        self.phone: dict[str, set[str]] = {}

    def _index(self, entry: dict) -> list[tuple[dict, str]]:
        cid = entry["ContactId"]
        out = [(self.email, k) for k in emails_of(entry)] + [(self.phone, k) for k in phones_of(entry)]
        alt = (entry.get("details") or {}).get("AlternativeContactId")
        if alt:
            out.append((self.alt, alt))
        return [(idx, k) for idx, k in out if k != cid or idx is not self.alt]

    def put(self, entry: dict) -> None:
        cid = entry["ContactId"]
        old = self.by_id.get(cid)
        if old is not None:
            for idx, k in self._index(old):
                ids = idx.get(k)
                if ids is not None:
                    ids.discard(cid)
                    if not ids:
                        del idx[k]
        self.by_id[cid] = entry
        for idx, k in self._index(entry):
            idx.setdefault(k, set()).add(cid)


class Directory:
    """Per-tenant contacts and their indexes, fed by ``push.directory`` records."""

    def __init__(self) -> None:
        self.tenants: dict[str, _Tenant] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            return
        entry = json.loads(value)
        if not isinstance(entry, dict) or "tenant" not in entry or "ContactId" not in entry:
            raise ValueError("not a directory entry")
        self.tenants.setdefault(entry["tenant"], _Tenant()).put(entry)

    def get(self, tenant: str, contact_id: str) -> dict | None:
        t = self.tenants.get(tenant)
        return t.by_id.get(contact_id) if t else None

    def count(self, tenant: str | None = None) -> int:
        if tenant is not None:
            t = self.tenants.get(tenant)
            return len(t.by_id) if t else 0
        return sum(len(t.by_id) for t in self.tenants.values())

    def find(self, tenant: str, *, contact_id: str | None = None, email: str | None = None,
             phone: str | None = None, name: str | None = None, limit: int = 100) -> list[dict]:
        """Contacts of one tenant matching every criterion given (deleted ones included, marked)."""
        t = self.tenants.get(tenant)
        if t is None:
            return []
        ids: set[str] | None = None

        def narrow(found: set[str]) -> None:
            nonlocal ids
            ids = set(found) if ids is None else ids & found

        if contact_id is not None:
            narrow(({contact_id} if contact_id in t.by_id else set()) | t.alt.get(contact_id, set()))
        if email is not None:
            narrow(t.email.get(email_key(email) or "", set()))
        if phone is not None:
            narrow(t.phone.get(phone_key(phone) or "", set()))
        if ids is None:
            candidates = t.by_id.values()
        else:
            candidates = [t.by_id[i] for i in sorted(ids) if i in t.by_id]
        out = []
        needle = name.strip().lower() if name else None
        for e in candidates:
            if needle and needle not in display_name(e).lower():
                continue
            out.append(e)
            if len(out) >= limit:
                break
        return out

    def resolve(self, tenant: str, by: str, value: str) -> str | None:
        """The ContactId of the one live contact ``value`` names (by ``contact_key``, ``email`` or
        ``phone``); None when none or more than one does (an ambiguous match resolves nobody)."""
        t = self.tenants.get(tenant)
        if t is None:
            return None
        if by == "contact_key":
            found = ({value} if value in t.by_id else set()) | t.alt.get(value, set())
        elif by == "email":
            found = t.email.get(email_key(value) or "", set())
        elif by == "phone":
            found = t.phone.get(phone_key(value) or "", set())
        else:
            return None
        live = [i for i in found if i in t.by_id and not t.by_id[i].get("deleted") and t.by_id[i].get("details")]
        return live[0] if len(live) == 1 else None


class DirectoryView(CompactedTopic):
    """A :class:`Directory` kept up to date from ``push.directory`` (a mode Service)."""

    def __init__(self, kafka: KafkaSettings, topic: str, **kw) -> None:
        self.directory = Directory()
        super().__init__(kafka, topic, self.directory.apply, **kw)
