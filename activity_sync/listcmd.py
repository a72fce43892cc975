"""``activity-sync lists``: community lists (``show``, ``members``), the Online Community Connection's
credentials (``connection``), a full resync through the push direction (``push-resync``) and the
list stage (``worker``)."""

from __future__ import annotations

import asyncio
import json
import time

from core.errors import UsageError
from core.settings import Settings
from core.topics import Topics


async def read_lists(settings: Settings) -> tuple[dict, dict]:
    """``({tenant: {id: ListDef}}, {tenant: Connection})`` from ``activity.config``."""
    from core.configtable import read_config_topic
    from core.lists import ListError, parse_connection, parse_list

    latest: dict[str, bytes | None] = {}
    for key, value in await read_config_topic(settings.kafka, Topics(settings.topic_prefix).config):
        if key.startswith(("list:", "occ:")):
            latest[key] = value
    defs: dict = {}
    conns: dict = {}
    for key, value in latest.items():
        if value is None:
            continue
        try:
            if key.startswith("list:"):
                d = parse_list(json.loads(value))
                defs.setdefault(d.tenant, {})[d.id] = d
            else:
                c = parse_connection(json.loads(value))
                conns[c.tenant] = c
        except (ValueError, ListError):
            continue
    return defs, conns


async def read_members(settings: Settings, tenant: str, lid: str | None = None) -> dict[str, dict[str, dict]]:
    """Each list's current members from ``list.members``: ``{list id: {member: record}}``."""
    from activity_sync.anmccmd import read_topic

    out: dict[str, dict[str, dict]] = {}
    for key, value in await read_topic(settings, Topics(settings.topic_prefix).list_members):
        if not key:
            continue
        t, list_id, member = key.decode(errors="replace").split("|", 2)
        if t != tenant or (lid and list_id != lid):
            continue
        members = out.setdefault(list_id, {})
        if value is None:
            members.pop(member, None)
        else:
            members[member] = json.loads(value)
    return out


async def issue(settings: Settings, tenant: str, active: bool) -> tuple[object, str]:
    from aiokafka import AIOKafkaProducer

    from core.lists import issue_connection

    conn, password = issue_connection(tenant, active)
    producer = AIOKafkaProducer(acks="all", **settings.kafka.aiokafka_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(Topics(settings.topic_prefix).config, key=conn.key().encode(),
                                     value=json.dumps(conn.record()).encode())
    finally:
        await producer.stop()
    return conn, password


async def push_resync(settings: Settings, tenant: str, lid: str, endpoint: str) -> dict:
    """The target group set to exactly the list's members through the endpoint's partner API."""
    from activity_sync.admin.lists import member_of_feed
    from core.config import endpoint_from_dict
    from core.configtable import read_config_topic
    from sinks.providers.informz.sink import replace_all

    defs, _ = await read_lists(settings)
    d = defs.get(tenant, {}).get(lid)
    if d is None or d.target_group is None:
        raise UsageError(f"no list {lid!r} of tenant {tenant} offered to the marketing platform (Informz ...)")
    ep = None
    for key, value in await read_config_topic(settings.kafka, Topics(settings.topic_prefix).config):
        if key == f"endpoint:{endpoint}":
            ep = endpoint_from_dict(json.loads(value)) if value else None
    if ep is None or ep.provider != "informz":
        raise UsageError(f"--endpoint {endpoint}: no informz endpoint of that name on activity.config")
    members = (await read_members(settings, tenant, lid)).get(lid, {})
    t0 = time.monotonic()
    r = await replace_all(ep, d.target_group, [member_of_feed(rec, None, tenant) for rec in members.values()])
    return {**r, "seconds": round(time.monotonic() - t0, 2), "target_group": d.target_group}


def cmd_lists(args) -> int:
    if args.action == "worker":
        from streams.lists import main as worker_main

        worker_main()
        return 0
    settings = Settings.from_env()
    if args.action == "show":
        defs, conns = asyncio.run(read_lists(settings))
        for tenant in sorted(defs):
            if args.tenant and tenant != args.tenant:
                continue
            counts = {k: len(v) for k, v in asyncio.run(read_members(settings, tenant)).items()}
            for lid, d in sorted(defs[tenant].items()):
                print(json.dumps({"tenant": tenant, "id": lid, "name": d.name, "target_group": d.target_group,
                                  "enabled": d.enabled, "push": d.push, "members": counts.get(lid, 0)}))
            c = conns.get(tenant)
            if c:
                print(json.dumps({"tenant": tenant, "connection": c.public()}))
        return 0
    if not args.tenant:
        raise UsageError(f"lists {args.action}: --tenant T (the tenant's TenantCode)")
    if args.action == "connection":
        conn, password = asyncio.run(issue(settings, args.tenant, not args.inactive))
        print(f"Online Community Connection of tenant {args.tenant} ({'active' if conn.active else 'not active'}):\n"
              f"  IAMKey:   {conn.iam_key}\n  Password: {password}\n"
              "Enter both in Thrive Marketing Professional (Settings > System Settings > Integration Settings, "
              "Edit Integration Settings, check Active). The password is shown this once; it is stored hashed. "
              "Issuing again replaces both.")
        return 0
    if not args.list:
        raise UsageError(f"lists {args.action}: --list ID (activity-sync lists show gives the ids)")
    if args.action == "members":
        members = asyncio.run(read_members(settings, args.tenant, args.list)).get(args.list, {})
        for m in sorted(members)[: args.limit]:
            print(json.dumps(members[m]))
        return 0
    if not args.endpoint:
        raise UsageError("lists push-resync: --endpoint NAME (an informz endpoint)")
    r = asyncio.run(push_resync(settings, args.tenant, args.list, args.endpoint))
    print(json.dumps(r))
    return 0


def add_parsers(sub) -> None:
    ls = sub.add_parser("lists", help="community lists: show, members, connection (issue the marketing platform's "
                                      "IAMKey and password), push-resync, worker (the list stage)")
    ls.set_defaults(handler=cmd_lists)
    ls.add_argument("action", choices=["show", "members", "connection", "push-resync", "worker"])
    ls.add_argument("--tenant", help="the tenant (TenantCode)")
    ls.add_argument("--list", help="members, push-resync: the list's id")
    ls.add_argument("--endpoint", help="push-resync: the informz endpoint")
    ls.add_argument("--inactive", action="store_true", help="connection: issue it with Active unchecked")
    ls.add_argument("--limit", type=int, default=100, help="members: at most this many (default 100)")
