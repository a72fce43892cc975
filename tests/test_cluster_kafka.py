"""A three-node KRaft cluster on loopback (replication factor 3, min.insync.replicas=2, acks=all):
killing the leader of the partitions in use while activities flow loses nothing and stops nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import yaml
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from conftest import ROOT, publish_config_file, seed_events, worker_env

from activity_sync.devtools.broker import LocalCluster
from sinks.providers.webhook.fake import FakeCRM
from core.settings import KafkaSettings, Settings
from core.topics import Topics, ensure_topics

SECRET = "cluster-test-secret-81f0"
N = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield c
    finally:
        c.stop()


async def leaders(bootstrap: str, topics: list[str]) -> dict[int, int]:
    """How many of these topics' partitions each node leads."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        out: dict[int, int] = {}
        for t in await admin.describe_topics(topics):
            for p in t["partitions"]:
                out[p["leader"]] = out.get(p["leader"], 0) + 1
        return out
    finally:
        await admin.close()


async def test_replication_factor_is_honoured_and_refused_clearly(cluster, monkeypatch, tmp_path):
    kafka = KafkaSettings(bootstrap_servers=cluster.bootstrap)
    monkeypatch.setenv("ACTIVITY_SYNC_REPLICATION_FACTOR", "3")
    prefix = f"rf{uuid.uuid4().hex[:6]}."
    await ensure_topics(kafka, Topics(prefix).specs(3))
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        meta = await admin.describe_topics([Topics(prefix).raw])
    finally:
        await admin.close()
    assert all(len(p["replicas"]) == 3 for p in meta[0]["partitions"])
    from core.topics import describe_topic_configs

    assert (await describe_topic_configs(kafka, [Topics(prefix).raw]))[Topics(prefix).raw]["min.insync.replicas"] == "2"
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap, ACTIVITY_SYNC_TOPIC_PREFIX=f"x{prefix}")
    for value, says in (("5", "needs at least 5 brokers"), ("two", "a whole number from 1 to 16")):
        r = subprocess.run([sys.executable, "-m", "activity_sync.cli", "topics"], cwd=ROOT, capture_output=True,
                           text=True, env=dict(env, ACTIVITY_SYNC_REPLICATION_FACTOR=value), timeout=60)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


async def test_killing_the_leader_while_activities_flow_loses_nothing(cluster, tmp_path, spawn, monkeypatch):
    monkeypatch.setenv("ACTIVITY_SYNC_REPLICATION_FACTOR", "3")
    kafka = KafkaSettings(bootstrap_servers=cluster.bootstrap)
    prefix = f"fo{uuid.uuid4().hex[:6]}."
    settings = Settings(kafka=kafka, topic_prefix=prefix, partitions=3, app_id=f"{prefix}streams",
                        config_path="", metrics_port=0)
    t = Topics(prefix)
    await ensure_topics(kafka, t.specs(3))
    crm = await FakeCRM(secret=SECRET.encode()).start()
    try:
        codes = sorted({e["ActivityCode"] for e in seed_events()})
        doc = {"endpoints": [{"name": "crm", "provider": "webhook", "tenant": "*", "settings": {
                   "url": crm.url, "hmac_secret_env": "TEST_WEBHOOK_SECRET", "batch_size": 100, "linger_ms": 20}}],
               "subscriptions": [{"activity_code": c, "endpoint": "crm", "description": "{ActivityCode}"} for c in codes]}
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(doc))
        object.__setattr__(settings, "config_path", str(path))
        await publish_config_file(settings, path)
        env = worker_env(settings, tmp_path, TEST_WEBHOOK_SECRET=SECRET, ACTIVITY_SYNC_REPLICATION_FACTOR="3")
        spawn(["-m", "streams.app"], env, "stream")
        spawn(["-m", "sinks.worker", "crm"], env, "sink")
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True,
                                    request_timeout_ms=30000, retry_backoff_ms=200)
        await producer.start()
        seeds = seed_events()
        killed_at = None
        victim = None
        try:
            for i in range(N):
                ev = dict(seeds[i % 5], ActivityKey=f"fo-{i:05d}")
                await producer.send(t.raw, key=f"m{i % 40}".encode(), value=json.dumps(ev).encode())
                if i == N // 3:
                    counts = await leaders(cluster.bootstrap, [t.raw, t.enriched])
                    victim = max(counts, key=counts.get)
                    cluster.kill(victim)  # kill -9 the node leading most partitions in use
                    killed_at = time.time()
                await asyncio.sleep(0.004)
            await producer.flush()
        finally:
            await producer.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 240
        while loop.time() < deadline and len(crm.stored) < N:
            await asyncio.sleep(0.5)
    finally:
        await crm.stop()
        if victim is not None:
            cluster.restart(victim)
    missing = {f"fo-{i:05d}" for i in range(N)} - set(crm.stored)
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    after = [r["received_at"] for r in crm.stored.values() if r["received_at"] > killed_at]
    assert len(after) > N // 2  # it went on after the kill
