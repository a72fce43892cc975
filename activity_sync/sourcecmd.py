"""The polling sources' commands: ``source`` (run one source, several, or every one the config holds)
and ``sources`` (the kinds and their settings, or where each configured source is)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time

from core.errors import UsageError
from core.settings import Settings

log = logging.getLogger("activity_sync.source")


def cmd_source(args) -> int:
    from core.health import serve_process
    from sources import metrics
    from sources.runner import run_pool

    if not args.name and not args.all:
        raise UsageError("source: --name NAME (one source; repeat it for several) or --all (every enabled source "
                         "activity.config holds)")
    settings = Settings.from_env()
    health = serve_process("source", (metrics,), settings, args.metrics_port)
    loop = asyncio.get_event_loop()
    stop = asyncio.Event()
    workers_seen: dict = {}

    def ready(workers) -> None:
        workers_seen.update(workers)
        health.check("sources_started", lambda: all(w.started.is_set() for w in workers.values()))
        health.check("sources_polling", lambda: all(w.polls > 0 for w in workers.values()))
        print(f"sources running: {', '.join(workers) or 'none'}", flush=True)

    for sig in (signal.SIGTERM, signal.SIGINT):  # a graceful stop: the page in hand finishes, nothing repeats
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(run_pool(settings, None if args.all else args.name, stop, ready, once=args.once))
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    return 0


def source_status(settings: Settings) -> list[dict]:
    """Each configured source with where its cursor is and how far behind (the admin Status tab, ``sources --status``)."""
    from sources.runner import read_cursors, read_sources

    async def read():
        return await read_sources(settings), await read_cursors(settings)

    sources, cursors = asyncio.run(read())
    return status_rows(sources, cursors)


def status_rows(sources: dict, cursors: dict, now: float | None = None) -> list[dict]:
    from core.envelope import parse_date

    now = time.time() if now is None else now
    rows = []
    for name, src in sorted(sources.items()):
        c = cursors.get(name) or {}
        updated = c.get("updated")
        lag = None
        if updated:
            try:
                lag = max(0.0, now - parse_date(updated, "cursor").timestamp())
            except ValueError:
                lag = None
        caught = c.get("caught_up_at")
        rows.append({"source": name, "kind": src.kind, "tenant": src.tenant, "enabled": src.enabled,
                     "cursor": updated, "cursor_id": c.get("id"), "records": c.get("records", 0),
                     "activities": c.get("activities", 0), "lag_s": lag,
                     "last_caught_up": caught, "committed_at": c.get("at")})
    return rows


def cmd_sources(args) -> int:
    from sources.registry import describe

    if args.status:
        for row in source_status(Settings.from_env()):
            print(json.dumps(row))
        return 0
    for kind in describe():
        if args.schema:
            print(json.dumps(kind, indent=2))
        else:
            props = kind["settings"]["properties"]
            print(f"{kind['kind']:10} {kind['description']}")
            for name, p in props.items():
                print(f"    {name:24} {p.get('description', '')}")
    return 0


def add_parsers(sub) -> None:
    so = sub.add_parser("source", help="run polling sources (one per --name, or --all) into activity.raw")
    so.set_defaults(handler=cmd_source)
    so.add_argument("--name", action="append", help="a source's name in activity.config (repeat for several)")
    so.add_argument("--all", action="store_true", help="every enabled source activity.config holds, in this process")
    so.add_argument("--once", action="store_true", help="run now: one poll of each, then exit")
    so.add_argument("--metrics-port", type=int, default=None,
                    help="/metrics, /healthz, /readyz (default $ACTIVITY_SYNC_METRICS_PORT, else 6066)")
    ss = sub.add_parser("sources", help="the source kinds and their settings, or --status: each source's position")
    ss.set_defaults(handler=cmd_sources)
    ss.add_argument("--schema", action="store_true", help="each kind's settings as JSON Schema")
    ss.add_argument("--status", action="store_true", help="each configured source's cursor and lag (reads Kafka)")


__all__ = ["add_parsers", "source_status", "status_rows"]
