"""The pool sink worker: from "Save" to the first delivery, and memory per endpoint served.

A stream worker and a pool sink worker (``python -m sinks.pool``) run as subprocesses, as under
``make run``, on a config with no endpoint. Then endpoints are saved one after another, as the admin
page's Save writes them (the endpoint and its subscription on ``activity.config``), each a webhook
to its own fake CRM (in this process). From each Save, one seed activity is produced every 100 ms
until the new endpoint's CRM stores one: the time to that first delivery covers the stream worker
applying the subscription, the pool starting the endpoint's worker, that worker joining its group
and delivering. Then the pool's RSS and each endpoint worker's.

    python -m bench.pool [--endpoints 4]      (also: python -m bench --only pool)
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

import yaml

from core.settings import KafkaSettings, Settings
from core.topics import Topics, ensure_topics

SECRET = "bench-pool-webhook-secret"


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


async def bench_pool(kafka: KafkaSettings, log_dir: str, endpoints: int = 4) -> dict:
    from activity_sync.devtools.broker import free_port
    from activity_sync.tools import publish_config, seed_lines
    from bench.__main__ import CONFIG, env_for, produce_all
    from bench.procstat import rss_mb, stop_processes
    from sinks.providers.webhook.fake import FakeCRM

    prefix = f"bpool{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka=kafka, topic_prefix=prefix, partitions=6, app_id=f"{prefix}app")
    await ensure_topics(kafka, Topics(prefix).specs(6))
    doc = yaml.safe_load(open(CONFIG))
    for k in ("endpoints", "subscriptions", "lists", "scoring"):
        doc.pop(k, None)
    doc["endpoints"], doc["subscriptions"] = [], []
    path = f"{log_dir}/pool-config.yaml"

    async def save(d: dict) -> None:
        with open(path, "w") as f:
            yaml.safe_dump(d, f)
        await publish_config(settings, path)

    await save(doc)
    port = free_port()
    env = env_for(kafka, prefix, ACTIVITY_SYNC_CONFIG=path, ACTIVITY_SYNC_PARTITIONS=6,
                  BENCH_POOL_SECRET=SECRET)
    logs = [open(f"{log_dir}/pool-{name}.log", "wb") for name in ("stream", "pool")]
    stream = subprocess.Popen([sys.executable, "-m", "streams.app"], env=env, stdout=logs[0], stderr=subprocess.STDOUT)
    pool = subprocess.Popen([sys.executable, "-m", "sinks.pool"], stdout=logs[1], stderr=subprocess.STDOUT,
                            env=dict(env, ACTIVITY_SYNC_METRICS_PORT=str(port),
                                     ACTIVITY_SYNC_DATADIR=tempfile.mkdtemp(prefix="bench-pool-")))
    seed = next(json.loads(x) for x in seed_lines() if b"DiscussionMessageCreate" in x)
    crms = []
    firsts = []
    n = 0
    try:
        await asyncio.sleep(3)  # both started (the first Save's time includes nothing of their start)
        for i in range(endpoints):
            crm = await FakeCRM(secret=SECRET.encode()).start()
            crms.append(crm)
            name = f"bench-{i}"
            doc["endpoints"].append({"name": name, "provider_type": "membership", "provider": "webhook",
                                     "tenant": "*", "settings": {"url": crm.url, "hmac_secret_env": "BENCH_POOL_SECRET",
                                                                 "batch_size": 100, "linger_ms": 20}})
            doc["subscriptions"].append({"activity_code": "DiscussionMessageCreate", "endpoint": name})
            await save(doc)
            saved = time.monotonic()
            while not crm.stats()["stored"]:
                if time.monotonic() - saved > 120:
                    raise RuntimeError(f"{name}: nothing delivered 120 s after its Save (logs in {log_dir})")
                n += 1
                ev = dict(seed, ActivityKey=f"pool-{n}")
                await produce_all(kafka, Topics(prefix).raw, [(f"m{n}".encode(), json.dumps(ev).encode())])
                await asyncio.sleep(0.1)
            firsts.append(time.monotonic() - saved)
        await asyncio.sleep(5)  # every endpoint worker delivering, its memory settled
        kids = children(pool.pid)
        return {"firsts": firsts, "pool_mb": rss_mb(pool.pid), "children_mb": [rss_mb(c) for c in kids],
                "stream_mb": rss_mb(stream.pid)}
    finally:
        stop_processes((pool, stream), 60)
        for crm in crms:
            await crm.stop()
        for f in logs:
            f.close()


def print_pool(r: dict) -> None:
    f = r["firsts"]
    print(f"  Save -> first delivery, {len(f)} endpoints saved one after another: "
          + ", ".join(f"{x:.1f} s" for x in f) + f" (median {statistics.median(f):.1f} s, target < 10 s)")
    kids = r["children_mb"]
    if kids:
        print(f"  memory: the pool {r['pool_mb']:.0f} MB RSS; each endpoint worker {statistics.median(kids):.0f} MB "
              f"(median of {len(kids)}, {min(kids):.0f}-{max(kids):.0f}); the stream worker {r['stream_mb']:.0f} MB")


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pool")
    ap.add_argument("--endpoints", type=int, default=4)
    args = ap.parse_args()
    from bench.brokers import bench_broker

    log_dir = tempfile.mkdtemp(prefix="activity-sync-bench-pool-")
    with bench_broker(log_dir) as kafka:
        print(f"\n== Sink pool: Save -> first delivery, memory per endpoint (logs in {log_dir}) ==", flush=True)
        print_pool(asyncio.run(bench_pool(kafka, log_dir, args.endpoints)))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("ACTIVITY_SYNC_LOG_LEVEL", "WARNING")
    sys.exit(main())
