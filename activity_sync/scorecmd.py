"""``activity-sync scores``: members' engagement scores (``show``), a tenant's report card (``report``,
as text, CSV or printable HTML) and ``rebuild`` (re-score a tenant from the retained history after a
change of its model)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

from core.errors import UsageError
from core.settings import Settings
from core.topics import Topics


async def read_model(settings: Settings, tenant: str):
    from core.configtable import read_config_topic
    from core.scoring import parse_model

    found = None
    for key, value in await read_config_topic(settings.kafka, Topics(settings.topic_prefix).config):
        if key == f"scoring:{tenant}":  # the topic's latest record of the key wins (a tombstone deletes)
            found = value
    return parse_model(json.loads(found)) if found else None


async def read_states(settings: Settings, tenant: str | None = None) -> dict[str, dict]:
    """Each member's latest ``member.scores`` record, as a state (``tenant|member`` -> state)."""
    from activity_sync.anmccmd import read_topic
    from core.avro import DecodeError, decode_member_score
    from core.scoring import state_of_record

    out: dict[str, dict] = {}
    for key, value in await read_topic(settings, Topics(settings.topic_prefix).member_scores):
        if key is None:
            continue
        k = key.decode(errors="replace")
        if tenant is not None and not k.startswith(f"{tenant}|"):
            continue
        if value is None:
            out.pop(k, None)
            continue
        try:
            out[k] = state_of_record(decode_member_score(value))
        except (DecodeError, KeyError, ValueError):
            continue
    return out


async def rebuild(settings: Settings, tenant: str, settle_s: float = 3.0) -> dict:
    """A new generation of the tenant's model; every member it has scored reset; every retained
    activity of the tenant scored again under the new generation."""
    from aiokafka import AIOKafkaProducer

    from activity_sync.anmccmd import read_topic
    from core.avro import DecodeError, decode_any
    from streams.scores import slim

    model = await read_model(settings, tenant)
    if model is None:
        raise UsageError(f"tenant {tenant} has no scoring model (scoring: in the config)")
    topics = Topics(settings.topic_prefix)
    new = model.model_copy(update={"generation": model.generation + 1})
    producer = AIOKafkaProducer(acks="all", **settings.kafka.aiokafka_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(topics.config, key=new.key().encode(), value=json.dumps(new.record()).encode())
        await asyncio.sleep(settle_s)  # the scoring stage adopts the generation: new activities carry it
        resets = 0
        for key in await read_states(settings, tenant):
            t, member = key.split("|", 1)
            await producer.send(topics.scores_activities, key=key.encode(), value=json.dumps(
                {"tenant": t, "member": member, "gen": new.generation, "reset": True}).encode())
            resets += 1
        again = 0
        for _, value in await read_topic(settings, topics.enriched):
            try:
                record = decode_any(value, settings.schema_registry_url)
            except (DecodeError, ValueError):
                continue
            if record.get("tenant_code") != tenant:
                continue
            out = slim(record, new.generation)
            if out is not None:
                await producer.send(topics.scores_activities, key=out[0], value=json.dumps(out[1]).encode())
                again += 1
        await producer.flush()
    finally:
        await producer.stop()
    return {"tenant": tenant, "generation": new.generation, "members_reset": resets, "activities": again}


def current_period(kind: str) -> str:
    from core.scoring import period_key

    return period_key(kind, dt.datetime.now(dt.timezone.utc).date())


def cmd_scores(args) -> int:
    from core.scoring import report_card, report_csv, report_html, score_now

    if args.action == "worker":
        from streams.scores import main as worker_main

        worker_main()
        return 0
    settings = Settings.from_env()
    if not args.tenant:
        raise UsageError("scores: --tenant T (the tenant's TenantCode)")
    if args.action == "rebuild":
        t0 = time.monotonic()
        r = asyncio.run(rebuild(settings, args.tenant))
        print(f"tenant {r['tenant']}: generation {r['generation']}, {r['members_reset']} members reset, "
              f"{r['activities']} retained activities scored again ({time.monotonic() - t0:.1f} s); "
              "the scores follow as the scoring stage reads them")
        return 0
    model = asyncio.run(read_model(settings, args.tenant))
    states = asyncio.run(read_states(settings, args.tenant))
    if args.action == "show":
        rows = sorted(states.values(), key=lambda s: -s["score"])
        if args.member:
            rows = [s for s in rows if s["member"] == args.member]
        for s in rows[: args.limit]:
            now = score_now(s, model) if model else s["score"]
            print(json.dumps({"member": s["member"], "score": round(now, 4), "activities": s["activities"],
                              "points": s["points"], "first_seen": s["first_seen"],
                              "last_activity": s["last_activity"]}))
        return 0
    card = report_card(list(states.values()), args.period or current_period("month"), model)
    if args.csv:
        print(report_csv(card), end="")
    elif args.html:
        with open(args.html, "w") as f:
            f.write(report_html(card))
        print(f"wrote {args.html}")
    else:
        print(json.dumps(card, indent=2))
    return 0


def add_parsers(sub) -> None:
    sc = sub.add_parser("scores", help="engagement scores: show, report (a tenant's report card), rebuild, "
                                       "worker (the scoring stage)")
    sc.set_defaults(handler=cmd_scores)
    sc.add_argument("action", choices=["show", "report", "rebuild", "worker"])
    sc.add_argument("--tenant", help="the tenant (TenantCode)")
    sc.add_argument("--member", help="show: one member")
    sc.add_argument("--limit", type=int, default=20, help="show: the top N (default 20)")
    sc.add_argument("--period", help="report: 2026-11, 2026-Q4 or 2026 (default: this month)")
    sc.add_argument("--csv", action="store_true", help="report: as CSV")
    sc.add_argument("--html", metavar="FILE", help="report: a printable HTML page (print it, or save it as PDF)")
