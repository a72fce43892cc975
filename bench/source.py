"""The Alida source under load: the source worker reading N member events from the fake Alida API (in
its own process, 1,000-item pages, every request answered 20 ms late) into ``activity.raw``, beside
the broker's produce ceiling: one aiokafka producer (the same settings: ``acks=all``, idempotent)
sending the same number of raw activities of the same size, no HTTP. Alternating, in one run.

    python -m bench.source [--events 20000] [--members 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from core.settings import KafkaSettings, Settings
from core.topics import Topics, ensure_topics, partition_ids

SECRET = "bench-alida-secret"


def start_fake(port: int, events: int, members: int, log_dir: str) -> subprocess.Popen:
    env = dict(os.environ, ALIDA_CLIENT_SECRET=SECRET)
    log = open(Path(log_dir) / "fake-alida.log", "ab")
    p = subprocess.Popen([sys.executable, "-m", "sources.alida.fake", "--port", str(port), "--seed", str(events),
                          "--members", str(members), "--latency-ms", "20"], env=env, stdout=log,
                         stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=2).read()
            return p
        except OSError:
            time.sleep(0.2)
    p.kill()
    raise RuntimeError(f"the fake Alida did not start; see {log_dir}/fake-alida.log")


async def raw_count(kafka: KafkaSettings, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(**kafka.aiokafka_kwargs())
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(kafka, topic)]
        return sum((await c.end_offsets(parts)).values())
    finally:
        await c.stop()


async def one_source_run(kafka: KafkaSettings, port: int, member_lookup: bool) -> dict:
    from core.config import parse_config
    from sources.runner import run_pool

    prefix = f"bsrc{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka=kafka, topic_prefix=prefix, partitions=3, app_id=f"{prefix}app", metrics_port=0)
    topics = Topics(prefix)
    await ensure_topics(kafka, topics.specs(3))
    os.environ["BENCH_ALIDA_SECRET"] = SECRET
    cfg = parse_config({"sources": [{"name": "bench", "kind": "alida", "tenant": "DEMO", "settings": {
        "region": "na1", "community": "demo-community", "client_id": "activity-sync",
        "client_secret_env": "BENCH_ALIDA_SECRET", "base_url": f"http://127.0.0.1:{port}", "page_size": 1000,
        "start_from": "2d", "member_lookup": member_lookup, "customer_id_variable": "CustomerID",
        "concurrent_requests": 8, "every": "1h"}}]})
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(acks="all", **kafka.aiokafka_kwargs())
    await p.start()
    for k, v in cfg.records():
        await p.send_and_wait(topics.config, key=k.encode(), value=v)
    await p.stop()
    stop = asyncio.Event()
    box: dict = {}

    def ready(workers) -> None:
        box["w"] = workers["bench"]
        box["t0"] = time.monotonic()

    async def until_caught_up() -> None:
        while "w" not in box or not box["w"].caught_up.is_set():
            await asyncio.sleep(0.02)
        box["t1"] = time.monotonic()
        stop.set()

    watcher = asyncio.create_task(until_caught_up())
    await run_pool(settings, ["bench"], stop, ready)
    await watcher
    w = box["w"]
    n = await raw_count(kafka, topics.raw)
    seconds = box["t1"] - box["t0"]
    return {"events": n, "seconds": seconds, "rate": n / seconds, "retries": w.poller.http.retries,
            "activities": w.cursor.activities, "prefix": prefix}


async def ceiling_run(kafka: KafkaSettings, n: int, sample: bytes) -> dict:
    from aiokafka import AIOKafkaProducer

    from core.topics import MAX_EVENT_TOPIC_BYTES

    prefix = f"bceil{uuid.uuid4().hex[:6]}."
    topics = Topics(prefix)
    await ensure_topics(kafka, topics.specs(3))
    p = AIOKafkaProducer(acks="all", enable_idempotence=True, linger_ms=5, max_request_size=MAX_EVENT_TOPIC_BYTES,
                         **kafka.aiokafka_kwargs())
    await p.start()
    t0 = time.monotonic()
    try:
        for i in range(0, n, 1000):  # a page at a time, acknowledged before the next, as the source does
            futs = [await p.send(topics.raw, key=f"k{j}".encode(), value=sample) for j in range(i, min(n, i + 1000))]
            await asyncio.gather(*futs)
    finally:
        await p.stop()
    seconds = time.monotonic() - t0
    return {"events": n, "seconds": seconds, "rate": n / seconds}


async def sample_record(kafka: KafkaSettings, prefix: str) -> bytes:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    topic = Topics(prefix).raw
    c = AIOKafkaConsumer(auto_offset_reset="earliest", enable_auto_commit=False, **kafka.aiokafka_kwargs())
    await c.start()
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        batch = await c.getone()
        return batch.value
    finally:
        await c.stop()


async def bench_source(kafka: KafkaSettings, log_dir: str, events: int = 20_000, members: int = 500,
                       rounds: int = 2) -> dict:
    from activity_sync.devtools.broker import free_port

    port = free_port()
    fake = start_fake(port, events, members, log_dir)
    try:
        results: dict[str, list[dict]] = {"source": [], "source, no member look-up": [], "ceiling": []}
        sample = None
        for _ in range(rounds):
            r = await one_source_run(kafka, port, True)
            results["source"].append(r)
            results["source, no member look-up"].append(await one_source_run(kafka, port, False))
            sample = sample or await sample_record(kafka, r["prefix"])
            results["ceiling"].append(await ceiling_run(kafka, r["events"], sample))
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats").read())
        return {"results": results, "events": events, "members": members, "record_bytes": len(sample or b""),
                "fake_requests": stats["requests"]}
    finally:
        fake.terminate()
        fake.wait(10)


def print_source(out: dict) -> None:
    res = out["results"]
    med = {k: statistics.median(r["rate"] for r in v) for k, v in res.items()}
    print(f"  {out['events']} member events of {out['members']} members, records of {out['record_bytes']} bytes; "
          f"the fake answered {out['fake_requests']} requests in all")
    for k, v in res.items():
        rates = [r["rate"] for r in v]
        print(f"  {k:34} {med[k]:9.0f} events/s  (runs: {', '.join(f'{x:.0f}' for x in rates)}; "
              f"{statistics.median(r['seconds'] for r in v):.2f} s)")
    print(f"  ratio source / produce ceiling:                 {med['source'] / med['ceiling']:.2f}")
    print(f"  ratio source without look-ups / ceiling:        {med['source, no member look-up'] / med['ceiling']:.2f}")
    floor = out["events"] / 1000 * 0.020
    print(f"  (the API alone: {out['events'] // 1000} pages x 20 ms = {floor:.2f} s at least, "
          f"{out['events'] / floor:.0f} events/s at most, before member look-ups)")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.source")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--members", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from bench.brokers import bench_broker

    log_dir = tempfile.mkdtemp(prefix="activity-sync-bench-source-")
    with bench_broker(log_dir) as kafka:
        print("\n== Alida source: fake API in its own process, 1,000-item pages, 20 ms a request ==", flush=True)
        print_source(asyncio.run(bench_source(kafka, log_dir, args.events, args.members, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
