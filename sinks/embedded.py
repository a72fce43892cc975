"""The delivery half of ``activity-sync run``: the fake CRM and one sink worker per enabled endpoint."""

from __future__ import annotations

import secrets
import time
import urllib.request

from streams.routing import read_config_file

FAKE_CRM_PORT = 8085


def start(emb, env: dict) -> None:
    doc = read_config_file(env["ACTIVITY_SYNC_CONFIG"])
    # The demo's webhook secret: made up at start, handed to both sides through the environment.
    env.setdefault("ACTIVITY_SYNC_WEBHOOK_SECRET", secrets.token_hex(16))
    emb.spawn("fake-crm", ["-m", "sinks.fake_crm", "--port", str(FAKE_CRM_PORT)], env)
    _wait_http(f"http://127.0.0.1:{FAKE_CRM_PORT}/_stats")
    for i, ep in enumerate(e for e in doc.get("endpoints") or [] if e.get("enabled", True)):
        wenv = dict(env, ACTIVITY_SYNC_METRICS_PORT=str(6067 + i),
                    ACTIVITY_SYNC_DATADIR=str(emb.var / f"sink-{ep['name']}-data"))
        emb.spawn(f"sink-{ep['name']}", ["-m", "sinks.worker", ep["name"]], wenv)
    print(f"fake CRM: http://127.0.0.1:{FAKE_CRM_PORT}/ (what it received; JSON at /activities)", flush=True)


def _wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def crm_stats() -> dict | None:
    import json

    try:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{FAKE_CRM_PORT}/_stats", timeout=2).read())
    except OSError:
        return None


async def report_deliveries(expect: int | None = None, timeout: float | None = None) -> None:
    """Print what the fake CRM has stored whenever it changes; return once ``expect`` are there."""
    import asyncio
    import json

    seen = -1
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        s = await asyncio.to_thread(crm_stats)
        if s and s["stored"] != seen:
            seen = s["stored"]
            print(f"[fake CRM] {seen} activities stored, {s['duplicates']} duplicates ignored, "
                  f"{s['rejected']} rejected; see http://127.0.0.1:{FAKE_CRM_PORT}/", flush=True)
        if expect is not None and seen >= expect:
            rows = json.loads(await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{FAKE_CRM_PORT}/activities", timeout=5).read()))
            for r in rows:
                print(f"  {r['customer_id']:20} {r['activity_code']:24} {r['writeback_code1']}/{r['writeback_code2']}"
                      f"  {r['description']}", flush=True)
            return
        await asyncio.sleep(1)
