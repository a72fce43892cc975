"""The Action Network ↔ Mobile Commons sync under load: N Action Network people (the fake, in its own
process) read by the nightly poll, through the sync's stream stage, the stream worker and the
Mobile Commons sink worker (32 requests in flight, within the 160 concurrent calls Mobile Commons
allows) into the Mobile Commons fake (its own process). Both fakes answer every request 20 ms late.
Prints people per second (first request to the last profile stored) and requests per person.

    python -m bench.anmc [--people 20000]
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
import urllib.request
import uuid
from pathlib import Path

import yaml

from bench.procstat import stop_processes
from core.settings import KafkaSettings, Settings
from core.topics import Topics, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
KEY, TOKEN = "bench-an-key", "bench-mc-token"


def _stats(port: int) -> dict:
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5).read())


def _start(args: list[str], env: dict, log: Path, port: int | None = None) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, *args], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)
    if port is not None:
        deadline = time.monotonic() + 120
        while True:
            try:
                _stats(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    p.kill()
                    raise RuntimeError(f"{args} did not start; see {log}")
                time.sleep(0.3)
    return p


def expected(people: int) -> int:
    """The fake's seeded people with a mobile number and the checkbox (see FakeActionNetwork.seed)."""
    return sum(1 for i in range(people) if i % 7 != 6 and i % 5 != 4)


async def bench_anmc(kafka: KafkaSettings, log_dir: str, people: int = 20_000) -> dict:
    from activity_sync.devtools.broker import free_port
    from activity_sync.tools import publish_config
    from sources.runner import run_pool

    log = Path(log_dir)
    an_port, mc_port = free_port(), free_port()
    env = dict(os.environ, ACTIVITY_SYNC_ACTIONNETWORK_KEY=KEY, ACTIVITY_SYNC_MOBILECOMMONS_TOKEN=TOKEN)
    procs = [_start(["-m", "sinks.providers.actionnetwork.fake", "--port", str(an_port), "--seed", str(people),
                     "--latency-ms", "20"], env, log / "fake-an.log", an_port),
             _start(["-m", "sinks.providers.mobilecommons.fake", "--port", str(mc_port), "--latency-ms", "20"], env,
                    log / "fake-mc.log", mc_port)]
    prefix = f"banmc{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka=kafka, topic_prefix=prefix, partitions=3, app_id=f"{prefix}app", metrics_port=0)
    await ensure_topics(kafka, Topics(prefix).specs(3))
    doc = yaml.safe_load((ROOT / "streams" / "data" / "example-anmc.yaml").read_text())
    for x in [*doc["sources"], *doc["endpoints"]]:
        s = x["settings"]
        s["url"] = s["url"].replace("127.0.0.1:8097", f"127.0.0.1:{an_port}").replace("127.0.0.1:8098",
                                                                                      f"127.0.0.1:{mc_port}")
    for e in doc["endpoints"]:
        if e["provider"] == "mobilecommons":
            e["settings"].update(concurrency=32, batch_size=100, linger_ms=20)
    config = log / "anmc.yaml"
    config.write_text(yaml.safe_dump(doc))
    await publish_config(settings, config)
    wenv = dict(env, KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers, ACTIVITY_SYNC_TOPIC_PREFIX=prefix,
                ACTIVITY_SYNC_APP_ID=f"{prefix}app", ACTIVITY_SYNC_PARTITIONS="3", ACTIVITY_SYNC_CONFIG=str(config),
                ACTIVITY_SYNC_METRICS_PORT="0", ACTIVITY_SYNC_LOG_LEVEL="WARNING")
    for name, args in (("stream", ["-m", "streams.app"]), ("anmc", ["-m", "streams.anmc"]),
                       ("sink-mc", ["-m", "sinks.worker", "mobile-commons-out"])):
        procs.append(_start(args, dict(wenv, ACTIVITY_SYNC_DATADIR=tempfile.mkdtemp(prefix=f"bench-{name}-")),
                            log / f"{name}.log"))
    try:
        await asyncio.sleep(15)  # the workers join their groups
        os.environ["ACTIVITY_SYNC_ACTIONNETWORK_KEY"] = KEY
        want = expected(people)
        t0 = time.monotonic()
        await run_pool(settings, ["action-network"], once=True)
        read_s = time.monotonic() - t0
        deadline = time.monotonic() + 900
        while _stats(mc_port)["profiles"] < want and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        took = time.monotonic() - t0
        an, mc = _stats(an_port), _stats(mc_port)
        return {"people": people, "synced": mc["profiles"], "expected": want, "seconds": took, "read_s": read_s,
                "an_requests": an["requests"], "mc_requests": mc["requests"], "welcome": mc["welcome_messages"],
                "most_in_flight": mc["most_in_flight"]}
    finally:
        stop_processes(procs)


def print_anmc(r: dict) -> None:
    print(f"  {r['people']} Action Network people, {r['expected']} with a mobile number and the checkbox: "
          f"{r['synced']} Mobile Commons profiles in {r['seconds']:.1f} s (the nightly read itself {r['read_s']:.1f} s)")
    print(f"  people/s: {r['people'] / r['seconds']:.0f} read and judged, {r['synced'] / r['seconds']:.0f} subscribed")
    print(f"  requests per person: {(r['an_requests'] + r['mc_requests']) / r['people']:.3f} "
          f"({r['an_requests']} to Action Network, 25 people a page; {r['mc_requests']} to Mobile Commons)")
    print(f"  welcome messages {r['welcome']}; most Mobile Commons calls in flight {r['most_in_flight']} (limit 160)")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.anmc")
    ap.add_argument("--people", type=int, default=20_000)
    args = ap.parse_args()
    from bench.brokers import bench_broker

    log_dir = tempfile.mkdtemp(prefix="activity-sync-bench-anmc-")
    with bench_broker(log_dir) as kafka:
        print("\n== Action Network -> Mobile Commons: the nightly sync, both fakes 20 ms a request ==", flush=True)
        print_anmc(asyncio.run(bench_anmc(kafka, log_dir, args.people)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
