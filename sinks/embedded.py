"""The delivery half of ``activity-sync run``: the fake APIs a config points at, and one sink worker
per enabled endpoint.

The fake CRM (the webhook receiver) always runs. An endpoint whose settings point at another
provider's fake at its usual address (:data:`FAKES`: ``http://127.0.0.1:8086`` Salesforce,
``https://127.0.0.1:8087`` Dataverse and its Entra ID, 8088 iMIS, 8089 netFORUM, 8090 RAMCO, 8091
Aptify, 8092 Personify, 8093 the configurable HTTP sink's receiver) gets that fake started too, on
the port this run gives it, with a credential made up at start and handed to both sides through the
environment. A PostgreSQL endpoint whose ``dsn`` names ``127.0.0.1:5433`` gets a real server (Debian's
package) with its cluster in ``var/postgres``.
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
    "fake iMIS": ("http://127.0.0.1:8088", "sinks.providers.imis.fake", "ACTIVITY_SYNC_IMIS_PASSWORD"),
    "fake netFORUM": ("http://127.0.0.1:8089", "sinks.providers.netforum.fake", "ACTIVITY_SYNC_NETFORUM_PASSWORD"),
    "fake RAMCO": ("http://127.0.0.1:8090", "sinks.providers.ramco.fake", "ACTIVITY_SYNC_RAMCO_KEY"),
    "fake Aptify": ("http://127.0.0.1:8091", "sinks.providers.aptify.fake", "ACTIVITY_SYNC_APTIFY_PASSWORD"),
    "fake Personify": ("http://127.0.0.1:8092", "sinks.providers.personify.fake", "ACTIVITY_SYNC_PERSONIFY_PASSWORD"),
    "fake receiver": ("http://127.0.0.1:8093", "sinks.providers.http.fake", "ACTIVITY_SYNC_HTTP_SECRET"),
    # not a fake: a real PostgreSQL server (Debian's package) in var/postgres
    "local PostgreSQL": ("postgresql://activity_sync@127.0.0.1:5433", "", "ACTIVITY_SYNC_POSTGRES_PASSWORD"),
}
#: the usual port of each fake (ACTIVITY_SYNC_PORT_BASE moves them all)
FAKE_PORTS = {name: int(address.rsplit(":", 1)[1].split("/")[0]) for name, (address, _, _) in FAKES.items()}
URL_SETTINGS = ("url", "login_url", "authority_host", "site_url", "oauth_endpoint", "dsn")
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
                    s[key] = f"{address.rsplit(':', 1)[0]}:{ports[name]}" + url[len(address):]
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
            for name in ["fake CRM", *fakes_needed(emb.doc)] if name != "local PostgreSQL"}


def start(emb, env: dict) -> None:
    crm_port = emb.ports["fake CRM"]
    # The demo's credentials: made up at start, handed to both sides through the environment.
    for name, (_, _, secret_env) in FAKES.items():
        env.setdefault(secret_env, secrets.token_hex(16))
    env.setdefault("ACTIVITY_SYNC_HTTP_HEADERS", f"X-Api-Key: {env['ACTIVITY_SYNC_HTTP_SECRET']}")
    emb.spawn("fake-crm", ["-m", "sinks.providers.webhook.fake", "--port", str(crm_port)], env)
    _wait_http(f"http://127.0.0.1:{crm_port}/_stats")
    for name in fakes_needed(emb.doc):
        port = emb.ports[name]
        if name == "local PostgreSQL":
            start_postgres(emb, env, port)
            continue
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


def start_postgres(emb, env: dict, port: int) -> None:
    """A real PostgreSQL server for endpoints whose dsn names the usual local address: its cluster
    lives in var/postgres (kept between runs, as is the password it was made with)."""
    from activity_sync.devtools.postgres import LocalPostgres

    pg = LocalPostgres(emb.var / "postgres", port=port, keep=True)
    pg.start()
    env["ACTIVITY_SYNC_POSTGRES_PASSWORD"] = pg.password
    emb.procs.append(("postgres", pg.proc))
    print(f"local PostgreSQL: {pg.dsn} (psql -h 127.0.0.1 -p {port} -U activity_sync activity_sync; the password "
          f"is in {emb.var / 'postgres' / 'password'})", flush=True)


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
    def first(*keys):
        return next((str(r[k]) for k in keys if r.get(k) not in (None, "")), "")

    who = first("customer_id", "WhoId", "WhoId__c", "_regardingobjectid_value", "ID", "cma_cst_key",
                "cobalt_ContactId", "PersonID", "MasterCustomerId", "ContributorMemberKey")
    code = first("activity_code", "Type", "Type__c", "ACTIVITY_TYPE", "cma_activity_code", "cobalt_ActivityCode",
                 "ActivityCode", "category")
    text = r.get("description") if "activity_code" in r else first(
        "Subject", "Description__c", "subject", "DESCRIPTION", "cobalt_Description", "Description", "ActivityText",
        "ActivityDescription", "cma_activity_subcode")
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
            print(f"[{name}] {seen} activities stored, {s.get('duplicates', 0)} duplicates ignored, "
                  f"{s.get('rejected', 0)} rejected; see {crm_url}/", flush=True)
        if expect is not None and seen >= expect:
            rows = json.loads(await asyncio.to_thread(_open, f"{crm_url}/activities", ca_file, 5))
            for r in rows:
                print(_row(r), flush=True)
            return
        await asyncio.sleep(1)
    if expect is not None:
        raise RuntimeError(f"{name} stored {max(seen, 0)} of {expect} activities within {timeout:.0f}s")


async def report_postgres(emb, expect: int, timeout: float = 60) -> None:
    """For `run --exit`: wait until each local PostgreSQL endpoint's table holds ``expect`` rows, then print them."""
    import asyncpg

    from activity_sync.devtools.postgres import DATABASE, ROLE

    password = (emb.var / "postgres" / "password").read_text().strip()
    port = emb.ports["local PostgreSQL"]
    for e in enabled_endpoints(emb.doc):
        st = e.get("settings") or {}
        if e.get("provider") != "postgresql" or not str(st.get("dsn", "")).startswith(FAKES["local PostgreSQL"][0]):
            continue
        table = f'"{st.get("schema_name", "public")}"."{st.get("table", "community_activities")}"'
        print(f"waiting for the local PostgreSQL table {table} to hold them ...", flush=True)
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user=ROLE, database=DATABASE, password=password)
        try:
            deadline = time.monotonic() + timeout
            n = 0
            while time.monotonic() < deadline:
                try:
                    n = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE endpoint = $1", e["name"])
                except asyncpg.UndefinedTableError:
                    n = 0
                if n >= expect:
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError(f"{table} held {n} of {expect} activities within {timeout:.0f}s")
            print(f"[local PostgreSQL] {n} rows in {table}", flush=True)
            for r in await conn.fetch(f"SELECT customer_id, activity_code, writeback_code1, writeback_code2, "
                                      f"description FROM {table} WHERE endpoint = $1 ORDER BY activity_date", e["name"]):
                print(f"  {r[0] or '':20} {r[1]:24} {r[2]}/{r[3]}  {r[4]}", flush=True)
        finally:
            await conn.close()
