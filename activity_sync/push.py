"""The Push API's commands: ``ingest`` (the server), ``ingest-keys`` (issue, list, revoke), ``directory``
(the directory worker) and ``contacts`` (look a contact up in the directory)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from core.config import catalog_for
from core.errors import UsageError
from core.settings import Settings
from core.topics import Topics

log = logging.getLogger("activity_sync.push")


def cmd_ingest(args) -> int:
    from core.health import serve_process
    from sources.push import metrics
    from sources.push.server import serve

    settings = Settings.from_env()
    health = serve_process("ingest", (metrics,), settings, args.metrics_port)
    loop = asyncio.get_event_loop()

    def ready(url, ingest) -> None:
        health.check("keys_loaded", ingest.keys.ready.is_set)
        health.check("config_loaded", ingest.config.ready.is_set)
        print(f"Push API: {url}/contactinfo and {url}/list (OpenAPI: {url}/openapi.json)", flush=True)

    task = loop.create_task(serve(settings, catalog_for(settings), args.host, args.port, ready))
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        pass
    return 0


async def _produce_key(settings: Settings, key: bytes, value: bytes | None) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(acks="all", **settings.kafka.aiokafka_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(Topics(settings.topic_prefix).push_keys, value, key=key)
    finally:
        await producer.stop()


async def _read_table(settings: Settings, topic: str, apply) -> None:
    """A compacted topic read once to its end, each record applied (unreadable ones skipped)."""
    from core.configtable import read_config_topic

    for k, v in await read_config_topic(settings.kafka, topic):
        try:
            apply(k.encode(), v)
        except Exception:  # noqa: BLE001 - an unreadable record is skipped, as the servers skip it
            pass


async def read_keys(settings: Settings) -> dict:
    from sources.push.keys import KeyRing

    ring = KeyRing()
    await _read_table(settings, Topics(settings.topic_prefix).push_keys, ring.apply)
    return ring.keys


async def issue_key(settings: Settings, key_id: str, tenant: str, origin: str | None) -> str:
    """Issue a key (refusing an id in use): answers ``<id>.<secret>``, shown once."""
    from sources.push.keys import new_key

    try:
        rec, presented = new_key(key_id, tenant, origin)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if key_id in await read_keys(settings):
        raise UsageError(f"key {key_id!r} exists: revoke it first, or choose another id")
    await _produce_key(settings, key_id.encode(), rec.record())
    return presented


def cmd_ingest_keys(args) -> int:
    settings = Settings.from_env()
    if args.action == "issue":
        if not args.id or not args.tenant:
            raise UsageError("ingest-keys issue needs --id and --tenant (and --origin: the endpoint the pushes "
                             "come from, never written back to)")
        presented = asyncio.run(issue_key(settings, args.id, args.tenant, args.origin))
        print(presented)
        print(f"# key {args.id} for tenant {args.tenant}: send it as the ApiKey header; it is shown only now",
              file=sys.stderr)
    elif args.action == "list":
        for k in sorted(asyncio.run(read_keys(settings)).values(), key=lambda k: k.id):
            print(json.dumps(k.public()))
    else:
        if not args.id:
            raise UsageError("ingest-keys revoke needs --id")
        if args.id not in asyncio.run(read_keys(settings)):
            raise UsageError(f"no key {args.id!r}")
        asyncio.run(_produce_key(settings, args.id.encode(), None))
        print(f"revoked {args.id}")
    return 0


def cmd_directory(args) -> int:
    """With a look-up (``--email`` …): print the matching contacts; without: run the directory worker."""
    if any((args.id, args.email, args.phone, args.name, args.all)):
        return cmd_contacts(args)
    if args.tenant:
        raise UsageError("directory --tenant T needs --id, --email, --phone, --name or --all to look up")
    from streams.directory import main as directory_main

    directory_main()
    return 0


async def read_directory(settings: Settings):
    from core.directory import Directory

    d = Directory()
    await _read_table(settings, Topics(settings.topic_prefix).push_directory, d.apply)
    return d


def cmd_contacts(args) -> int:
    settings = Settings.from_env()
    d = asyncio.run(read_directory(settings))
    if not any((args.id, args.email, args.phone, args.name)) and not args.all:
        raise UsageError("contacts needs --id, --email, --phone, --name or --all")
    if not args.tenant:
        raise UsageError("a look-up needs --tenant (the TenantCode)")
    found = d.find(args.tenant, contact_id=args.id, email=args.email, phone=args.phone, name=args.name,
                   limit=args.limit)
    for e in found:
        print(json.dumps(e, ensure_ascii=False, sort_keys=True))
    if not found:
        print(f"no contact of tenant {args.tenant} matches", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub) -> None:
    ig = sub.add_parser("ingest", help="the Push API server: POST /v2/contactinfo and /v2/list into Kafka")
    ig.set_defaults(handler=cmd_ingest)
    ig.add_argument("--host", default=os.environ.get("ACTIVITY_SYNC_INGEST_HOST", "127.0.0.1"),
                    help="address to listen on (default 127.0.0.1)")
    ig.add_argument("--port", type=int, default=int(os.environ.get("ACTIVITY_SYNC_INGEST_PORT", "8094")),
                    help="port to listen on (default 8094)")
    ig.add_argument("--metrics-port", type=int, default=None,
                    help="/metrics, /healthz, /readyz (default $ACTIVITY_SYNC_METRICS_PORT, else 6066)")
    ik = sub.add_parser("ingest-keys", help="Push API keys: issue, list, revoke")
    ik.set_defaults(handler=cmd_ingest_keys)
    ik.add_argument("action", choices=["issue", "list", "revoke"])
    ik.add_argument("--id", help="the key's id (lower-case letters, digits, '-')")
    ik.add_argument("--tenant", help="the tenant (TenantCode) the key pushes for")
    ik.add_argument("--origin", help="the endpoint the pushes come from: its contact changes are never "
                                     "written back to it")
    dr = sub.add_parser("directory", help="the member directory: run its worker, or look contacts up "
                                           "(--tenant T with --id, --email, --phone, --name or --all)")
    dr.set_defaults(handler=cmd_directory)
    ct = sub.add_parser("contacts", help="look contacts up in the member directory (as directory --tenant …)")
    ct.set_defaults(handler=cmd_contacts)
    for p in (dr, ct):
        p.add_argument("--tenant", help="the tenant (TenantCode)")
        p.add_argument("--id", help="ContactId (or AlternativeContactId)")
        p.add_argument("--email", help="an e-mail address")
        p.add_argument("--phone", help="a phone number")
        p.add_argument("--name", help="part of the name")
        p.add_argument("--all", action="store_true", help="every contact (up to --limit)")
        p.add_argument("--limit", type=int, default=100)
