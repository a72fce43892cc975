"""The delivery half of ``activity-sync run``: the fake CRM and one sink worker per enabled endpoint."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import urllib.request
from pathlib import Path

import yaml

from streams.routing import endpoint_from_dict

DEFAULT_FAKE_CRM = "http://127.0.0.1:8085"


def enabled_endpoints(doc: dict) -> list[dict]:
    return [e for e in doc.get("endpoints") or [] if e.get("enabled", True)]


def localise(doc: dict, var: Path, crm_port: int) -> Path:
    """The config as this run uses it, written to ``var``: endpoints that name the default fake CRM
    address point at the port it really has, and relative ``var/…`` store paths live under ``var``."""
    doc = json.loads(json.dumps(doc))  # a deep copy of plain data
    for e in doc.get("endpoints") or []:
        s = e.get("settings") or {}
        url = s.get("url")
        if isinstance(url, str) and url.startswith(DEFAULT_FAKE_CRM):
            s["url"] = f"http://127.0.0.1:{crm_port}" + url[len(DEFAULT_FAKE_CRM):]
        path = s.get("path")
        if isinstance(path, str) and path.startswith("var/"):
            s["path"] = str(var / path[4:])
    out = var / "embedded-config.yaml"
    out.write_text("# written by `activity-sync run` from its --config, with this run's ports and paths\n"
                   + yaml.safe_dump(doc, sort_keys=False))
    return out


def start(emb, env: dict) -> None:
    crm_port = emb.ports["fake CRM"]
    # The demo's webhook secret: made up at start, handed to both sides through the environment.
    env.setdefault("ACTIVITY_SYNC_WEBHOOK_SECRET", secrets.token_hex(16))
    emb.spawn("fake-crm", ["-m", "sinks.providers.webhook.fake", "--port", str(crm_port)], env)
    _wait_http(f"http://127.0.0.1:{crm_port}/_stats")
    for i, raw in enumerate(enabled_endpoints(emb.doc)):
        ep = endpoint_from_dict(raw)
        port = emb.ports.sink_metrics(i)
        wenv = dict(env, ACTIVITY_SYNC_METRICS_PORT=str(port),
                    ACTIVITY_SYNC_DATADIR=str(emb.var / f"sink-{ep.name}-data"))
        emb.spawn(f"sink-{ep.name}", ["-m", "sinks.worker", ep.name], wenv)
        print(f"  sink {ep.name} ({ep.provider}): metrics http://127.0.0.1:{port}/metrics", flush=True)
    print(f"fake CRM: http://127.0.0.1:{crm_port}/ (what it received; JSON at /activities)", flush=True)


def _wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def crm_stats(crm_url: str) -> dict | None:
    try:
        return json.loads(urllib.request.urlopen(f"{crm_url}/_stats", timeout=2).read())
    except OSError:
        return None


async def report_deliveries(crm_url: str, expect: int | None = None, timeout: float | None = None) -> None:
    """Print what the fake CRM has stored whenever it changes; return once ``expect`` are there."""
    seen = -1
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        s = await asyncio.to_thread(crm_stats, crm_url)
        if s and s["stored"] != seen:
            seen = s["stored"]
            print(f"[fake CRM] {seen} activities stored, {s['duplicates']} duplicates ignored, "
                  f"{s['rejected']} rejected; see {crm_url}/", flush=True)
        if expect is not None and seen >= expect:
            rows = json.loads(await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"{crm_url}/activities", timeout=5).read()))
            for r in rows:
                print(f"  {r['customer_id']:20} {r['activity_code']:24} {r['writeback_code1']}/{r['writeback_code2']}"
                      f"  {r['description']}", flush=True)
            return
        await asyncio.sleep(1)
