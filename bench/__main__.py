"""``make bench``: throughput and latency figures, measured side by side on one broker in one run.

Stream stage: the Faust stream worker (as it runs in production, a subprocess) enriching N raw
events of the seed's size, next to plain aiokafka consume-and-produce loops over the same input
(one doing the same enrichment, one only copying bytes: the practical ceilings for Python here).
Throughput is counted on the output topic's end offsets, from the first record out to the last,
so start-up is left out of every contender alike.

Each stream contender runs ``--rounds`` times (3), in a rotating order, and the figures are the
median with the spread, with each contender's own CPU time per event (from /proc, so another
process's load does not count) and the load average: a burst of other load hits all of them alike.

    python -m bench [--events 100000] [--rounds 3] [--only stream|sink|pool|ingest|source|scores|anmc|lists]
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
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from activity_sync.devtools.broker import LocalKafka
from bench.procstat import MachineLoad, broker_pids, cpu_seconds, rss_mb, stop_processes
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


class Stalled(RuntimeError):
    """A contender wrote nothing new for ``STALL_S`` seconds."""


STALL_S = 60.0


async def watch_output(kafka: KafkaSettings, topic: str, n: int, timeout: float, start=lambda: ()) -> dict:
    """Read the topic's end offsets, then ``start()`` the processes (answers them), then poll until
    ``n`` more records than at the start are there: answers seconds from the first new record to the
    n-th, records counted, and the CPU the processes (and, apart, the broker) spent in that window.
    Raises :class:`Stalled` when nothing new arrives for ``STALL_S`` seconds."""
    c = AIOKafkaConsumer(**kafka.aiokafka_kwargs())
    await c.start()
    procs: list = []
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(kafka, topic)]
        base = await end_total(c, parts)  # before the processes start: all they write is counted
        procs = list(start())
        brokers = broker_pids()
        broker_first = 0.0
        deadline = time.monotonic() + timeout
        t_first = cpu_first = None
        rss_first = 0.0
        first_count = total = last = 0
        progressed = time.monotonic()
        while time.monotonic() < deadline:
            total = await end_total(c, parts) - base
            now = time.monotonic()
            if total > last:
                last, progressed = total, now
            elif now - progressed > STALL_S:
                raise Stalled(f"{total} of {n} records on {topic}, nothing new for {STALL_S:.0f}s")
            if t_first is None and total > 0:
                t_first, first_count = now, total
                cpu_first = sum(cpu_seconds(p.pid) for p in procs)
                broker_first = sum(cpu_seconds(pid) for pid in brokers)
                rss_first = max((rss_mb(p.pid) for p in procs), default=0.0)
            if total >= n:
                cpu = sum(cpu_seconds(p.pid) for p in procs) - (cpu_first or 0)
                return {"seconds": now - t_first, "counted": n - first_count, "cpu_s": cpu,
                        "broker_cpu_s": sum(cpu_seconds(pid) for pid in brokers) - broker_first,
                        "rss_mb": (rss_first, max((rss_mb(p.pid) for p in procs), default=0.0))}
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"contender exited with {p.returncode}")
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


async def run_contender(kafka, name, args, env, out_topic, n, log_dir, workers: int = 1) -> dict:
    """Run the contender's processes until ``n`` records are out. One that stalls is stopped and its
    log's last lines printed; the caller decides whether to run it again."""
    procs, logs = [], []

    def start() -> list:
        for i in range(workers):
            logs.append(Path(log_dir) / f"{name.split()[0]}-{uuid.uuid4().hex[:4]}-{i}.log")
            procs.append(subprocess.Popen([sys.executable, *args], env=env, stdout=open(logs[-1], "wb"),
                                          stderr=subprocess.STDOUT, cwd=ROOT))
        return procs

    try:
        got = await watch_output(kafka, out_topic, n, timeout=900, start=start)
    except Stalled as exc:
        stop_processes(procs)
        tails = "".join(f"\n    {line}" for log in logs for line in log.read_text(errors="replace").splitlines()[-5:])
        print(f"  {name} stalled ({exc}); its log ends:{tails}", flush=True)
        raise
    finally:
        stop_processes(procs)
    return {"name": name, "events_per_s": got["counted"] / got["seconds"], "seconds": got["seconds"],
            "counted": got["counted"], "cpu_us_per_event": got["cpu_s"] / got["counted"] * 1e6,
            "broker_cores": got["broker_cpu_s"] / got["seconds"], "cores": got["cpu_s"] / got["seconds"],
            "rss_mb": got["rss_mb"]}


def inprocess_cpu(events: int = 20_000, repeats: int = 5) -> list[float]:
    """Enrichment plus Avro encoding, µs of this process's CPU per event over the seed's mix routed by
    the embedded config: process time, so the machine's other load does not count."""
    from core.avro import make_codec
    from core.config import catalog_for, parse_config, read_config_file
    from core.routing import Routing
    from streams.enrich import Enricher

    routing = Routing(catalog_for(Settings.from_env()))
    for key, value in parse_config(read_config_file(CONFIG)).records():
        routing.apply_record(key, value)
    enricher, codec = Enricher(routing.catalog, routing), make_codec(None, "activity.enriched")
    msgs = synthetic_lines(events)
    out = []
    for _ in range(repeats + 1):  # the first warms up
        t0 = time.process_time()
        for i, (k, v) in enumerate(msgs):
            codec.encode(enricher.enrich(v, k, "activity.raw", 0, i, 0).record)
        out.append((time.process_time() - t0) / events * 1e6)
    return out[1:]


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:,.0f} (min {min(values):,.0f}, max {max(values):,.0f}, ±{(max(values) - min(values)) / 2 / med:.0%})"


CONTENDERS = ("faust", "loop", "copy")
LABELS = {"faust": "faust stream worker (enrich_activities)", "loop": "aiokafka loop, same enrichment",
          "copy": "aiokafka loop, copy only"}


async def stream_contender(kafka: KafkaSettings, c: str, src: str, run: str, n: int, partitions: int,
                           log_dir: str) -> dict:
    """One run of contender ``c`` over the raw topic of ``src``, on a consumer group and output of its own."""
    if c == "faust":  # a new consumer group on the same raw topic; its output counted from its start
        return await run_contender(kafka, LABELS[c], ["-m", "streams.app"],
                                   env_for(kafka, src, ACTIVITY_SYNC_APP_ID=f"{src}app{run}"),
                                   Topics(src).enriched, n, log_dir)
    out = f"{src}{c}{run}."
    await ensure_topics(kafka, Topics(out).specs(partitions))
    return await run_contender(kafka, LABELS[c], ["-m", "bench.ceiling", "enrich" if c == "loop" else "copy"],
                               env_for(kafka, out, src), Topics(out).enriched, n, log_dir)


async def bench_stream(kafka: KafkaSettings, n: int, partitions: int, log_dir: str, rounds: int = 3) -> dict:
    """Each contender ``rounds`` times, in a rotating order (a burst of other load on the machine hits
    all of them alike), each run on the same input with its own consumer group and output."""
    src = f"bench{uuid.uuid4().hex[:6]}."
    await ensure_topics(kafka, Topics(src).specs(partitions))
    settings = Settings(kafka=kafka, topic_prefix=src, partitions=partitions)
    await publish_config(settings, CONFIG)
    msgs = synthetic_lines(n)
    size = sum(len(v) for _, v in msgs) / n
    secs = await produce_all(kafka, Topics(src).raw, msgs)
    print(f"produced {n} raw events (mean {size:.0f} bytes) in {secs:.1f}s; load average {os.getloadavg()[0]:.2f}; "
          f"{rounds} rounds, contenders alternating", flush=True)
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    load = MachineLoad()
    for r in range(rounds):
        order = CONTENDERS[r % 3:] + CONTENDERS[:r % 3]
        for c in order:
            try:
                res = await stream_contender(kafka, c, src, f"{r}", n, partitions, log_dir)
            except Stalled:  # once more, on a new group and output: the figures stay comparable
                res = await stream_contender(kafka, c, src, f"{r}again", n, partitions, log_dir)
            runs[c].append(res)
            print(f"  round {r + 1}: {c:5} {res['events_per_s']:9,.0f} events/s  "
                  f"{res['cpu_us_per_event']:6.0f} µs CPU/event  RSS {res['rss_mb'][0]:.0f} -> "
                  f"{res['rss_mb'][1]:.0f} MB", flush=True)
    two = await run_contender(kafka, "two faust stream workers", ["-m", "streams.app"],
                              env_for(kafka, src, ACTIVITY_SYNC_APP_ID=f"{src}two"), Topics(src).enriched, n,
                              log_dir, workers=2)
    return {"runs": runs, "two": two, "load": load.summary(), "cpu": inprocess_cpu()}


def print_stream(res: dict) -> None:
    runs = res["runs"]
    med = {c: statistics.median(r["events_per_s"] for r in runs[c]) for c in CONTENDERS}
    print("\n== stream stage: raw -> enriched (median of the rounds; spread) ==")
    for c in CONTENDERS:
        cpu = statistics.median(r["cpu_us_per_event"] for r in runs[c])
        print(f"  {LABELS[c]:45} {spread([r['events_per_s'] for r in runs[c]])} events/s, {cpu:.0f} µs CPU/event")
    ratios = [f / loop for f, loop in zip((r["events_per_s"] for r in runs["faust"]),
                                          (r["events_per_s"] for r in runs["loop"]))]
    print(f"  ratio faust / aiokafka loop with the same enrichment: {med['faust'] / med['loop']:.2f} "
          f"(per round {', '.join(f'{x:.2f}' for x in ratios)}; target >= 0.9)")
    print(f"  ratio faust / aiokafka copy-only loop:                {med['faust'] / med['copy']:.2f} (target >= 0.5)")
    two = res["two"]
    one_broker = statistics.median(r["broker_cores"] for r in runs["faust"])
    print(f"  two stream workers on {os.cpu_count()} cores: {two['events_per_s']:,.0f} events/s, "
          f"{two['events_per_s'] / med['faust']:.2f}x one (target >= 1.7; the broker shares the cores)")
    print(f"    cores used: one worker {statistics.median(r['cores'] for r in runs['faust']):.2f} with the broker "
          f"{one_broker:.2f}; two workers {two['cores']:.2f} with the broker {two['broker_cores']:.2f}")
    cpu = res["cpu"]
    print(f"  enrichment + Avro encoding in-process: {statistics.median(cpu):.1f} µs CPU/event "
          f"(min {min(cpu):.1f}, max {max(cpu):.1f}; target <= 40)")
    print(f"  the machine during the rounds: {res['load']}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each stream contender, alternating")
    ap.add_argument("--only", choices=["stream", "sink", "pool", "ingest", "source", "anmc", "scores", "lists",
                                       "providers", "ams"],
                    default=None,
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
            print_stream(asyncio.run(bench_stream(kafka, args.events, args.partitions, log_dir, args.rounds)))
        if args.only in (None, "sink"):
            try:
                from bench.sink import bench_sink
            except ImportError:
                pass
            else:
                asyncio.run(bench_sink(kafka, log_dir))
        if args.only in (None, "pool"):
            from bench.pool import bench_pool, print_pool

            print("\n== Sink pool: Save -> first delivery, memory per endpoint served ==", flush=True)
            print_pool(asyncio.run(bench_pool(kafka, log_dir)))
        if args.only in (None, "ingest"):
            from bench.ingest import PER_REQUEST, bench_ingest, print_ingest

            print(f"\n== Push API: wrk, {PER_REQUEST} contacts a request, 8 connections ==", flush=True)
            print_ingest(asyncio.run(bench_ingest(kafka, log_dir)))
        if args.only in (None, "source"):
            from bench.source import bench_source, print_source

            print("\n== Alida source: fake API in its own process, 1,000-item pages, 20 ms a request ==", flush=True)
            print_source(asyncio.run(bench_source(kafka, log_dir)))
        if args.only in (None, "scores"):
            from bench.scores import big_tenant, print_scores, report_times, stage_rates

            print("\n== Scores: the scoring stage beside the stream worker; a report card at 50,000 members ==",
                  flush=True)
            rates = asyncio.run(stage_rates(kafka, log_dir, 50_000))
            print_scores(rates, report_times(big_tenant()), 50_000, 1_000_000)
        if args.only in (None, "anmc"):
            from bench.anmc import bench_anmc, print_anmc

            print("\n== Action Network -> Mobile Commons: the nightly sync, both fakes 20 ms a request ==", flush=True)
            print_anmc(asyncio.run(bench_anmc(kafka, log_dir)))
        if args.only in (None, "lists"):
            from bench.lists import latency, print_lists, resyncs

            print("\n== Lists: 50 lists over 100,000 members; full resyncs of a 100,000-member list ==", flush=True)
            print_lists(asyncio.run(latency(kafka, log_dir, 100_000)), asyncio.run(resyncs(100_000)))
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
