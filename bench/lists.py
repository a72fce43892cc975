"""Community lists under load: membership latency in the stream, and full resyncs of a big list.

1. **Membership latency.** 50 lists (codes and categories, thresholds of 1 to 5 activities, some
   windows) over 100,000 members: first one activity per member (the members' states), then raw
   activities at steady rates (400/s, then 2,000/s) through the stream worker and the list stage,
   each a subprocess as in production. For each measured activity that changes a membership, the
   time from its produce to its ``list.members`` record (the record names its ``cause``): p50, p99,
   max, and how many changes were measured.
2. **A full resync of a 100,000-member list**, both directions, in this process: the fake marketing
   platform pulling the whole list through the feed (1,000 members a page), and the push provider's
   ``ReplaceAllSubscribers`` BulkUpload of the same members (the fake's upload, then polling
   ``upload_history`` until Complete).

    python -m bench.lists [--members 100000] [--rate 2000 --rate 400] [--seconds 10]
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

from bench.procstat import stop_processes
from core.settings import KafkaSettings, Settings
from core.topics import Topics, ensure_topics

CODES = ("DiscussionMessageCreate", "DiscussionMessageReply", "LibraryEntryView", "CommunityMemberJoin")


def fifty_lists() -> list[dict]:
    out = []
    for i in range(50):
        code = CODES[i % len(CODES)]
        act: dict = {"codes": [code]} if i % 3 else {"categories": [("Discussions", "Resource Libraries",
                                                                      "Communities")[i % 3 - 0]]}
        if i % 5:
            act["at_least"] = 1 + i % 5
        if i % 4 == 0:
            act["within"] = "30d"
        crit = {"activity": act} if i % 7 else {"all": [{"activity": act}, {"never": {"codes": ["BLOG_POST"]}}]}
        out.append({"tenant": "DEMO", "name": f"Informz Bench List {i:02d}", "criteria": crit})
    return out


def activity(seeds: dict, i: int, member: int, code: str, key: str) -> tuple[bytes, bytes]:
    e = dict(seeds[code], ActivityKey=key,
             ActivityDate=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), TenantCode="DEMO")
    for k in ("AuthorExternalKey", "AccessedByExternalKey", "MemberExternalKey", "AgentExternalKey"):
        if k in e:
            e[k] = f"M{member:06d}"
    e["AuthorEmail"] = f"m{member}@example.org"
    return f"M{member:06d}".encode(), json.dumps(e).encode()


async def latency(kafka: KafkaSettings, log_dir: str, members: int, rates=((400, 15), (2000, 10))) -> dict:
    import subprocess

    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from activity_sync.tools import publish_config, seed_lines
    from bench.__main__ import CONFIG, ROOT, env_for, produce_all
    from core.topics import partition_ids

    seeds = {}
    for line in seed_lines():
        e = json.loads(line)
        seeds.setdefault(e["ActivityCode"], e)
    seeds.setdefault("DiscussionMessageReply", seeds["DiscussionMessageCreate"])
    prefix = f"blists{uuid.uuid4().hex[:6]}."
    topics = Topics(prefix)
    await ensure_topics(kafka, topics.specs(6))
    doc = yaml.safe_load(open(CONFIG))
    doc["lists"] = fifty_lists()
    doc.pop("scoring", None)
    config = f"{log_dir}/lists-config.yaml"
    with open(config, "w") as f:
        yaml.safe_dump(doc, f)
    await publish_config(Settings(kafka=kafka, topic_prefix=prefix, partitions=6, app_id=f"{prefix}app"), config)
    env = env_for(kafka, prefix, ACTIVITY_SYNC_CONFIG=config, ACTIVITY_SYNC_PARTITIONS=6)
    procs = []
    for name, args in (("stream", ["-m", "streams.app"]), ("lists", ["-m", "streams.lists"])):
        log = open(f"{log_dir}/{name}-lists-bench.log", "wb")
        penv = dict(env, ACTIVITY_SYNC_DATADIR=tempfile.mkdtemp(prefix=f"bench-{name}-"))
        procs.append(subprocess.Popen([sys.executable, *args], env=penv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **kafka.aiokafka_kwargs())
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        state_parts = [TopicPartition(topics.lists_state, p) for p in await partition_ids(kafka, topics.lists_state)]
        t0 = time.monotonic()
        await produce_all(kafka, topics.raw, [activity(seeds, i, i, CODES[i % 3], f"pre-{i}") for i in range(members)])
        while sum((await consumer.end_offsets(state_parts)).values()) < members:
            if time.monotonic() - t0 > 1200:
                raise RuntimeError("the list stage did not take the members' first activities within 20 minutes")
            await asyncio.sleep(1)
        preload_s = time.monotonic() - t0
        out_parts = [TopicPartition(topics.list_members, p) for p in await partition_ids(kafka, topics.list_members)]
        consumer.assign(out_parts)
        await consumer.seek_to_end(*out_parts)
        for tp in out_parts:
            await consumer.position(tp)
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        rnd = random.Random(7)

        async def read() -> None:
            while True:
                for msgs in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.monotonic()
                    for m in msgs:
                        if m.value:
                            cause = json.loads(m.value).get("cause")
                            if cause in sent and cause not in seen:
                                seen[cause] = now

        reader = asyncio.ensure_future(read())
        producer = AIOKafkaProducer(acks=1, linger_ms=2, **kafka.aiokafka_kwargs())
        await producer.start()
        phases = []
        try:
            for rate, secs in rates:
                keys = []
                n = int(rate * secs)
                start = time.monotonic()
                for i in range(n):
                    due = start + i / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    key = f"lat-{rate}-{i}"
                    k, v = activity(seeds, i, rnd.randrange(members), rnd.choice(CODES), key)
                    sent[key] = time.monotonic()
                    keys.append(key)
                    await producer.send(topics.raw, key=k, value=v)
                produced_s = time.monotonic() - start
                await producer.flush()
                quiet, last = time.monotonic(), len(seen)
                while time.monotonic() - quiet < 8 and time.monotonic() - start < secs + 300:
                    await asyncio.sleep(0.5)  # until no new change has come for 8 s: the backlog is done
                    if len(seen) != last:
                        quiet, last = time.monotonic(), len(seen)
                lat = sorted((seen[k] - sent[k]) * 1000 for k in keys if k in seen)
                phases.append({"rate": rate, "activities": n, "produced_s": produced_s, "changes": len(lat),
                               "p50_ms": q(lat, 0.5), "p99_ms": q(lat, 0.99), "max_ms": lat[-1] if lat else float("nan")})
        finally:
            await producer.stop()
        reader.cancel()
    finally:
        await consumer.stop()
        stop_processes(procs)
    return {"members": members, "lists": 50, "preload_s": preload_s, "phases": phases}


def q(lat: list[float], x: float) -> float:
    return lat[min(len(lat) - 1, int(x * len(lat)))] if lat else float("nan")


async def resyncs(members: int) -> dict:
    """A full resync of a ``members``-member list through the feed (pull) and through the push provider."""
    import os

    from aiohttp import web

    from activity_sync.admin.lists import ListsView, feed_routes
    from core.config import endpoint_from_dict
    from core.lists import issue_connection, parse_list
    from sinks.providers.informz.fake import FakeInformz
    from sinks.providers.informz.sink import replace_all

    view = ListsView()
    d = parse_list({"tenant": "DEMO", "name": "Informz Big List", "criteria": {"activity": {"codes": ["Login"]}}})
    view.defs["DEMO"] = {d.id: d}
    conn, password = issue_connection("DEMO")
    view.connections["DEMO"] = conn
    view.members[("DEMO", d.id)] = {f"M{i:06d}": (i, {"member": f"M{i:06d}", "email": f"m{i}@example.org",
                                                      "first_name": "First", "last_name": f"L{i}"})
                                    for i in range(members)}
    view.high[("DEMO", d.id)] = (0, members - 1)
    app = web.Application()
    feed_routes(app, lambda r: view, lambda r: None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    fake = await FakeInformz(hour_s=0, bulk_delay_s=0.0).start()
    try:
        fake.integration.update(active=True, iam_key=conn.iam_key, password=password,
                                feed_url=f"http://127.0.0.1:{port}/occ/v1")
        t0 = time.monotonic()
        (g,) = await fake.refresh()
        info = await fake.sync(fake.groups[g["id"]])
        pull_s = time.monotonic() - t0
        assert info["members"] == members, info["error"]
        t0 = time.monotonic()
        again = await fake.sync(fake.groups[g["id"]])
        resync_s = time.monotonic() - t0
        os.environ["BENCH_INFORMZ_PASSWORD"] = fake.password
        ep = endpoint_from_dict({"name": "tmp", "provider": "informz", "tenant": "DEMO", "settings": {
            "url": fake.url, "brand_id": fake.brand_id, "brand": fake.brand, "username": fake.user,
            "password_env": "BENCH_INFORMZ_PASSWORD", "timeout_s": 300}})
        rows = [{"RemoteId": r["member"], "Email": r["email"], "FirstName": r["first_name"], "LastName": r["last_name"]}
                for _, r in view.members[("DEMO", d.id)].values()]
        t0 = time.monotonic()
        done = await replace_all(ep, "Pushed Big List", rows)
        push_s = time.monotonic() - t0
        assert done["status"] == "Complete" and len(fake.group_named("Pushed Big List")["members"]) == members
    finally:
        await fake.stop()
        await runner.cleanup()
    return {"members": members, "pull_s": pull_s, "pages": members // 1000 + 1, "no_change_resync_s": resync_s,
            "no_change_transfer": again["last_transfer"], "push_s": push_s}


def print_lists(lat: dict | None, sync: dict) -> None:
    if lat:
        print(f"  {lat['members']:,} members' first activities through both stages (stream worker, list stage): "
              f"{lat['preload_s']:.1f} s ({lat['members'] / lat['preload_s']:,.0f} activities/s, start-up included)")
        for ph in lat["phases"]:
            print(f"  membership latency at {ph['rate']:,} activities/s ({ph['activities']:,} in {ph['produced_s']:.1f} s), "
                  f"{lat['lists']} lists over {lat['members']:,} members: {ph['changes']:,} changes, p50 "
                  f"{ph['p50_ms']:.0f} ms, p99 {ph['p99_ms']:.0f} ms, max {ph['max_ms']:.0f} ms "
                  f"(activity produced -> list.members)")
    print(f"  full resync of a {sync['members']:,}-member list through the feed (the fake pulls "
          f"{sync['pages']} pages): {sync['pull_s']:.1f} s; a resync with no change: {sync['no_change_resync_s']:.2f} s "
          f"({sync['no_change_transfer']['members']} members transferred)")
    print(f"  the same list through the push provider (ReplaceAllSubscribers BulkUpload, polled to Complete): "
          f"{sync['push_s']:.1f} s")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lists")
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--rate", type=int, action="append", help="a rate to measure (default 400 for 15 s, 2000 for 10 s)")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    from bench.brokers import bench_broker

    log_dir = tempfile.mkdtemp(prefix="activity-sync-bench-lists-")
    with bench_broker(log_dir) as kafka:
        print(f"\n== Lists: 50 lists over {args.members:,} members; full resyncs ==", flush=True)
        rates = [(r, args.seconds) for r in args.rate] if args.rate else ((400, 15), (2000, 10))
        lat = asyncio.run(latency(kafka, log_dir, args.members, rates))
    print_lists(lat, asyncio.run(resyncs(args.members)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
