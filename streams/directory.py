"""The member directory: a Faust app whose agents materialise what the Push API wrote into tables.

- ``lists`` reads ``push.lists`` (keyed ``tenant|ListId``) into the table ``list-state`` (changelog
  ``push.list-state``): each list's name, type and members. An operation's effect (who was added,
  who removed; Replace sets the list to exactly the ids sent) goes out per contact to
  ``push.memberships``, keyed ``tenant|ContactId``.
- ``contacts`` reads ``push.contacts`` and ``push.memberships`` (both keyed ``tenant|ContactId``, so
  co-partitioned) into the table ``directory`` (changelog ``push.directory``): one entry per contact
  with its details, groups and list memberships. Every reader (the stream stage's identity
  resolution, the admin page, ``activity-sync contacts``) follows ``push.directory``
  (:mod:`core.directory`).

Each change (contact created, updated, deleted, joined or left a group, added to or removed from a
list) becomes an activity of the ``Contacts`` category on ``activity.raw``, so subscriptions can
write it to an AMS/CRM. It carries ``OriginSystem``: the endpoint the ingest key names (the AMS the
push came from), which routing never writes the change back to. Its ``ActivityKey`` is derived from
the position of the push record, so a record processed twice (after a crash) yields the same keys,
which the sinks drop as duplicates.

Every send of an event (activities, membership records) is acknowledged before the table is
written, and Faust flushes the table's changelog before it commits the offset: a crash repeats,
never loses. A restarted worker recovers its tables from their changelogs by itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from datetime import datetime, timezone

import faust

from core import metrics as core_metrics
from core.avro import decode_single_object, parsed_schema
from core.errors import guarded
from core.faustapp import faust_role_main, make_app
from core.health import Health
from core.settings import Settings
from core.topics import Topics

log = logging.getLogger("activity_sync.directory")
_NS = uuid.UUID("6f1c2d1e-8a57-4c1e-9b8e-2f7d3a0c5e11")
CONTACT_FIELDS = ("Addresses", "PhoneNumbers", "EmailAddresses", "Demographics", "Education", "JobHistory", "Orders")

# The Contacts-category codes the directory emits (core/data/catalog.yaml declares them).
CREATE, UPDATE, DELETE = "ContactCreate", "ContactUpdate", "ContactDelete"
GROUP_JOIN, GROUP_LEAVE = "ContactGroupJoin", "ContactGroupLeave"
LIST_ADD, LIST_REMOVE = "ContactListAdd", "ContactListRemove"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def entry_of(record: dict, old: dict | None) -> dict:
    """A ``push.contacts`` record as a directory entry (the lists kept from the entry before it)."""
    details = {k: v for k, v in record["ContactDetails"].items() if v is not None}
    return {
        "tenant": record["tenant_code"], "ContactId": details["ContactId"],
        "deleted": bool(details.get("IsDeleted")), "details": details,
        "groups": {g["GroupId"]: {k: v for k, v in g.items() if v is not None} for g in record["Groups"]},
        **{name: record[name] for name in CONTACT_FIELDS},
        "lists": (old or {}).get("lists", {}),
        "origin": record.get("origin"), "updated_at": record["received_at"],
    }


def _person(entry: dict) -> dict:
    d = entry.get("details") or {}
    name = " ".join(x for x in (d.get("FirstName"), d.get("LastName")) if x)
    props = {"ContactExternalKey": entry["ContactId"], "ContactContactKey": entry["ContactId"],
             "ContactFirstName": d.get("FirstName"), "ContactLastName": d.get("LastName"),
             "ContactDisplayName": name or d.get("OrganizationName"), "ContactCompanyName": d.get("OrganizationName"),
             "PrimaryEmailAddress": d.get("PrimaryEmailAddress"), "IsMember": d.get("IsMember"),
             "ContactType": d.get("ContactType")}
    return {k: v for k, v in props.items() if v is not None}


def contact_changes(old: dict | None, new: dict) -> list[tuple[str, dict]]:
    """What changed between two entries of one contact: ``[(activity code, its own properties)]``."""
    was = old is not None and not old.get("deleted") and bool(old.get("details"))
    if new["deleted"]:
        return [(DELETE, {})] if was else []
    out: list[tuple[str, dict]] = []
    if not was:
        out.append((CREATE, {}))
        before_groups: dict = {}
    else:
        changed = sorted(k for k in set(old["details"]) | set(new["details"])
                         if old["details"].get(k) != new["details"].get(k))
        changed += [k for k in CONTACT_FIELDS if (old.get(k) or []) != (new.get(k) or [])]
        changed += ["Groups"] if old.get("groups") != new["groups"] else []
        if [c for c in changed if c != "Groups"]:
            out.append((UPDATE, {"UpdatedProperties": ",".join(c for c in changed if c != "Groups")}))
        before_groups = old.get("groups") or {}
    for gid, g in sorted(new["groups"].items()):
        if gid not in before_groups:
            out.append((GROUP_JOIN, _group(g)))
    for gid, g in sorted(before_groups.items()):
        if gid not in new["groups"]:
            out.append((GROUP_LEAVE, _group(g)))
    return out


def _group(g: dict) -> dict:
    props = {"GroupKey": g.get("GroupId"), "GroupName": g.get("GroupName"), "GroupType": g.get("GroupType"),
             "GroupSubType": g.get("GroupSubType"), "GroupRole": g.get("Role"), "GroupKind": g.get("GroupKind")}
    return {k: v for k, v in props.items() if v is not None}


_DESCRIPTIONS = {CREATE: "Contact created", UPDATE: "Contact updated", DELETE: "Contact deleted",
                 GROUP_JOIN: "Joined group", GROUP_LEAVE: "Left group", LIST_ADD: "Added to list",
                 LIST_REMOVE: "Removed from list"}


def change_activity(entry: dict, code: str, props: dict, position: str, n: int, when_ms: int,
                    origin: str | None) -> dict:
    """One change as a raw activity (JSON object for ``activity.raw``)."""
    person = _person(entry)
    about = props.get("GroupName") or props.get("ListName") or props.get("GroupKey") or props.get("ListKey")
    desc = _DESCRIPTIONS[code] + (f": {about}" if about else "")
    if code == UPDATE:
        desc += f" ({props['UpdatedProperties']})"
    event = {
        "ActivityKey": str(uuid.uuid5(_NS, f"{position}|{n}|{code}")),
        "ActivityCode": code, "ActivityDate": _iso(when_ms), "TenantCode": entry["tenant"],
        "ActivityDescription": desc, "ObjectType": "Contact", **person, **props,
    }
    if origin:
        event["OriginSystem"] = origin
    return event


def apply_list(state: dict | None, op: dict) -> tuple[dict, list[str], list[str]]:
    """A list operation on a list's state: the new state, who was added, who removed."""
    members = set((state or {}).get("members", []))
    ids = op["ContactIds"]
    if op["Mode"] == "Add":
        new = members | set(ids)
    elif op["Mode"] == "Remove":
        new = members - set(ids)
    else:
        new = set(ids)
    name = op.get("ListName") if op.get("ListName") is not None else (state or {}).get("ListName")
    kind = op.get("ListType") if op.get("ListType") is not None else (state or {}).get("ListType")
    return ({"ListId": op["ListId"], "ListName": name, "ListType": kind, "members": sorted(new)},
            sorted(new - members), sorted(members - new))


def create_app(settings: Settings | None = None, health: Health | None = None) -> faust.App:
    settings = settings or Settings.from_env()
    topics = Topics(settings.topic_prefix)
    n = settings.partitions
    app = make_app(f"{settings.app_id}-directory", settings, "directory", topic_partitions=n)
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    contacts_in = app.topic(topics.push_contacts, topics.push_memberships, **raw)
    lists_in = app.topic(topics.push_lists, **raw)
    raw_out = app.topic(topics.raw, **raw)
    memberships_out = app.topic(topics.push_memberships, **raw)
    # values are JSON bytes (the changelogs' serializers are raw: readers parse plain JSON)
    table_kw = dict(default=None, partitions=n, key_type=bytes, value_type=bytes)
    directory = app.Table("directory", changelog_topic=app.topic(topics.push_directory, partitions=n, **raw),
                          **table_kw)
    list_state = app.Table("list-state", changelog_topic=app.topic(topics.push_list_state, partitions=n, **raw),
                           **table_kw)
    contact_schema, list_schema = parsed_schema("push_contact"), parsed_schema("push_list")

    async def send_all(sends) -> None:
        futures = [await topic.send(key=k, value=v) for topic, k, v in sends]
        await asyncio.gather(*futures)

    def activity(entry, code, props, position, i, when, origin):
        event = change_activity(entry, code, props, position, i, when, origin)
        return (raw_out, entry["ContactId"].encode(), json.dumps(event, ensure_ascii=False).encode())

    @app.agent(contacts_in)
    async def contacts(stream):
        async for event in stream.events():
            msg = event.message
            position = f"{msg.topic}|{msg.partition}|{msg.offset}"
            key = msg.key
            old = _loads(directory.get(key))
            try:
                if msg.topic == topics.push_contacts:
                    record = decode_single_object(msg.value, contact_schema)
                    new = entry_of(record, old)
                    changes = contact_changes(old, new)
                    when, origin = record["received_at"], record.get("origin")
                    if isinstance(when, datetime):
                        when = int(when.timestamp() * 1000)
                    new["updated_at"] = when
                else:
                    op = json.loads(msg.value)
                    tenant, cid = key.decode().split("|", 1)
                    new = dict(old) if old else {"tenant": tenant, "ContactId": cid, "deleted": False,
                                                 "details": {}, "groups": {}, "lists": {}}
                    lists = dict(new.get("lists") or {})
                    changes = []
                    if op["op"] == "add" and op["ListId"] not in lists:
                        lists[op["ListId"]] = {"ListName": op.get("ListName"), "ListType": op.get("ListType")}
                        changes = [(LIST_ADD, _list_props(op))]
                    elif op["op"] == "remove" and op["ListId"] in lists:
                        del lists[op["ListId"]]
                        changes = [(LIST_REMOVE, _list_props(op))]
                    new["lists"] = lists
                    when, origin = op["at"], op.get("origin")
            except Exception as exc:  # noqa: BLE001 - a record that cannot be read is logged, not fatal
                log.error("directory: %s unreadable: %s: %s", position, type(exc).__name__, exc)
                continue
            # a contact not pushed yet (only list memberships so far) or deleted has no activities
            await send_all([activity(new, c, p, position, i, when, origin) for i, (c, p) in enumerate(changes)
                            if new.get("details") and (c == DELETE or not new["deleted"])])
            directory[key] = _dumps(new)

    @app.agent(lists_in)
    async def lists(stream):
        async for event in stream.events():
            msg = event.message
            try:
                op = decode_single_object(msg.value, list_schema)
            except Exception as exc:  # noqa: BLE001
                log.error("directory: push.lists %s@%s unreadable: %s", msg.partition, msg.offset, exc)
                continue
            when = op["received_at"]
            if isinstance(when, datetime):
                when = int(when.timestamp() * 1000)
            state, added, removed = apply_list(_loads(list_state.get(msg.key)), op)
            tenant = op["tenant_code"]
            base = {"ListId": op["ListId"], "ListName": state["ListName"], "ListType": state["ListType"],
                    "origin": op.get("origin"), "at": when}
            await send_all([(memberships_out, f"{tenant}|{cid}".encode(),
                             json.dumps({**base, "op": what}).encode())
                            for what, ids in (("add", added), ("remove", removed)) for cid in ids])
            list_state[msg.key] = _dumps(state)

    return app


def _loads(value: bytes | None) -> dict | None:
    return None if value is None else json.loads(value)


def _dumps(value: dict) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode()


def _list_props(op: dict) -> dict:
    props = {"ListKey": op["ListId"], "ListName": op.get("ListName"), "ListType": op.get("ListType")}
    return {k: v for k, v in props.items() if v is not None}


def main() -> None:
    sys.exit(guarded(_main))


def _main() -> int:
    return faust_role_main("directory", create_app, (core_metrics,))


if __name__ == "__main__":
    main()
