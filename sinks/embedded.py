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
