"""The Push API's objects, validated: ContactInfo (``POST /v2/contactinfo``) and List (``POST /v2/list``).

Pure: JSON data in, Avro-shaped records (``schemas/push_contact.avsc``, ``push_list.avsc``) or a
list of problems out, each ``(index, field, reason)``. The field tables are the seed's
(``../shared/seeds/push-api.txt``); required fields as its bold text and notes say:

- ``ContactDetails.ContactId`` always; ``FirstName`` or ``LastName`` when ``IsOrganization`` is
  not true; ``OrganizationName`` when it is; with ``IsDeleted: true`` only ``ContactId``.
- a group's ``GroupId``; a list's ``ListId``, ``Mode`` and ``ContactIds``.

DateTime values are accepted only in the two .NET formats the seed names,
``yyyy-MM-ddTHH:mm:ss.fffZ`` and ``yyyy-MM-ddTHH:mm:ss.fffzzz`` (milliseconds required, the offset
as ``+hh:mm``). A field of the wrong type is refused, never coerced (``"IsMember": "true"`` is not
a boolean); a field the tables do not name is refused (a typo would otherwise clear a field, as a
ContactInfo object replaces the contact whole); JSON ``null`` is the same as leaving a field out.

``EmailAddresses``, ``Demographics``, ``Education``, ``JobHistory`` and ``Orders``: the seed gives
no field table for them. Each entry must be a flat JSON object (text keys; values text, numbers,
booleans or null) of at most :data:`MAX_OPAQUE_KEYS` keys; it is stored as pushed, as JSON text.
An ``EmailAddresses`` entry's ``EmailAddress`` (if any) is also looked up by the directory.

A Community Essentials tenant may not push Lists, custom Demographics, JobHistory, Education or
Orders (refused, naming the object); its groups are all security groups (``GroupKind``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import orjson

from core.envelope import BadDate, parse_date

#: limits of one request (documented in the OpenAPI document and the README)
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_OBJECTS = 1000
MAX_TEXT = 4000                 # characters of one text field
MAX_BIO = 65_536                # Bio holds HTML
MAX_ID = 200                    # ContactId, GroupId, ListId and the other identifiers
MAX_ITEMS = 500                 # entries of Groups, Addresses, PhoneNumbers, … in one contact
MAX_LIST_IDS = 10_000           # ContactIds of one list object
MAX_OPAQUE_KEYS = 100
MAX_PROBLEMS = 200              # problems listed in one 400 answer (the count is always given)

_DOTNET_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(?:Z|[+-]\d{2}:\d{2})")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

STR, INT, BOOL, DATE, DEC, ID = "string", "int", "bool", "DateTime", "decimal", "id"

CONTACT_DETAILS = {
    "ContactId": ID, "Age": INT, "ContactType": STR, "Birthday": DATE, "MemberSince": DATE,
    "MemberExpiresOn": DATE, "Designation": STR, "PrimaryEmailAddress": STR, "Prefix": STR, "FirstName": STR,
    "MiddleName": STR, "LastName": STR, "InformalName": STR, "Gender": STR, "Ethnicity": STR, "Suffix": STR,
    "OrganizationName": STR, "Title": STR, "ParentContactId": ID, "PrimaryContactContactId": ID,
    "ExcludeFromDirectory": BOOL, "DoNotEmail": BOOL, "IsMember": BOOL, "IsOrganization": BOOL,
    "AlternativeContactId": ID, "Bio": STR, "WebsiteURL": STR, "ProfileImageURL": STR, "FacebookURL": STR,
    "TwitterURL": STR, "LinkedinURL": STR, "BloggerURL": STR, "OtherSocialURL": STR, "IsDeleted": BOOL,
}
CONTACT_GROUP = {
    "InitialJoinDate": DATE, "BeginDate": DATE, "EndDate": DATE, "GroupId": ID, "GroupName": STR,
    "GroupType": STR, "GroupSubType": STR, "Role": STR,
}
CONTACT_ADDRESS = {
    "AddressName": STR, "AddressLine1": STR, "AddressLine2": STR, "AddressLine3": STR, "City": STR,
    "StateProvince": STR, "PostalCode": STR, "CountryCode": STR, "AddressType": STR, "Latitude": DEC,
    "Longitude": DEC, "DoNotPublish": BOOL, "IsBill": BOOL, "IsShip": BOOL, "IsMail": BOOL, "IsPrimary": BOOL,
}
CONTACT_PHONE = {"FormattedNumber": STR, "PhoneType": STR, "IsPreferred": BOOL, "IsSmsPreferred": BOOL,
                 "DoNotPublish": BOOL}
OPAQUE = ("EmailAddresses", "Demographics", "Education", "JobHistory", "Orders")
CONTACT_INFO = ("ContactDetails", "Groups", "Addresses", "PhoneNumbers", *OPAQUE)
#: what a Community Essentials tenant may not push, and the seed's words for it
NOT_IN_ESSENTIALS = {"Demographics": "custom demographics", "Education": "contact education",
                     "JobHistory": "contact job history", "Orders": "orders"}
LIST_FIELDS = ("ContactIds", "ListId", "ListName", "ListType", "Mode")
#: the seed's text says Add, Remove, Replace; its own example says Append: the same as Add
LIST_MODES = {"Add": "Add", "Append": "Add", "Remove": "Remove", "Replace": "Replace"}


@dataclass(frozen=True)
class Problem:
    index: int
    field: str
    reason: str
    limit: bool = False  # over a documented limit (the request is answered 413, not 400)

    def as_json(self) -> dict:
        return {"index": self.index, "field": self.field, "reason": self.reason}


class _Object:
    """Collects the problems of one object."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.problems: list[Problem] = []

    def bad(self, field: str, reason: str) -> None:
        self.problems.append(Problem(self.index, field, reason, "the limit is" in reason))


def _kind(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list):
        return "an array"
    return "an object"


def _value(obj: _Object, where: str, kind: str, v, max_text: int = MAX_TEXT):
    """One field's value checked against its type: the value to store, or None (and a problem)."""
    if v is None:
        return None
    if kind in (STR, ID, DATE):
        if not isinstance(v, str):
            obj.bad(where, f"must be text{' (a DateTime)' if kind == DATE else ''}, not {_kind(v)}")
            return None
        limit = MAX_ID if kind == ID else max_text
        if len(v) > limit:
            obj.bad(where, f"is {len(v)} characters long, the limit is {limit}")
            return None
        if _CONTROL.search(v):
            obj.bad(where, "holds a control character")
            return None
        if kind == DATE:
            if not _DOTNET_DATE.fullmatch(v):
                obj.bad(where, f"{v[:40]!r} is not a DateTime in yyyy-MM-ddTHH:mm:ss.fffZ or "
                               f"yyyy-MM-ddTHH:mm:ss.fff+hh:mm")
                return None
            try:
                parse_date(v, where)
            except BadDate as exc:
                obj.bad(where, str(exc))
                return None
        if kind == ID and not v.strip():
            obj.bad(where, "is empty")
            return None
        return v
    if kind == BOOL:
        if not isinstance(v, bool):
            obj.bad(where, f"must be true or false, not {_kind(v)}")
            return None
        return v
    if kind == INT:
        if isinstance(v, bool) or not isinstance(v, int) or not -2 ** 31 <= v < 2 ** 31:
            obj.bad(where, f"must be a whole number (32-bit), not {_kind(v)}")
            return None
        return v
    if kind == DEC:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            obj.bad(where, f"must be a number, not {_kind(v)}")
            return None
        return float(v)
    raise AssertionError(kind)


def _record(obj: _Object, where: str, data, table: dict, max_text=None) -> dict | None:
    """A JSON object checked against a field table: every field of the table (None where left out)."""
    if not isinstance(data, dict):
        obj.bad(where, f"must be an object, not {_kind(data)}")
        return None
    out = {}
    for k in data:
        if k not in table:
            obj.bad(f"{where}.{k}"[:200], f"is not a field of {where.split('[')[0].split('.')[-1]} "
                                          f"(its fields: {', '.join(table)})")
    get = data.get
    for name, kind in table.items():
        v = get(name)
        t = type(v)
        # the common cases without building the field's name (that is only needed for a problem)
        if v is None:
            out[name] = None
        elif kind is BOOL and t is bool:
            out[name] = v
        elif kind is STR and t is str and len(v) <= MAX_TEXT and _CONTROL.search(v) is None:
            out[name] = v
        else:
            out[name] = _value(obj, f"{where}.{name}", kind, v, MAX_BIO if name == "Bio" else MAX_TEXT)
    return out


def _items(obj: _Object, where: str, data) -> list:
    if data is None:
        return []
    if not isinstance(data, list):
        obj.bad(where, f"must be an array, not {_kind(data)}")
        return []
    if len(data) > MAX_ITEMS:
        obj.bad(where, f"holds {len(data)} entries, the limit is {MAX_ITEMS}")
        return []
    return data


def _opaque(obj: _Object, where: str, entry) -> str | None:
    if not isinstance(entry, dict):
        obj.bad(where, f"must be an object, not {_kind(entry)}")
        return None
    if len(entry) > MAX_OPAQUE_KEYS:
        obj.bad(where, f"holds {len(entry)} fields, the limit is {MAX_OPAQUE_KEYS}")
        return None
    for k, v in entry.items():
        if len(k) > MAX_ID:
            obj.bad(where, f"a field name is {len(k)} characters long, the limit is {MAX_ID}")
            return None
        if isinstance(v, (dict, list)):
            obj.bad(f"{where}.{k}"[:200], f"must be text, a number, a boolean or null, not {_kind(v)} "
                                         f"(this object is stored as pushed, flat)")
            return None
        if isinstance(v, str) and len(v) > MAX_TEXT:
            obj.bad(f"{where}.{k}"[:200], f"is {len(v)} characters long, the limit is {MAX_TEXT}")
            return None
        if isinstance(v, float) and not math.isfinite(v):
            obj.bad(f"{where}.{k}"[:200], "is not a finite number")
            return None
    return orjson.dumps(entry).decode()


def contact_info(index: int, data, *, essentials: bool = False) -> tuple[dict | None, list[Problem]]:
    """One ContactInfo object: its ``push_contact`` record fields (without the envelope) or problems."""
    obj = _Object(index)
    if not isinstance(data, dict):
        obj.bad("", f"each object must be a ContactInfo object, not {_kind(data)}")
        return None, obj.problems
    for k in data:
        if k not in CONTACT_INFO:
            obj.bad(k[:200], f"is not a field of ContactInfo (its fields: {', '.join(CONTACT_INFO)})")
    if data.get("ContactDetails") is None:
        obj.bad("ContactDetails", "is required (it holds the ContactId)")
        return None, obj.problems
    details = _record(obj, "ContactDetails", data["ContactDetails"], CONTACT_DETAILS)
    if details is None:
        return None, obj.problems
    if details["ContactId"] is None and "ContactDetails.ContactId" not in {p.field for p in obj.problems}:
        obj.bad("ContactDetails.ContactId", "is required")
    flagged = {p.field for p in obj.problems}
    if not details["IsDeleted"] and not flagged & {"ContactDetails.FirstName", "ContactDetails.LastName",
                                                   "ContactDetails.OrganizationName", "ContactDetails.IsOrganization"}:
        if details["IsOrganization"]:
            if not (details["OrganizationName"] or "").strip():
                obj.bad("ContactDetails.OrganizationName", "is required when IsOrganization is true")
        elif not (details["FirstName"] or "").strip() and not (details["LastName"] or "").strip():
            obj.bad("ContactDetails.FirstName", "FirstName or LastName is required when IsOrganization is false")
    groups = []
    seen = set()
    for i, g in enumerate(_items(obj, "Groups", data.get("Groups"))):
        rec = _record(obj, f"Groups[{i}]", g, CONTACT_GROUP)
        if rec is None:
            continue
        if rec["GroupId"] is None:
            if f"Groups[{i}].GroupId" not in {p.field for p in obj.problems}:
                obj.bad(f"Groups[{i}].GroupId", "is required")
            continue
        if rec["GroupId"] in seen:
            obj.bad(f"Groups[{i}].GroupId", f"{rec['GroupId']!r} appears twice in this contact's Groups")
        seen.add(rec["GroupId"])
        rec["GroupKind"] = "security" if essentials else None
        groups.append(rec)
    addresses = []
    for i, a in enumerate(_items(obj, "Addresses", data.get("Addresses"))):
        rec = _record(obj, f"Addresses[{i}]", a, CONTACT_ADDRESS)
        if rec is not None:
            for name, lo, hi in (("Latitude", -90, 90), ("Longitude", -180, 180)):
                if rec[name] is not None and not lo <= rec[name] <= hi:
                    obj.bad(f"Addresses[{i}].{name}", f"must be from {lo} to {hi}")
            addresses.append(rec)
    phones = [rec for i, p in enumerate(_items(obj, "PhoneNumbers", data.get("PhoneNumbers")))
              if (rec := _record(obj, f"PhoneNumbers[{i}]", p, CONTACT_PHONE)) is not None]
    out = {"ContactDetails": details, "Groups": groups, "Addresses": addresses, "PhoneNumbers": phones}
    for name in OPAQUE:
        entries = _items(obj, name, data.get(name))
        if essentials and name in NOT_IN_ESSENTIALS and entries:
            obj.bad(name, f"Community Essentials does not support pushing {NOT_IN_ESSENTIALS[name]} "
                          f"(this tenant is a Community Essentials tenant)")
            entries = []
        out[name] = [j for i, e in enumerate(entries) if (j := _opaque(obj, f"{name}[{i}]", e)) is not None]
    if obj.problems:
        return None, obj.problems
    return out, []


def list_object(index: int, data, *, essentials: bool = False) -> tuple[dict | None, list[Problem]]:
    """One List object: its ``push_list`` record fields (without the envelope) or problems."""
    obj = _Object(index)
    if essentials:
        obj.bad("", "Community Essentials does not support pushing Lists (this tenant is a Community "
                    "Essentials tenant)")
        return None, obj.problems
    if not isinstance(data, dict):
        obj.bad("", f"each object must be a List object, not {_kind(data)}")
        return None, obj.problems
    for k in data:
        if k not in LIST_FIELDS:
            obj.bad(k[:200], f"is not a field of a List object (its fields: {', '.join(LIST_FIELDS)})")
    list_id = _value(obj, "ListId", ID, data.get("ListId"))
    if data.get("ListId") is None:
        obj.bad("ListId", "is required")
    name = _value(obj, "ListName", STR, data.get("ListName"))
    kind = _value(obj, "ListType", STR, data.get("ListType"))
    mode = data.get("Mode")
    if mode is None:
        obj.bad("Mode", "is required: Add (or Append), Remove or Replace")
    elif not isinstance(mode, str) or mode not in LIST_MODES:
        obj.bad("Mode", f"{str(mode)[:40]!r} is not a mode: Add (or Append, the same), Remove or Replace")
    ids = data.get("ContactIds")
    contact_ids: list[str] = []
    if ids is None:
        obj.bad("ContactIds", "is required (an array of ContactId; empty with Replace empties the list)")
    elif not isinstance(ids, list):
        obj.bad("ContactIds", f"must be an array of ContactId, not {_kind(ids)}")
    elif len(ids) > MAX_LIST_IDS:
        obj.bad("ContactIds", f"holds {len(ids)} ids, the limit is {MAX_LIST_IDS} (send more objects)")
    else:
        seen = set()
        for i, cid in enumerate(ids):
            v = _value(obj, f"ContactIds[{i}]", ID, cid)
            if cid is None:
                obj.bad(f"ContactIds[{i}]", "is null")
            elif v is not None and v not in seen:
                seen.add(v)
                contact_ids.append(v)
            if len(obj.problems) > MAX_PROBLEMS:
                break
    if obj.problems:
        return None, obj.problems
    return {"ListId": list_id, "ListName": name, "ListType": kind, "Mode": LIST_MODES[mode],
            "ContactIds": contact_ids}, []
