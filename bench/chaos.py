"""``make chaos``: the project's own fault suite against real brokers, with figures.

Every scenario runs the real pipeline (a stream worker and sink workers as processes, the fake CRM
as a process) and counts at the CRM what arrived: produced, delivered (distinct), lost, duplicates
(the fake CRM counts a repeated idempotency key), dead letters, time to drain after the last
fault, and the peak RSS of each worker (sampled from /proc every 0.2 s).

    python -m bench.chaos [--only kills,broker,failover,outage,storm,slow,backlog,ingest] [--backlog 1000000]

Scenarios: repeated SIGKILL of stream and sink workers under load; a broker kill -9 and restart;
leader failover in a three-node cluster; a CRM outage; a 429 storm with two sink workers; a slow CRM
(timeouts); a million records in the retry tiers (RSS with the backlog held, and after it drains).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from activity_sync.devtools.broker import LocalCluster, LocalKafka, free_port
from core import headers as H
from core.settings import KafkaSettings, Settings
from activity_sync.tools import publish_config, seed_lines
from core.topics import Topics, ensure_topics, partition_ids

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [json.loads(x) for x in seed_lines()]
CODES = sorted({e["ActivityCode"] for e in SEEDS})
SECRET = uuid.uuid4().hex


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Worker:
    """A worker process; its peak RSS is sampled while it runs (across restarts under one name)."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path) -> None:
        self.name, self.args, self.env, self.log_dir = name, args, env, log_dir
        self.p: subprocess.Popen | None = None
        self.peak = 0.0
        self.starts = 0

    def start(self) -> "Worker":
        self.starts += 1
        log = open(self.log_dir / f"{self.name}.log", "ab")
        self.p = subprocess.Popen([sys.executable, *self.args], env=self.env, cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def sample(self) -> float:
        r = rss_mb(self.p.pid) if self.p and self.p.poll() is None else 0.0
        self.peak = max(self.peak, r)
        return r

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.p and self.p.poll() is None:
            os.killpg(self.p.pid, sig)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)


class Rig:
    """One scenario's pipeline: topics under a fresh prefix, the config, the fake CRM, the workers."""

    def __init__(self, kafka: KafkaSettings, log_dir: Path, name: str, *, sinks: int = 1, crm_latency_ms: int = 10,
                 endpoint: dict | None = None, extra_env: dict | None = None) -> None:
        self.kafka, self.log_dir, self.name = kafka, log_dir, name
        self.prefix = f"chaos{name}{uuid.uuid4().hex[:4]}."
        self.topics = Topics(self.prefix)
        self.crm_port = free_port()
        self.crm_url = f"http://127.0.0.1:{self.crm_port}"
        self.sinks_n, self.crm_latency_ms = sinks, crm_latency_ms
        self.endpoint = {"url": self.crm_url + "/activities", "hmac_secret_env": "CHAOS_SECRET", "batch_size": 100,
                         "linger_ms": 10, "timeout_s": 5, **(endpoint or {})}
        self.env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers, ACTIVITY_SYNC_TOPIC_PREFIX=self.prefix,
                        ACTIVITY_SYNC_METRICS_PORT="0", ACTIVITY_SYNC_LOG_LEVEL="INFO", ACTIVITY_SYNC_PARTITIONS="6",
                        ACTIVITY_SYNC_APP_ID=f"{self.prefix}streams", CHAOS_SECRET=SECRET,
                        ACTIVITY_SYNC_RETRY_DELAYS="2,4,8,16", ACTIVITY_SYNC_INLINE_RETRIES="1",
                        **(extra_env or {}))
        self.crm: subprocess.Popen | None = None
        self.stream: Worker | None = None
        self.sinks: list[Worker] = []
        self._sampler: asyncio.Task | None = None

    async def start(self) -> "Rig":
        path = self.log_dir / f"{self.prefix}config.yaml"
        path.write_text(yaml.safe_dump({
            "endpoints": [{"name": "crm", "provider": "webhook", "tenant": "*", "settings": self.endpoint}],
            "subscriptions": [{"activity_code": c, "endpoint": "crm", "description": "{ActivityCode}"} for c in CODES]}))
        self.env["ACTIVITY_SYNC_CONFIG"] = str(path)
        await ensure_topics(self.kafka, self.topics.specs(6))
        await publish_config(Settings(kafka=self.kafka, topic_prefix=self.prefix, partitions=6, config_path=str(path)),
                             path)
        self.crm = subprocess.Popen([sys.executable, "-m", "sinks.providers.webhook.fake", "--port", str(self.crm_port),
                                     "--latency-ms", str(self.crm_latency_ms), "--secret-env", "CHAOS_SECRET"],
                                    env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await self.until(lambda: self.stats() is not None, 20, "the fake CRM")
        env = dict(self.env, ACTIVITY_SYNC_DATADIR=tempfile.mkdtemp(prefix="chaos-"))
        self.stream = Worker(f"{self.prefix}stream", ["-m", "streams.app"], env, self.log_dir).start()
        self.sinks = [Worker(f"{self.prefix}sink{i}", ["-m", "sinks.worker", "crm"],
                             dict(env, ACTIVITY_SYNC_DATADIR=tempfile.mkdtemp(prefix="chaos-")), self.log_dir).start()
                      for i in range(self.sinks_n)]
        self._sampler = asyncio.ensure_future(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            for w in [self.stream, *self.sinks]:
                w.sample()
            await asyncio.sleep(0.2)

    def stats(self) -> dict | None:
        try:
            return json.loads(urllib.request.urlopen(self.crm_url + "/_stats", timeout=10).read())
        except OSError:
            return None

    def requests(self) -> list[dict]:
        """Every write request the fake CRM answered: when it came and ended, its status and records."""
        return json.loads(urllib.request.urlopen(self.crm_url + "/_requests", timeout=10).read())

    def control(self, spec: dict) -> None:
        req = urllib.request.Request(self.crm_url + "/_control", json.dumps(spec).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()

    async def until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await asyncio.to_thread(predicate):
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{self.name}: timed out after {timeout:.0f}s waiting for {what}")

    async def produce(self, n: int, rate: float, start: int = 0, faults: dict | None = None) -> None:
        """``n`` activities at ``rate`` a second; ``faults[i]`` (a coroutine function) runs after the i-th."""
        p = AIOKafkaProducer(acks="all", linger_ms=5, enable_idempotence=True, request_timeout_ms=30000,
                             **self.kafka.aiokafka_kwargs())
        await p.start()
        t0 = time.monotonic()
        try:
            for i in range(start, start + n):
                ev = dict(SEEDS[i % len(SEEDS)], ActivityKey=f"{self.name}-{i:07d}")
                await p.send(self.topics.raw, key=f"m{i % 500}".encode(), value=json.dumps(ev).encode())
                if faults and i in faults:
                    await faults[i]()
                lag = t0 + (i - start + 1) / rate - time.monotonic()
                if lag > 0:
                    await asyncio.sleep(lag)
            await p.flush()
        finally:
            await p.stop()

    async def dead_letters(self) -> int:
        c = AIOKafkaConsumer(**self.kafka.aiokafka_kwargs())
        await c.start()
        try:
            parts = [TopicPartition(self.topics.dead, p) for p in await partition_ids(self.kafka, self.topics.dead)]
            return sum((await c.end_offsets(parts)).values())
        finally:
            await c.stop()

    async def finish(self, n: int, last_fault: float, timeout: float = 300) -> dict:
        t_drain = None
        try:
            await self.until(lambda: (self.stats() or {}).get("stored", 0) >= n, timeout, f"{n} delivered")
            t_drain = time.monotonic() - last_fault
        except RuntimeError:
            pass
        await asyncio.sleep(3)  # anything more would be a duplicate
        s = self.stats() or {}
        result = {"produced": n, "delivered": s.get("stored", 0), "lost": n - s.get("stored", 0),
                  "duplicates": s.get("duplicates", 0), "dead": await self.dead_letters(),
                  "drain_s": t_drain, "early": s.get("early_requests", 0), "requests": s.get("requests", 0),
                  "mean_request_records": s.get("mean_request_records", 0.0),
                  "rss_stream_mb": self.stream.peak, "rss_sink_mb": max(w.peak for w in self.sinks)}
        return result

    async def stop(self) -> None:
        if self._sampler:
            self._sampler.cancel()
        for w in [*self.sinks, self.stream]:
            if w is not None:
                await asyncio.to_thread(w.kill, signal.SIGTERM)
        if self.crm:
            self.crm.terminate()
            self.crm.wait(10)


# ------------------------------------------------------------------ scenarios

async def kills(kafka, log_dir, n=20_000) -> dict:
    """Repeated SIGKILL of the sink worker (5 times) and the stream worker (3 times) under load."""
    rig = await Rig(kafka, log_dir, "kills").start()
    last = [time.monotonic()]
    per_fault: list[tuple[str, int]] = []

    def kill(worker_fn, label):
        async def go():
            w = worker_fn()
            before = (rig.stats() or {}).get("duplicates", 0)
            await asyncio.to_thread(w.kill)
            await asyncio.sleep(1)
            w.start()
            last[0] = time.monotonic()
            per_fault.append((label, before))
        return go

    faults = {}
    for k, at in enumerate(range(n // 8, n, n // 8)):
        faults[at] = kill((lambda: rig.sinks[0]) if k % 3 != 1 else (lambda: rig.stream),
                          "sink SIGKILL" if k % 3 != 1 else "stream SIGKILL")
    try:
        await rig.produce(n, 800, faults=faults)
        r = await rig.finish(n, last[0])
    finally:
        await rig.stop()
    marks = [b for _, b in per_fault] + [r["duplicates"]]
    r["faults"] = [f"{label}: {marks[i + 1] - marks[i]} dup" for i, (label, _) in enumerate(per_fault)]
    return r


async def broker_restart(kafka_dir: Path, log_dir, n=10_000) -> dict:
    """kill -9 of the (single) broker mid-stream, restarted on the same ports and data 5 s later."""
    broker = LocalKafka(kafka_dir, heap="1g").start()
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    rig = await Rig(kafka, log_dir, "broker").start()
    last = [time.monotonic()]

    async def kill_broker():
        broker.proc.kill()
        broker.proc.wait(10)
        await asyncio.sleep(5)
        await asyncio.to_thread(broker.start)
        last[0] = time.monotonic()

    try:
        await rig.produce(n, 500, faults={n // 3: kill_broker})
        r = await rig.finish(n, last[0])
    finally:
        await rig.stop()
        broker.stop()
    return r


async def ingest_broker_kill(kafka_dir: Path, log_dir, seconds: float = 40.0, kill: str = "broker") -> dict:
    """The Push API under load while its (single) broker (``kill="broker"``) or the ingest server
    itself (``"server"``) is killed -9 and restarted 8 s later: every 200 must be on push.contacts,
    the outage must be 503s (or refused connections), and 200s must come back by themselves."""
    import aiohttp

    from activity_sync.devtools.broker import free_port
    from activity_sync.push import issue_key
    from core.settings import Settings
    from core.topics import Topics, ensure_topics

    broker = LocalKafka(kafka_dir, heap="1g").start()
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    settings = Settings(kafka=kafka, partitions=6)
    await ensure_topics(kafka, Topics().specs(6))
    key = await issue_key(settings, "chaos", "CHAOS", None)
    port = free_port()
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers, ACTIVITY_SYNC_METRICS_PORT="0",
               ACTIVITY_SYNC_INGEST_WRITE_TIMEOUT_S="3")
    log = open(Path(log_dir) / f"ingest-chaos-{kill}.log", "ab")

    def start_server():
        return subprocess.Popen([sys.executable, "-m", "activity_sync.cli", "ingest", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)

    proc = start_server()
    acked: list[str] = []
    statuses: dict[int, int] = {}
    timeline: list[tuple[float, int]] = []
    t0 = time.monotonic()
    killed_at = restarted_at = None
    try:
        url = f"http://127.0.0.1:{port}/v2/contactinfo"
        async with aiohttp.ClientSession() as s:
            for _ in range(300):
                try:
                    async with s.post(url, data="[]", headers={"ApiKey": key, "Content-Type": "application/json"}) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            counter = iter(range(10 ** 9))

            async def client() -> None:
                while time.monotonic() - t0 < seconds:
                    cid = f"K{next(counter):07d}"
                    body = json.dumps([{"ContactDetails": {"ContactId": cid, "FirstName": "Chaos"}}])
                    try:
                        async with s.post(url, data=body, headers={"ApiKey": key, "Content-Type": "application/json"},
                                          timeout=aiohttp.ClientTimeout(total=30)) as r:
                            status = r.status
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        status = 0
                        await asyncio.sleep(0.2)
                    statuses[status] = statuses.get(status, 0) + 1
                    timeline.append((time.monotonic() - t0, status))
                    if status == 200:
                        acked.append(cid)
                    elif status == 503:
                        await asyncio.sleep(0.5)

            async def chaos() -> None:
                nonlocal killed_at, restarted_at, proc
                await asyncio.sleep(6)
                victim = broker.proc if kill == "broker" else proc
                victim.kill()
                victim.wait(10)
                killed_at = time.monotonic() - t0
                await asyncio.sleep(8)
                if kill == "broker":
                    await asyncio.to_thread(broker.start)
                else:
                    proc = start_server()
                restarted_at = time.monotonic() - t0

            await asyncio.gather(chaos(), *(client() for _ in range(8)))
        proc.terminate()
        proc.wait(20)
        from core.configtable import read_config_topic

        stored = {k.split("|", 1)[1] for k, _ in await read_config_topic(kafka, Topics().push_contacts)}
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.stop()
    lost = [c for c in acked if c not in stored]
    after = [(t, st) for t, st in timeline if restarted_at and t > restarted_at]
    first_ok = next((t for t, st in after if st == 200), None)
    return {"produced": len(acked), "lost": len(lost), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "killed_at_s": killed_at, "restarted_at_s": restarted_at,
            "ok_after_restart": sum(1 for _, st in after if st == 200),
            "recovered_after_s": None if first_ok is None else round(first_ok - restarted_at, 1)}


async def failover(cluster_dir: Path, log_dir, n=10_000) -> dict:
    """Three-node cluster, replication factor 3, min.insync.replicas 2: kill -9 the node leading the most
    partitions in use while activities flow (it comes back 10 s later)."""
    from aiokafka.admin import AIOKafkaAdminClient

    cluster = LocalCluster(cluster_dir).start()
    os.environ["ACTIVITY_SYNC_REPLICATION_FACTOR"] = "3"
    kafka = KafkaSettings(bootstrap_servers=cluster.bootstrap)
    rig = await Rig(kafka, log_dir, "failover", extra_env={"ACTIVITY_SYNC_REPLICATION_FACTOR": "3"}).start()
    last = [time.monotonic()]

    async def kill_leader():
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        await admin.start()
        counts: dict[int, int] = {}
        for t in await admin.describe_topics([rig.topics.raw, rig.topics.enriched]):
            for p in t["partitions"]:
                counts[p["leader"]] = counts.get(p["leader"], 0) + 1
        await admin.close()
        victim = max(counts, key=counts.get)
        cluster.kill(victim)
        last[0] = time.monotonic()
        asyncio.get_running_loop().call_later(10, lambda: asyncio.ensure_future(asyncio.to_thread(cluster.restart, victim)))

    try:
        await rig.produce(n, 500, faults={n // 3: kill_leader})
        r = await rig.finish(n, last[0])
    finally:
        await rig.stop()
        cluster.stop()
        os.environ.pop("ACTIVITY_SYNC_REPLICATION_FACTOR", None)
    return r


async def crm_fault(rig: Rig, n: int, rate: float, at: int, spec: dict, lasts_s: float = 0.0) -> dict:
    """Produce ``n`` at ``rate``; after the ``at``-th, the fake CRM gets the fault ``spec`` (see
    core.fakes); drain time counts from the fault's end."""
    last = [time.monotonic()]

    async def fault():
        await asyncio.to_thread(rig.control, spec)
        last[0] = time.monotonic() + lasts_s

    try:
        await rig.produce(n, rate, faults={at: fault})
        return await rig.finish(n, last[0])
    finally:
        await rig.stop()


async def outage(kafka, log_dir, n=10_000) -> dict:
    """The CRM answers 503 to everything for 30 s while activities keep coming."""
    rig = await Rig(kafka, log_dir, "outage").start()
    return await crm_fault(rig, n, 400, n // 5, {"fail": {"status": 503, "seconds": 30}}, lasts_s=30)


async def storm(kafka, log_dir, n=10_000) -> dict:
    """A 429 storm with two sink workers on the endpoint: ten throttles in a row, 2 s Retry-After each."""
    rig = await Rig(kafka, log_dir, "storm", sinks=2, crm_latency_ms=20).start()
    await asyncio.sleep(8)  # both workers in the group
    return await crm_fault(rig, n, 500, n // 4, {"throttle": {"retry_after": 2, "count": 10}})


async def slow(kafka, log_dir, n=10_000) -> dict:
    """A slow CRM: 30 requests take 3 s each against a 1 s timeout (the CRM may store what timed out)."""
    rig = await Rig(kafka, log_dir, "slow", endpoint={"timeout_s": 1}).start()
    return await crm_fault(rig, n, 500, n // 4, {"slow": {"ms": 3000, "count": 30}})


async def slow_stop(kafka, log_dir, n=3_000, stops=3) -> dict:
    """A CRM taking 8 s a request, and a graceful stop (SIGTERM) of the sink worker while a take of
    1,000 records is cut into requests of 200: the request in flight gets its timeout and is committed,
    no request starts after the signal, nothing is sent twice once the worker is started again."""
    rig = await Rig(kafka, log_dir, "slowstop", crm_latency_ms=8000,
                    endpoint={"batch_size": 200, "linger_ms": 50, "timeout_s": 12}).start()
    after_signal = 0
    try:
        producing = asyncio.ensure_future(rig.produce(n, 1000))
        for _ in range(stops):
            await rig.until(lambda: any(r["status"] == 200 for r in rig.requests()), 120, "a request answered")
            await asyncio.sleep(3)  # a request is under way
            signalled = time.time()
            await asyncio.to_thread(rig.sinks[0].kill, signal.SIGTERM)
            stopped = time.time()
            after_signal += sum(1 for r in rig.requests() if signalled < r["started"] <= stopped)
            rig.sinks[0].start()
        await producing
        r = await rig.finish(n, time.monotonic(), timeout=600)
    finally:
        await rig.stop()
    r["requests_after_signal"] = after_signal
    r["faults"] = [f"{stops} SIGTERMs with 8 s requests: {after_signal} requests started after a signal"]
    return r


async def backlog(kafka, log_dir, n=1_000_000) -> dict:
    """``n`` records waiting in the retry tiers (written there directly, due in 90 s): the sink worker's RSS
    while it holds them, then while they drain into the CRM, and after."""
    rig = Rig(kafka, log_dir, "backlog", endpoint={"batch_size": 1000, "linger_ms": 20}, crm_latency_ms=0)
    rig.sinks_n = 1
    await ensure_topics(kafka, rig.topics.specs(6))
    value = await enriched_sample(kafka, log_dir)
    due = time.time() + 90
    t0 = time.monotonic()
    p = AIOKafkaProducer(acks=1, linger_ms=20, max_batch_size=1 << 20, **kafka.aiokafka_kwargs())
    await p.start()
    try:
        tiers = [t for t, _ in H.RETRY_TIERS]
        for i in range(0, n, 5000):
            futs = []
            for j in range(i, min(n, i + 5000)):
                tier = tiers[j % len(tiers)]
                key = f"bl-{j:08d}"  # as long as the placeholder: Avro strings carry their length
                hdrs = H.retry("crm", "DEMO", key, (rig.topics.enriched, 0, j), attempts=1, first_failure=time.time(),
                               due=due, tier=tier, error_class="RetriableError", error="chaos backlog")
                futs.append(await p.send(rig.topics.retry(tier), key=key.encode(), value=value.replace(
                    b"BACKLOGKEY0", key.encode()), headers=hdrs))
            await asyncio.gather(*futs)
    finally:
        await p.stop()
    filled = time.monotonic() - t0
    await rig.start()
    held = []
    while time.time() < due:
        held.append(max(w.sample() for w in rig.sinks))
        await asyncio.sleep(1)
    peak_held = max(held)
    t1 = time.monotonic()
    await rig.until(lambda: (rig.stats() or {}).get("stored", 0) >= n, 1500, f"{n} drained")
    drained = time.monotonic() - t1
    await asyncio.sleep(25)  # the worker gives freed memory back once idle for 10 s
    after = max(w.sample() for w in rig.sinks)
    s = rig.stats() or {}
    r = {"produced": n, "delivered": s.get("stored", 0), "lost": n - s.get("stored", 0),
         "duplicates": s.get("duplicates", 0), "dead": await rig.dead_letters(), "drain_s": drained,
         "fill_s": filled, "mean_request_records": s.get("mean_request_records", 0.0), "rss_sink_held_mb": peak_held, "rss_sink_peak_mb": max(w.peak for w in rig.sinks),
         "rss_sink_after_mb": after, "rss_stream_mb": rig.stream.peak}
    await rig.stop()
    return r


async def enriched_sample(kafka: KafkaSettings, log_dir: Path) -> bytes:
    """One enriched record (Avro) as the stream worker writes it, its ActivityKey a placeholder."""
    from core.catalog import load_catalog
    from streams.enrich import Enricher
    from core.config import Endpoint, Subscription
    from core.routing import Routing

    routing = Routing(load_catalog())
    routing.put_endpoint(Endpoint("crm", tenants=("*",)))
    for c in CODES:
        routing.put_subscription(Subscription(c, "crm", "{ActivityCode}", True, "A", "B"))
    ev = dict(SEEDS[2], ActivityKey="BACKLOGKEY0", TenantCode="DEMO")
    out = Enricher(load_catalog(), routing).enrich(json.dumps(ev).encode(), None, "raw", 0, 0, 0)
    from core.avro import SingleObjectCodec

    return SingleObjectCodec().encode(out.record)


def show(name: str, r: dict) -> None:
    keys = ["produced", "delivered", "lost", "statuses", "ok_after_restart", "recovered_after_s", "duplicates", "dead", "drain_s", "early", "requests",
            "requests_after_signal", "mean_request_records", "rss_stream_mb",
            "rss_sink_mb", "fill_s", "rss_sink_held_mb", "rss_sink_peak_mb", "rss_sink_after_mb", "faults"]
    parts = []
    for k in keys:
        if k in r:
            v = r[k]
            parts.append(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}")
    print(f"  {name:9} " + ", ".join(parts), flush=True)


async def main_async(args) -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="activity-sync-chaos-"))
    only = set(args.only.split(",")) if args.only else None
    want = lambda s: only is None or s in only  # noqa: E731
    print(f"chaos: logs in {log_dir}; {os.cpu_count()} cores", flush=True)
    results = {}
    t_all = time.monotonic()
    broker = None
    try:
        if any(want(s) for s in ("kills", "outage", "storm", "slow", "slowstop", "backlog")):
            broker = LocalKafka(log_dir / "kafka", heap="1g").start()
            kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
            for name, fn in (("kills", kills), ("outage", outage), ("storm", storm), ("slow", slow),
                             ("slowstop", slow_stop)):
                if want(name):
                    results[name] = await fn(kafka, log_dir)
                    show(name, results[name])
            if want("backlog"):
                results["backlog"] = await backlog(kafka, log_dir, args.backlog)
                show("backlog", results["backlog"])
            broker.stop()
            broker = None
        if want("broker"):
            results["broker"] = await broker_restart(log_dir / "kafka-restart", log_dir)
            show("broker", results["broker"])
        if want("ingest"):
            results["ingest"] = await ingest_broker_kill(log_dir / "kafka-ingest", log_dir)
            show("ingest", results["ingest"])
            results["ingestkill"] = await ingest_broker_kill(log_dir / "kafka-ingest-kill", log_dir, kill="server")
            show("ingestkill", results["ingestkill"])
        if want("failover"):
            results["failover"] = await failover(log_dir / "cluster", log_dir)
            show("failover", results["failover"])
    finally:
        if broker:
            broker.stop()
    print(f"\n== chaos: {time.monotonic() - t_all:,.0f}s in all ==")
    for name, r in results.items():
        show(name, r)
    (log_dir / "results.json").write_text(json.dumps(results, indent=2))
    lost = sum(r.get("lost", 0) for r in results.values())
    print(f"  lost in all: {lost}", flush=True)
    return 1 if lost else 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.chaos")
    ap.add_argument("--only", help="comma-separated: kills,broker,failover,outage,storm,slow,slowstop,backlog,ingest")
    ap.add_argument("--backlog", type=int, default=1_000_000)
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
