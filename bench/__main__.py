"""``make bench``: throughput and latency figures, measured side by side on one broker in one run.

Stream stage: the Faust stream worker (as it runs in production, a subprocess) enriching N raw
events of the seed's size, next to plain aiokafka consume-and-produce loops over the same input
(one doing the same enrichment, one only copying bytes: the practical ceilings for Python here).
Throughput is counted on the output topic's end offsets, from the first record out to the last,
so start-up is left out of every contender alike.

    python -m bench [--events 200000] [--only stream|sink]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from activity_sync.devtools.broker import LocalKafka
from activity_sync.tools import publish_config, seed_lines
from core.settings import KafkaSettings, Settings
from core.topics import Topics, ensure_topics, partition_ids

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "activity_sync" / "data" / "embedded.yaml"


def synthetic_lines(n: int) -> list[tuple[bytes, bytes]]:
    seeds = [json.loads(x) for x in seed_lines()]
    out = []
    for i in range(n):
        ev = dict(seeds[i % len(seeds)], ActivityKey=f"bench-{i:08d}")
        out.append((f"member-{i % 5000}".encode(), json.dumps(ev).encode()))
    return out


async def produce_all(kafka: KafkaSettings, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    p = AIOKafkaProducer(acks=1, linger_ms=20, max_batch_size=512 * 1024, **kafka.aiokafka_kwargs())
    await p.start()
    t0 = time.monotonic()
    try:
        for i in range(0, len(msgs), 5000):
            futs = [await p.send(topic, key=k, value=v) for k, v in msgs[i:i + 5000]]
            await asyncio.gather(*futs)
    finally:
        await p.stop()
    return time.monotonic() - t0


async def end_total(consumer: AIOKafkaConsumer, parts) -> int:
    return sum((await consumer.end_offsets(parts)).values())


async def watch_output(kafka: KafkaSettings, topic: str, n: int, timeout: float, proc=None) -> tuple[float, int]:
    """Poll the topic's end offsets: answer (seconds from the first record to the n-th, records counted)."""
    c = AIOKafkaConsumer(**kafka.aiokafka_kwargs())
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(kafka, topic)]
        deadline = time.monotonic() + timeout
        t_first = None
        first_count = 0
        while time.monotonic() < deadline:
            total = await end_total(c, parts)
            now = time.monotonic()
            if t_first is None and total > 0:
                t_first, first_count = now, total
            if total >= n:
                return now - t_first, n - first_count
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"contender exited with {proc.returncode}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"only {total} of {n} records on {topic} after {timeout}s")
    finally:
        await c.stop()


def env_for(kafka: KafkaSettings, prefix: str, raw_prefix: str | None = None, **extra) -> dict:
    env = dict(os.environ)
    env.update({"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "ACTIVITY_SYNC_TOPIC_PREFIX": prefix,
                "ACTIVITY_SYNC_APP_ID": f"{prefix}app", "ACTIVITY_SYNC_CONFIG": str(CONFIG),
                "ACTIVITY_SYNC_METRICS_PORT": "0", "ACTIVITY_SYNC_LOG_LEVEL": "WARNING",
                "ACTIVITY_SYNC_DATADIR": tempfile.mkdtemp(prefix="bench-faust-")})
    if raw_prefix:
        env["BENCH_RAW_TOPIC"] = Topics(raw_prefix).raw
    env.update({k: str(v) for k, v in extra.items()})
    return env


async def run_contender(kafka, name, args, env, out_topic, n, log_dir) -> dict:
    log = open(Path(log_dir) / f"{name}.log", "wb")
    proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        secs, counted = await watch_output(kafka, out_topic, n, timeout=900, proc=proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"name": name, "events_per_s": counted / secs, "seconds": secs, "counted": counted}


async def bench_stream(kafka: KafkaSettings, n: int, partitions: int, log_dir: str) -> list[dict]:
    src = f"bench{uuid.uuid4().hex[:6]}."
    prefixes = {"faust": src, "loop": f"{src}loop.", "copy": f"{src}copy."}
    for p in prefixes.values():
        await ensure_topics(kafka, Topics(p).specs(partitions))
    settings = Settings(kafka=kafka, topic_prefix=src, partitions=partitions)
    await publish_config(settings, CONFIG)
    msgs = synthetic_lines(n)
    size = sum(len(v) for _, v in msgs) / n
    secs = await produce_all(kafka, Topics(src).raw, msgs)
    print(f"produced {n} raw events (mean {size:.0f} bytes) in {secs:.1f}s", flush=True)
    results = []
    results.append(await run_contender(kafka, "faust stream worker (enrich_activities)", ["-m", "streams.app"],
                                       env_for(kafka, src), Topics(src).enriched, n, log_dir))
    results.append(await run_contender(kafka, "aiokafka loop, same enrichment", ["-m", "bench.ceiling", "enrich"],
                                       env_for(kafka, prefixes["loop"], src), Topics(prefixes["loop"]).enriched,
                                       n, log_dir))
    results.append(await run_contender(kafka, "aiokafka loop, copy only", ["-m", "bench.ceiling", "copy"],
                                       env_for(kafka, prefixes["copy"], src), Topics(prefixes["copy"]).enriched,
                                       n, log_dir))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--only", choices=["stream", "sink", "providers", "ams"], default=None,
                    help="one part: stream, sink, providers (Salesforce, Dataverse and the AMS providers) or ams "
                         "(the AMS providers and PostgreSQL only)")
    ap.add_argument("--provider", action="append", metavar="NAME",
                    help="only this declared provider's bench cases against its fake (repeat for more)")
    ap.add_argument("--records", type=int, default=2_000, help="records per provider case (with --provider)")
    args = ap.parse_args()
    if args.provider:  # what each provider's declaration asks for, and nothing else
        from bench.providers import bench_declared

        print("\n== declared providers: sink + runner -> fake API in its own process, 20 ms a response ==",
              flush=True)
        asyncio.run(bench_declared(args.records, only=tuple(args.provider)))
        return 0
    if args.only in ("providers", "ams"):  # no broker needed
        from bench.providers import bench_ams_providers, bench_providers

        if args.only == "providers":
            asyncio.run(bench_providers())
        asyncio.run(bench_ams_providers())
        return 0
    log_dir = tempfile.mkdtemp(prefix="activity-sync-bench-")
    broker = None
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        kafka = KafkaSettings.from_env()
    else:
        broker = LocalKafka(Path(log_dir) / "kafka", heap="1g").start()
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    print(f"broker {kafka.bootstrap_servers}; logs in {log_dir}; {os.cpu_count()} cores", flush=True)
    try:
        if args.only in (None, "stream"):
            res = asyncio.run(bench_stream(kafka, args.events, args.partitions, log_dir))
            print("\n== stream stage: raw -> enriched ==")
            for r in res:
                print(f"  {r['name']:45} {r['events_per_s']:10,.0f} events/s  ({r['counted']} in {r['seconds']:.1f}s)")
            faust, loop, copy = (r["events_per_s"] for r in res)
            print(f"  ratio faust / aiokafka loop with the same enrichment: {faust / loop:.2f}  (target >= 0.5)")
            print(f"  ratio faust / aiokafka copy-only loop:                {faust / copy:.2f}")
        if args.only in (None, "sink"):
            try:
                from bench.sink import bench_sink
            except ImportError:
                pass
            else:
                asyncio.run(bench_sink(kafka, log_dir))
        if args.only is None:
            from bench.providers import bench_providers

            asyncio.run(bench_providers())
            from bench.providers import bench_ams_providers
            asyncio.run(bench_ams_providers())
    finally:
        if broker:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
