"""The scoring stage under load, beside the enrichment worker in the same run, and the report card
at scale.

1. N raw events of the seed's shapes (5,000 members) through the stream worker (its rate on
   ``activity.enriched``), then the scoring stage over that enriched topic (its rate on
   ``member.scores``, one record per activity scored), each a subprocess as in production.
2. A tenant of 50,000 members with 1,000,000 activities over two years (members' states built
   directly, as the stage leaves them), and the time :func:`core.scoring.report_card` takes for a
   month, a quarter and a year.

    python -m bench.scores [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sys
import tempfile
import time
import uuid

import yaml

from core.settings import KafkaSettings, Settings
from core.topics import Topics, ensure_topics

MODEL = {"tenant": "DEMO", "points": {"DiscussionMessageCreate": 5, "DiscussionMessageReply": 3,
                                      "CommunityMemberJoin": 10, "LibraryEntryView": 1},
         "daily_cap": {"LibraryEntryView": 5}, "half_life_days": 180}


def events(n: int, members: int = 5000) -> list[tuple[bytes, bytes]]:
    from activity_sync.tools import seed_lines

    seeds = [json.loads(x) for x in seed_lines()]
    start = dt.datetime(2026, 10, 1, tzinfo=dt.timezone.utc)
    out = []
    for i in range(n):
        e = dict(seeds[i % len(seeds)], ActivityKey=f"bench-score-{i:08d}",
                 ActivityDate=(start + dt.timedelta(seconds=i * 37)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        for k in ("AuthorExternalKey", "AccessedByExternalKey", "MemberExternalKey", "AgentExternalKey"):
            if k in e:
                e[k] = f"C{i % members:05d}"
        out.append((f"C{i % members:05d}".encode(), json.dumps(e).encode()))
    return out


async def stage_rates(kafka: KafkaSettings, log_dir: str, n: int) -> dict:
    from activity_sync.tools import publish_config
    from bench.__main__ import CONFIG, env_for, produce_all, run_contender

    prefix = f"bscore{uuid.uuid4().hex[:6]}."
    await ensure_topics(kafka, Topics(prefix).specs(6))
    doc = yaml.safe_load(open(CONFIG))
    doc["scoring"] = [MODEL]
    config = f"{log_dir}/scores-config.yaml"
    with open(config, "w") as f:
        yaml.safe_dump(doc, f)
    await publish_config(Settings(kafka=kafka, topic_prefix=prefix, partitions=6, app_id=f"{prefix}app"), config)
    await produce_all(kafka, Topics(prefix).raw, events(n))
    env = env_for(kafka, prefix, ACTIVITY_SYNC_CONFIG=config, ACTIVITY_SYNC_PARTITIONS=6)
    enrich = await run_contender(kafka, "stream worker", ["-m", "streams.app"], env, Topics(prefix).enriched, n, log_dir)
    score = await run_contender(kafka, "scoring stage", ["-m", "streams.scores"],
                                dict(env, ACTIVITY_SYNC_DATADIR=tempfile.mkdtemp(prefix="bench-scores-")),
                                Topics(prefix).member_scores, n, log_dir)
    return {"enrich": enrich, "score": score}


def big_tenant(members: int = 50_000, activities: int = 1_000_000, seed: int = 3) -> list[dict]:
    from core.scoring import new_state, period_key

    rnd = random.Random(seed)
    cats = ["Discussions", "Communities", "Resource Libraries", "Events", "Blogs"]
    start = dt.date(2025, 1, 1)
    states = [new_state("BIG", f"M{i:06d}") for i in range(members)]
    for _ in range(activities):
        s = states[rnd.randrange(members)]
        day = start + dt.timedelta(days=rnd.randrange(730))
        cat = rnd.choice(cats)
        pts = rnd.choice((1, 3, 5, 10))
        for kind in ("month", "quarter", "year"):
            b = s["periods"].setdefault(period_key(kind, day), {})
            a, p = b.get(cat, (0, 0.0))
            b[cat] = (a + 1, p + pts)
        iso = day.isoformat()
        s["activities"] += 1
        s["points"] += pts
        s["score"] += pts
        s["first_seen"] = min(filter(None, (s["first_seen"], iso)))
        s["last_activity"] = s["ref_day"] = max(filter(None, (s["last_activity"], iso)))
    return [s for s in states if s["activities"]]


def report_times(states: list[dict]) -> dict:
    from core.scoring import parse_model, report_card

    model = parse_model({**MODEL, "tenant": "BIG"})
    out = {}
    for period in ("2026-06", "2026-Q2", "2026"):
        t0 = time.perf_counter()
        card = report_card(states, period, model, today=dt.date(2026, 12, 31))
        out[period] = (time.perf_counter() - t0, card["activities"]["now"], card["active_members"]["now"])
    return out


def print_scores(rates: dict | None, times: dict, members: int, activities: int) -> None:
    if rates:
        e, s = rates["enrich"], rates["score"]
        print(f"  stream worker (enrichment):   {e['events_per_s']:8,.0f} events/s  ({e['cpu_us_per_event']:.0f} µs CPU/event)")
        print(f"  scoring stage:                {s['events_per_s']:8,.0f} events/s  ({s['cpu_us_per_event']:.0f} µs CPU/event)")
        print(f"  ratio scoring / enrichment:   {s['events_per_s'] / e['events_per_s']:.2f}")
    for period, (secs, acts, active) in times.items():
        print(f"  report card {period:8} over {members:,} members / {activities:,} activities: {secs:.2f} s "
              f"({acts:,} activities, {active:,} active members in the period)")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scores")
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args()
    from bench.brokers import bench_broker

    log_dir = tempfile.mkdtemp(prefix="activity-sync-bench-scores-")
    with bench_broker(log_dir) as kafka:
        print(f"\n== Scores: the scoring stage beside the stream worker, {args.events:,} events ==", flush=True)
        rates = asyncio.run(stage_rates(kafka, log_dir, args.events))
    t0 = time.perf_counter()
    states = big_tenant()
    print(f"  (50,000 members' states of 1,000,000 activities built in {time.perf_counter() - t0:.1f} s)")
    print_scores(rates, report_times(states), 50_000, 1_000_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
