"""``activity-sync anmc``: the Action Network ↔ Mobile Commons sync's synchronization report (and its
run-now: ``activity-sync source --name NAME --once``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from core.settings import Settings
from core.topics import Topics


async def read_report(settings: Settings) -> tuple[list[dict], dict[str, str], dict]:
    """The report lines, which sync each source belongs to, and the syncs (by name) as ``activity.config`` holds them."""
    from core.anmc import SyncError, parse_sync
    from core.configtable import read_config_topic

    topics = Topics(settings.topic_prefix)
    latest = {k: v for k, v in await read_config_topic(settings.kafka, topics.config) if k.startswith("anmc:")}
    syncs = {}
    for key, value in latest.items():  # each key's latest record
        if not value:
            continue
        try:
            s = parse_sync(json.loads(value))
        except (ValueError, SyncError):
            continue
        syncs[s.name] = s
    sources = {}
    for s in syncs.values():
        sources[s.action_network_source] = sources[s.mobile_commons_source] = s.name
    lines = []
    for _, value in await read_topic(settings, topics.anmc_report):
        try:
            lines.append(json.loads(value))
        except ValueError:
            continue
    return lines, sources, syncs


async def read_topic(settings: Settings, topic: str) -> list[tuple[bytes, bytes]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from core.topics import partition_ids

    c = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **settings.kafka.aiokafka_kwargs())
    await c.start()
    out = []
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(settings.kafka, topic)]
        if not parts:
            return []
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        end = await c.end_offsets(parts)
        while any([await c.position(tp) < end[tp] for tp in parts]):
            for msgs in (await c.getmany(timeout_ms=500)).values():
                out += [(m.key, m.value) for m in msgs]
    finally:
        await c.stop()
    return out


def report_runs(settings: Settings, sync: str | None = None, tenants=None) -> list[dict]:
    from core.anmc import summarize

    lines, sources, syncs = asyncio.run(read_report(settings))
    runs = summarize(lines, sources)
    if sync:
        runs = [r for r in runs if r["sync"] == sync]
    if tenants is not None:
        runs = [r for r in runs if r["sync"] in syncs and syncs[r["sync"]].tenant in tenants]
    return runs


def cmd_anmc(args) -> int:
    if args.action == "worker":
        from streams.anmc import main as worker_main

        worker_main()
        return 0
    runs = report_runs(Settings.from_env(), args.sync)
    if args.last:
        runs = runs[-args.last:]
    if args.json:
        for r in runs:
            print(json.dumps(r))
        return 0
    if not runs:
        print("no runs yet (the first nightly run is at the Action Network source's `at`; "
              "`activity-sync source --name NAME --once` runs one now)")
    for r in runs:
        when = dt.datetime.fromtimestamp(r["at"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if r["at"] else "?"
        read = "" if r["read"] is None else f": {r['read']} read, {r['changes']} new or changed"
        print(f"{when}  {r['sync'] or '?'}  {r['side']}{read}")
        print("  " + ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items())))
        if args.profiles:
            for p in r["profiles"]:
                print(f"    {p['profile']:>16}  {p['outcome']}" + (f"  ({p['detail']})" if p.get("detail") else ""))
    return 0


def add_parsers(sub) -> None:
    an = sub.add_parser("anmc", help="the Action Network <-> Mobile Commons sync: its synchronization report, or "
                                     "worker (its stream stage)")
    an.set_defaults(handler=cmd_anmc)
    an.add_argument("action", nargs="?", choices=["report", "worker"], default="report")
    an.add_argument("--sync", help="one sync's runs (its name in anmc:)")
    an.add_argument("--last", type=int, default=None, help="only the last N runs")
    an.add_argument("--profiles", action="store_true", help="each profile's line, not only the counts")
    an.add_argument("--json", action="store_true", help="one JSON object a run")
