"""Tenants end to end through the real broker: an activity reaches only its own organisation's endpoints,
also after retries and a replay."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request

import yaml
from conftest import ROOT, produce, publish_config_file, seed_events, worker_env

from activity_sync.devtools.broker import free_port
from sinks.providers.webhook.fake import FakeCRM
from core.topics import Topics

SECRET = "tenant-test-secret-2d4e"
N = 1000
CODES = sorted({e["ActivityCode"] for e in seed_events()})


def raw_events(tenant: str, n: int, reject_at: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        ev = dict(seed_events()[i % 5], ActivityKey=f"{tenant}-{i:05d}", TenantCode=tenant)
        customer = f"reject-{tenant}" if i == reject_at else f"{tenant}-member-{i % 50}"
        for k in ("AuthorExternalKey", "MemberExternalKey", "AccessedByExternalKey"):
            if k in ev:
                ev[k] = customer
        out.append((f"{tenant}-contact-{i % 50}".encode(), json.dumps(ev).encode()))
    return out


async def wait_for(predicate, timeout: float, what: str):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_two_tenants_reach_only_their_own_crm_through_retries_and_replay(settings, tmp_path, spawn):
    alpha, beta = await FakeCRM(secret=SECRET.encode()).start(), await FakeCRM(secret=SECRET.encode()).start()
    try:
        doc = {"endpoints": [], "subscriptions": []}
        for name, tenant, crm in (("alpha-crm", "ALPHA", alpha), ("beta-crm", "BETA", beta)):
            doc["endpoints"].append({"name": name, "provider": "webhook", "tenant": tenant, "settings": {
                "url": crm.url, "hmac_secret_env": "TEST_WEBHOOK_SECRET", "batch_size": 100, "linger_ms": 20}})
            doc["subscriptions"] += [{"activity_code": c, "endpoint": name, "description": f"{{ActivityCode}} at {tenant}",
                                      "writeback_codes": [tenant, c]} for c in CODES]
        path = tmp_path / "tenants.yaml"
        path.write_text(yaml.safe_dump(doc))
        object.__setattr__(settings, "config_path", str(path))
        await publish_config_file(settings, path)
        env = worker_env(settings, tmp_path, TEST_WEBHOOK_SECRET=SECRET, ACTIVITY_SYNC_RETRY_DELAYS="1,2,3,4",
                         ACTIVITY_SYNC_INLINE_RETRIES="0")
        metrics_port = free_port()
        spawn(["-m", "streams.app"], dict(env, ACTIVITY_SYNC_METRICS_PORT=str(metrics_port)), "stream")
        spawn(["-m", "sinks.worker", "alpha-crm"], env, "sink-alpha")
        spawn(["-m", "sinks.worker", "beta-crm"], env, "sink-beta")
        alpha.control({"fail": {"status": 503, "seconds": 4}, "reject_customers": ["reject-ALPHA"]})
        beta.control({"reject_customers": ["reject-BETA"]})
        t = Topics(settings.topic_prefix)
        events = raw_events("ALPHA", N, 7) + raw_events("BETA", N, 11) + raw_events("GAMMA", 10, -1)
        await produce(settings, t.raw, events)
        await wait_for(lambda: alpha.stats()["stored"] >= N - 1 and beta.stats()["stored"] >= N - 1, 180,
                       "each tenant's activities at its own CRM")
        assert alpha.stats()["statuses"].get("503", 0) >= 1  # alpha's went through the retry tiers
        # the rejected one of each is a dead letter; replay one tenant's, then the other's
        alpha.control({"reject_customers": []})
        beta.control({"reject_customers": []})

        def replay(*args):
            return subprocess.run([sys.executable, "-m", "activity_sync.cli", "replay", *args], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=60)

        for _ in range(60):  # the dead letters are written once the CRM has answered
            dry = await asyncio.to_thread(replay, "--tenant", "ALPHA", "--dry-run")
            if "1 would be replayed" in dry.stdout:
                break
            await asyncio.sleep(1)
        assert "dry run: 1 would be replayed" in dry.stdout and "ALPHA-00007" in dry.stdout, dry.stdout + dry.stderr
        assert "BETA" not in dry.stdout
        done = await asyncio.to_thread(replay, "--tenant", "ALPHA")
        assert "replayed 1" in done.stdout, done.stdout + done.stderr
        await wait_for(lambda: alpha.stats()["stored"] == N, 60, "alpha's replayed activity")
        assert beta.stats()["stored"] == N - 1  # beta's dead letter was not replayed
        done = await asyncio.to_thread(replay, "--tenant", "BETA")
        assert "replayed 1" in done.stdout
        await wait_for(lambda: beta.stats()["stored"] == N, 60, "beta's replayed activity")
        await asyncio.sleep(2)
        assert sorted(alpha.stored) == [f"ALPHA-{i:05d}" for i in range(N)]
        assert sorted(beta.stored) == [f"BETA-{i:05d}" for i in range(N)]
        assert {r["writeback_code1"] for r in alpha.received()} == {"ALPHA"}
        assert {r["tenant_code"] for r in beta.received()} == {"BETA"}
        # a tenant with no endpoint is still enriched, and counted as routed nowhere: as "_other", since a
        # TenantCode no endpoint names comes from producers and must not grow the metric's series
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert 'activity_sync_unrouted_activities_total{tenant="_other"} 10.0' in body
        assert 'tenant="GAMMA"' not in body
        out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "activity_sync.cli", "tail",
                                                       "--from-beginning", "--tenant", "GAMMA", "--idle", "3"],
                                      env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        rows = [json.loads(x) for x in out.stdout.splitlines()]
        assert len(rows) == 10 and all(r["value"]["tenant_code"] == "GAMMA" and r["value"]["deliveries"] == []
                                       for r in rows), out.stderr
    finally:
        await alpha.stop()
        await beta.stop()
