"""The Push API under load: wrk (Debian's package, installed if missing) posting 100 contacts a
request on loopback to ``activity-sync ingest``, beside the ceiling: a plain aiohttp handler that
only writes each request body to Kafka (one record, ``acks=all``), with no key check, parsing,
validation or Avro. Each in its own process, alternating, in one run.

    python -m bench.ingest [--seconds 15] [--connections 32] [--rounds 2]
    python -m bench.ingest ceiling --port P      # the ceiling server alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from core.settings import KafkaSettings, Settings
from core.topics import Topics, ensure_topics

PER_REQUEST = 100


def body(n: int = PER_REQUEST) -> str:
    return json.dumps([{"ContactDetails": {"ContactId": f"B{i:06d}", "FirstName": f"Bench{i}", "LastName": "Example",
                                           "PrimaryEmailAddress": f"bench{i}@example.org", "IsMember": True,
                                           "MemberSince": "2020-01-01T00:00:00.000Z"},
                        "Groups": [{"GroupId": "G1", "GroupName": "Members"}],
                        "PhoneNumbers": [{"FormattedNumber": f"+1 555 010 {i % 10000:04d}"}]} for i in range(n)])


def wrk() -> str:
    from activity_sync.devtools.debian import apt_install

    return apt_install("wrk", lambda: shutil.which("wrk"), RuntimeError)


def lua(path: Path, key: str) -> Path:
    script = path / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["ApiKey"] = "{key}"\nwrk.body = [==[{body()}]==]\n')
    return script


def run_wrk(url: str, script: Path, seconds: int, connections: int) -> dict:
    out = subprocess.run([wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"), "non2xx": int(bad.group(1)) if bad else 0,
            "raw": out}


def _ms(text: str) -> float:
    n, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def ceiling(port: int) -> None:
    """A plain aiohttp handler: the request body to Kafka, one record, acks=all, then 200."""
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    settings = Settings.from_env()
    topic = Topics(settings.topic_prefix).push_contacts
    producer = AIOKafkaProducer(acks="all", linger_ms=2, max_batch_size=1024 * 1024, max_request_size=16 * 1024 * 1024,
                                **settings.kafka.aiokafka_kwargs())
    await producer.start()

    async def handle(request):
        await producer.send_and_wait(topic, await request.read(), key=uuid.uuid4().bytes)
        return web.json_response({"stored": 1})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v2/contactinfo", handle)
    app.router.add_get("/v2/openapi.json", lambda r: web.json_response({}))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


async def bench_ingest(kafka: KafkaSettings, log_dir: str, seconds: int = 15, connections: int = 8,
                       rounds: int = 2) -> dict:
    from activity_sync.devtools.broker import free_port
    from activity_sync.push import issue_key

    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka=kafka, topic_prefix=prefix, partitions=6)
    await ensure_topics(kafka, Topics(prefix).specs(6))
    key = await issue_key(settings, "bench", "BENCH", None)
    script = lua(Path(log_dir), key)
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers, ACTIVITY_SYNC_TOPIC_PREFIX=prefix,
               ACTIVITY_SYNC_METRICS_PORT="0")
    results: dict[str, list[dict]] = {"ingest": [], "ceiling": []}
    for r in range(rounds):
        for name in ("ingest", "ceiling") if r % 2 == 0 else ("ceiling", "ingest"):
            port = free_port()
            args = (["-m", "activity_sync.cli", "ingest", "--port", str(port)] if name == "ingest"
                    else ["-m", "bench.ingest", "ceiling", "--port", str(port)])
            log = open(Path(log_dir) / f"{name}-{r}.log", "ab")
            p = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_http(f"http://127.0.0.1:{port}/v2/openapi.json")
                url = f"http://127.0.0.1:{port}/v2/contactinfo"
                run_wrk(url, script, 3, connections)  # warm up
                res = run_wrk(url, script, seconds, connections)
                res["rss"] = rss_mb(p.pid)
                results[name].append(res)
                print(f"  round {r + 1} {name:8} {res['rps'] * PER_REQUEST:>9,.0f} contacts/s  p50 {res['p50']:.1f} ms"
                      f"  p99 {res['p99']:.1f} ms  non-2xx {res['non2xx']}  RSS {res['rss']:.0f} MB", flush=True)
            finally:
                p.terminate()
                p.wait(20)
    return results


def print_ingest(results: dict) -> None:
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "rss")}
           for n, rs in results.items()}
    i, c = med["ingest"], med["ceiling"]
    print(f"  activity-sync ingest: {i['rps'] * PER_REQUEST:,.0f} contacts/s ({i['rps']:,.0f} requests/s of "
          f"{PER_REQUEST}), p50 {i['p50']:.1f} ms, p99 {i['p99']:.1f} ms, RSS {i['rss']:.0f} MB "
          f"(targets: >= 5,000 contacts/s, p99 < 250 ms)")
    print(f"  ceiling (aiohttp, body to Kafka): {c['rps'] * PER_REQUEST:,.0f} contacts/s, p50 {c['p50']:.1f} ms, "
          f"p99 {c['p99']:.1f} ms, RSS {c['rss']:.0f} MB")
    print(f"  ratio ingest / ceiling: {i['rps'] / c['rps']:.2f} (target >= 0.5)")
    bad = sum(r["non2xx"] for rs in results.values() for r in rs)
    print(f"  non-2xx answers: {bad}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest")
    ap.add_argument("mode", nargs="?", choices=["bench", "ceiling"], default="bench")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if args.mode == "ceiling":
        asyncio.run(ceiling(args.port))
        return 0
    from bench.brokers import bench_broker

    log_dir = tempfile.mkdtemp(prefix="activity-sync-bench-ingest-")
    with bench_broker(log_dir) as kafka:
        print(f"\n== Push API: wrk, {PER_REQUEST} contacts a request, {args.connections} connections ==", flush=True)
        print_ingest(asyncio.run(bench_ingest(kafka, log_dir, args.seconds, args.connections, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
