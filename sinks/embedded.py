"""The delivery half of ``activity-sync run``: the fake APIs a config points at, and one sink worker
per enabled endpoint.

The fake CRM (the webhook receiver) always runs. An endpoint whose settings point at another
provider's fake at its usual address (``http://127.0.0.1:8086`` Salesforce,
``https://127.0.0.1:8087`` Dataverse and its Entra ID) gets that fake started too, on the port this
run gives it, with a credential made up at start and handed to both sides through the environment.
"""

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
#: the fakes `run` can start: port name, usual address, module, the secret's environment variable
FAKES = {
    "fake CRM": ("http://127.0.0.1:8085", "sinks.providers.webhook.fake", "ACTIVITY_SYNC_WEBHOOK_SECRET"),
    "fake Salesforce": ("http://127.0.0.1:8086", "sinks.providers.salesforce.fake", "ACTIVITY_SYNC_SALESFORCE_SECRET"),
    "fake Dataverse": ("https://127.0.0.1:8087", "sinks.providers.dynamics.fake", "ACTIVITY_SYNC_DYNAMICS_SECRET"),
}
URL_SETTINGS = ("url", "login_url", "authority_host")
FAKE_CA = "var/fake-ca.pem"  # the Dataverse fake's test CA, as example configs name it


def enabled_endpoints(doc: dict) -> list[dict]:
    return [e for e in doc.get("endpoints") or [] if e.get("enabled", True)]


def fakes_needed(doc: dict) -> list[str]:
    """The fakes besides the fake CRM that enabled endpoints point at (by their usual address)."""
    out = []
    for name, (address, _, _) in FAKES.items():
        if name != "fake CRM" and any(isinstance((e.get("settings") or {}).get(k), str)
                                      and e["settings"][k].startswith(address)
                                      for e in enabled_endpoints(doc) for k in URL_SETTINGS):
            out.append(name)
    return out


def localise(doc: dict, var: Path, ports) -> Path:
    """The config as this run uses it, written to ``var``: endpoints that name a fake's usual address
    point at the port it really has, and relative ``var/…`` paths live under ``var``."""
    doc = json.loads(json.dumps(doc))  # a deep copy of plain data
    for e in doc.get("endpoints") or []:
        s = e.get("settings") or {}
        for key in URL_SETTINGS:
            url = s.get(key)
            for name, (address, _, _) in FAKES.items():
                if isinstance(url, str) and url.startswith(address) and name in ports.ports:
                    scheme = address.split(":")[0]
                    s[key] = f"{scheme}://127.0.0.1:{ports[name]}" + url[len(address):]
        for key in ("path", "ca_file"):
            path = s.get(key)
            if isinstance(path, str) and path.startswith("var/"):
                s[key] = str(var / path[4:])
    out = var / "embedded-config.yaml"
    out.write_text("# written by `activity-sync run` from its --config, with this run's ports and paths\n"
                   + yaml.safe_dump(doc, sort_keys=False))
    return out


def fake_urls(emb) -> dict[str, str]:
    """Each started fake's base URL (for the delivery report)."""
    return {name: f"{FAKES[name][0].split(':')[0]}://127.0.0.1:{emb.ports[name]}"
            for name in ["fake CRM", *fakes_needed(emb.doc)]}


def start(emb, env: dict) -> None:
    crm_port = emb.ports["fake CRM"]
    # The demo's credentials: made up at start, handed to both sides through the environment.
    for name, (_, _, secret_env) in FAKES.items():
        env.setdefault(secret_env, secrets.token_hex(16))
    emb.spawn("fake-crm", ["-m", "sinks.providers.webhook.fake", "--port", str(crm_port)], env)
    _wait_http(f"http://127.0.0.1:{crm_port}/_stats")
    for name in fakes_needed(emb.doc):
        port = emb.ports[name]
        args = ["-m", FAKES[name][1], "--port", str(port)]
        if name == "fake Dataverse":
            args += ["--ca-file", str(emb.var / FAKE_CA[4:])]
        emb.spawn(name.replace(" ", "-").lower(), args, env)
        _wait_http(f"{FAKES[name][0].split(':')[0]}://127.0.0.1:{port}/_stats",
                   ca_file=emb.var / FAKE_CA[4:] if name == "fake Dataverse" else None)
        print(f"{name}: {fake_urls(emb)[name]}/ (what it stored, as JSON)", flush=True)
    for i, raw in enumerate(enabled_endpoints(emb.doc)):
        ep = endpoint_from_dict(raw)
        port = emb.ports.sink_metrics(i)
        wenv = dict(env, ACTIVITY_SYNC_METRICS_PORT=str(port),
                    ACTIVITY_SYNC_DATADIR=str(emb.var / f"sink-{ep.name}-data"))
        emb.spawn(f"sink-{ep.name}", ["-m", "sinks.worker", ep.name], wenv)
        print(f"  sink {ep.name} ({ep.provider}): metrics http://127.0.0.1:{port}/metrics", flush=True)
    print(f"fake CRM: http://127.0.0.1:{crm_port}/ (what it received; JSON at /activities)", flush=True)


def _open(url: str, ca_file=None, timeout: float = 2):
    context = None
    if url.startswith("https:"):
        import ssl

        context = ssl.create_default_context()
        if ca_file and Path(ca_file).exists():
            context.load_verify_locations(cafile=str(ca_file))
    return urllib.request.urlopen(url, timeout=timeout, context=context).read()


def _wait_http(url: str, timeout: float = 20, ca_file=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _open(url, ca_file)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def crm_stats(crm_url: str, ca_file=None) -> dict | None:
    try:
        return json.loads(_open(f"{crm_url}/_stats", ca_file))
    except OSError:
        return None


def _row(r: dict) -> str:
    """One stored record, whichever fake stored it (webhook JSON, a Salesforce Task or custom object,
    a Dataverse task)."""
    who = r.get("customer_id") or r.get("WhoId") or r.get("WhoId__c") or r.get("_regardingobjectid_value") or ""
    code = r.get("activity_code") or r.get("Type") or r.get("Type__c") or r.get("category") or ""
    text = r.get("description") if "activity_code" in r else (r.get("Subject") or r.get("Description__c")
                                                              or r.get("subject") or "")
    extra = f"{r['writeback_code1']}/{r['writeback_code2']}" if "writeback_code1" in r else ""
    return f"  {who:20} {code:24} {extra}  {text}"


async def report_deliveries(crm_url: str, expect: int | None = None, timeout: float | None = None,
                            name: str = "fake CRM", ca_file=None) -> None:
    """Print what a fake has stored whenever it changes; return once ``expect`` are there."""
    seen = -1
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        s = await asyncio.to_thread(crm_stats, crm_url, ca_file)
        if s and s["stored"] != seen:
            seen = s["stored"]
            print(f"[{name}] {seen} activities stored, {s['duplicates']} duplicates ignored, "
                  f"{s['rejected']} rejected; see {crm_url}/", flush=True)
        if expect is not None and seen >= expect:
            rows = json.loads(await asyncio.to_thread(_open, f"{crm_url}/activities", ca_file, 5))
            for r in rows:
                print(_row(r), flush=True)
            return
        await asyncio.sleep(1)
    if expect is not None:
        raise RuntimeError(f"{name} stored {max(seen, 0)} of {expect} activities within {timeout:.0f}s")
