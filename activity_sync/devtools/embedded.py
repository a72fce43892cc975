"""``activity-sync run``: the whole pipeline on one machine, for a first look and for tests.

It starts a local KRaft broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``), declares the topics, loads a
config into ``activity.config``, starts the stream worker, the fake APIs the config points at, the
pool sink worker (a worker for every enabled endpoint, and for every one saved on the admin page later)
and the admin page, produces the seed's activities and shows
them enriched and delivered.

Which fake belongs to which address is read from the providers' declarations
(:mod:`sinks.spec`): an endpoint whose settings name a fake's usual address gets that fake started,
on the port this run gives it, with a credential made up at start and handed to both sides through
the environment. The fake CRM (the webhook provider's) always runs. A PostgreSQL endpoint whose
``dsn`` names ``127.0.0.1:5433`` gets a real server (Debian's package) in ``var/postgres``.
Development tooling: production code never imports this module.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from activity_sync.tools import check_and_read, cmd_topics, produce_lines, publish_config, seed_lines, tail
from core.config import endpoint_from_dict
from core.errors import UsageError
from core.settings import Settings
from core.topics import Topics
from sinks.registry import PROVIDERS

from .broker import LocalKafka, _alive, _terminate, free_port, port_taken


@dataclass(frozen=True)
class Fake:
    """A server ``run`` can start for endpoints that point at its usual address."""

    address: str
    module: str                      # "" for the local PostgreSQL (a real server, started here)
    secret_env: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


def declared_fakes() -> dict[str, Fake]:
    """The providers' fakes by label (the fake CRM first), and the local PostgreSQL."""
    out = {}
    for p in sorted(PROVIDERS.values(), key=lambda p: (p.name != "webhook", p.fake.port if p.fake else 0)):
        if p.fake is not None:
            out[p.fake.label] = Fake(p.fake.address, p.resolve(p.fake.module), p.fake.secret_env, p.fake.args,
                                     p.fake.env)
    # not a fake: a real PostgreSQL server (Debian's package) in var/postgres
    out["local PostgreSQL"] = Fake("postgresql://activity_sync@127.0.0.1:5433", "", "ACTIVITY_SYNC_POSTGRES_PASSWORD")
    # the polling sources' fakes (a source whose settings.base_url names the address gets it)
    out["fake Alida"] = Fake("http://127.0.0.1:8095", "sources.alida.fake", "ALIDA_CLIENT_SECRET",
                             ("--seed", str(ALIDA_DEMO_EVENTS), "--every-s", "5"))
    return out


#: the fakes of the APIs sources read, and the marketing platform that pulls lists (not places `run` reports)
SOURCE_FAKES = ("fake Alida", "fake Thrive Marketing Professional")
TMP = "fake Thrive Marketing Professional"
#: member events the demo's fake Alida holds at start (it adds one every few seconds while `run` runs)
ALIDA_DEMO_EVENTS = 25


FAKES = declared_fakes()
CRM = "fake CRM"
#: the usual port of each fake (ACTIVITY_SYNC_PORT_BASE moves them all)
FAKE_PORTS = {name: int(f.address.rsplit(":", 1)[1].split("/")[0]) for name, f in FAKES.items()}
URL_SETTINGS = ("url", "login_url", "authority_host", "site_url", "oauth_endpoint", "dsn", "base_url")
FAKE_CA = "var/fake-ca.pem"  # the Dataverse fake's test CA, as example configs name it


def enabled_endpoints(doc: dict) -> list[dict]:
    return [e for e in doc.get("endpoints") or [] if e.get("enabled", True)]


def enabled_sources(doc: dict) -> list[dict]:
    return [x for x in doc.get("sources") or [] if x.get("enabled", True)]


def fakes_needed(doc: dict) -> list[str]:
    """The fakes besides the fake CRM that enabled endpoints and sources point at (by their usual address)."""
    out = []
    for name, fake in FAKES.items():
        if name != CRM and any(isinstance((e.get("settings") or {}).get(k), str)
                               and e["settings"][k].startswith(fake.address)
                               for e in [*enabled_endpoints(doc), *enabled_sources(doc)] for k in URL_SETTINGS):
            out.append(name)
    if doc.get("lists") and TMP not in out:  # community lists: the marketing platform that pulls them
        out.append(TMP)
    return out


def localise(doc: dict, var: Path, ports) -> Path:
    """The config as this run uses it, written to ``var``: endpoints that name a fake's usual address
    point at the port it really has, and relative ``var/…`` paths live under ``var``."""
    doc = json.loads(json.dumps(doc))  # a deep copy of plain data
    for e in [*(doc.get("endpoints") or []), *(doc.get("sources") or [])]:
        s = e.get("settings") or {}
        for key in URL_SETTINGS:
            url = s.get(key)
            for name, fake in FAKES.items():
                if isinstance(url, str) and url.startswith(fake.address) and name in ports.ports:
                    s[key] = f"{fake.address.rsplit(':', 1)[0]}:{ports[name]}" + url[len(fake.address):]
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
    return {name: f"{FAKES[name].address.split(':')[0]}://127.0.0.1:{emb.ports[name]}"
            for name in [CRM, *fakes_needed(emb.doc)] if name != "local PostgreSQL"}


def start(emb, env: dict) -> None:
    """The fakes the config needs (the fake CRM always), then the pool sink worker (every enabled endpoint)."""
    # The demo's credentials: made up at start, handed to both sides through the environment.
    for fake in FAKES.values():
        env.setdefault(fake.secret_env, secrets.token_hex(16))
        for name, template in fake.env:
            env.setdefault(name, template.format(secret=env[fake.secret_env]))
    ca_file = emb.var / FAKE_CA[4:]
    for name in [CRM, *fakes_needed(emb.doc)]:
        port = emb.ports[name]
        if name == "local PostgreSQL":
            start_postgres(emb, env, port)
            continue
        fake = FAKES[name]
        args = ["-m", fake.module, "--port", str(port), *(a.format(ca_file=ca_file) for a in fake.args)]
        emb.spawn(name.replace(" ", "-").lower(), args, env)
        https = fake.address.startswith("https:")
        _wait_http(f"{fake.address.split(':')[0]}://127.0.0.1:{port}/_stats", ca_file=ca_file if https else None)
        if name != CRM:
            print(f"{name}: {fake_urls(emb)[name]}/ (what it stored, as JSON)", flush=True)
    # One pool sink worker: a worker for every enabled endpoint, and for every endpoint saved later on
    # the admin page (its children's own metrics ports are free ones on 127.0.0.1, merged into its own).
    port = emb.ports.sink_metrics(0)
    wenv = dict(env, ACTIVITY_SYNC_METRICS_PORT=str(port), ACTIVITY_SYNC_DATADIR=str(emb.var / "sink-data"))
    emb.spawn("sink-pool", ["-m", "sinks.pool"], wenv)
    eps = [endpoint_from_dict(raw) for raw in enabled_endpoints(emb.doc)]
    print(f"  sink pool ({', '.join(f'{ep.name}: {ep.provider}' for ep in eps) or 'no endpoint yet'}; endpoints "
          f"saved later start by themselves): metrics http://127.0.0.1:{port}/metrics", flush=True)
    print(f"fake CRM: http://127.0.0.1:{emb.ports[CRM]}/ (what it received; JSON at /activities)", flush=True)


def start_postgres(emb, env: dict, port: int) -> None:
    """A real PostgreSQL server for endpoints whose dsn names the usual local address: its cluster
    lives in var/postgres (kept between runs, as is the password it was made with)."""
    from .postgres import LocalPostgres

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
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _open(url, ca_file)
            return
        except (OSError, http.client.HTTPException):
            # HTTPException too: before the server listens, a connect to a free port of the ephemeral
            # range can meet itself (TCP simultaneous open) and read its own request back
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

    from .postgres import DATABASE, ROLE

    password = (emb.var / "postgres" / "password").read_text().strip()
    port = emb.ports["local PostgreSQL"]
    for e in enabled_endpoints(emb.doc):
        st = e.get("settings") or {}
        if e.get("provider") != "postgresql" or not str(st.get("dsn", "")).startswith(FAKES["local PostgreSQL"].address):
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


# --------------------------------------------------------------------------- the run

PORT_BASE_HELP = ("ACTIVITY_SYNC_PORT_BASE=N moves every port of `run`: Kafka N, its controller N+1, the fake "
                  "CRM N+2, the stream worker's metrics N+3, the sink pool's metrics N+4 (then one unused port per "
                  "further endpoint), then "
                  "the providers' fakes (and a local PostgreSQL) when the config points at them, then the admin page, "
                  "the Push API, its metrics, the directory worker's metrics and the source workers' metrics")


DEMO_KEY_ID, DEMO_TENANT = "demo", "DEMO"


class Ports:
    """Every port `run` opens. With ACTIVITY_SYNC_PORT_BASE all come from it (and must be free);
    otherwise the usual ones, each replaced by a free port when taken (the addresses are printed)."""

    def __init__(self, kafka: int | None, sinks: int, fakes: tuple[str, ...] = ()) -> None:
        base = os.environ.get("ACTIVITY_SYNC_PORT_BASE")
        pulls = TMP in fakes  # the marketing platform's port comes last (the others keep their places)
        fakes = tuple(f for f in fakes if f != TMP)
        if base:
            if not base.isdigit() or not 1024 <= int(base) <= 65000:
                raise UsageError(f"ACTIVITY_SYNC_PORT_BASE={base!r}: a port number from 1024 to 65000")
            b = int(base)
            wanted = {"kafka": b, "controller": b + 1, "fake CRM": b + 2, "stream metrics": b + 3}
            wanted.update({f"sink metrics {i}": b + 4 + i for i in range(sinks)})
            wanted.update({name: b + 4 + sinks + j for j, name in enumerate(fakes)})
            wanted["admin"] = b + 4 + sinks + len(fakes)
            for i, name in enumerate(("ingest", "ingest metrics", "directory metrics", "source metrics",
                                      "anmc metrics", "scores metrics", "lists metrics"), 1):
                wanted[name] = wanted["admin"] + i
            if pulls:
                wanted[TMP] = wanted["admin"] + 9
            taken = [f"{n} {p}" for n, p in wanted.items() if port_taken(p)]
            if taken:
                raise UsageError(f"ports taken: {', '.join(taken)} (ACTIVITY_SYNC_PORT_BASE={base}); choose another base")
            self.ports = wanted
            return
        k = kafka or 9092
        wanted = {"kafka": k, "controller": k + 1, CRM: FAKE_PORTS[CRM], "stream metrics": 6066}
        wanted.update({f"sink metrics {i}": 6067 + i for i in range(sinks)})
        wanted.update({name: FAKE_PORTS[name] for name in fakes})
        wanted["admin"] = 8080
        wanted.update({"ingest": 8094, "ingest metrics": 6090, "directory metrics": 6091, "source metrics": 6092,
                       "anmc metrics": 6093, "scores metrics": 6094, "lists metrics": 6095})
        if pulls:
            wanted[TMP] = FAKE_PORTS[TMP]
        self.ports = {}
        for name, port in wanted.items():
            if port_taken(port) or port in self.ports.values():
                if name == "kafka" and kafka is not None:  # asked for by name: say so rather than move it
                    raise UsageError(f"port {port} on 127.0.0.1 (Kafka, --port / ACTIVITY_SYNC_KAFKA_PORT) is taken")
                new = free_port()
                print(f"port {port} ({name}) is taken; using {new}", flush=True)
                port = new
            self.ports[name] = port

    def __getitem__(self, name: str) -> int:
        return self.ports[name]

    def sink_metrics(self, i: int) -> int:
        return self.ports[f"sink metrics {i}"]


# --------------------------------------------------------------------------- embedded default

class Embedded:
    """The whole pipeline on one machine: local broker, topics, config, workers, seed events."""

    def __init__(self, config: str, var: Path, port: int | None, feed_seed: bool) -> None:
        self.var = var
        self.feed_seed = feed_seed
        self.broker = None
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.reap_stale()
        (self.var / "run.pid").write_text(str(os.getpid()))
        self.doc = check_and_read(config)
        self.ports = Ports(port, max(1, len(enabled_endpoints(self.doc))),
                           tuple(fakes_needed(self.doc)))
        self.config = localise(self.doc, self.var, self.ports)

    occ_env: dict = {}

    def env(self) -> dict:
        env = dict(os.environ, **self.occ_env)
        env["ACTIVITY_SYNC_CONFIG"] = str(Path(self.config).resolve())
        env["ACTIVITY_SYNC_METRICS_PORT"] = str(self.ports["stream metrics"])
        return env

    def start_broker(self) -> str:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        self.broker = LocalKafka(self.var / "kafka", self.ports["kafka"], self.ports["controller"])
        print(f"starting Kafka on {self.broker.bootstrap} (data in {self.var / 'kafka'}) ...", flush=True)
        self.broker.start()
        print(f"Kafka ready (pid {self.broker.proc.pid})", flush=True)
        with open(self.var / "pids", "a") as f:
            f.write(f"{self.broker.proc.pid}\n")
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = self.broker.bootstrap
        return self.broker.bootstrap

    def reap_stale(self) -> None:
        """Stop workers a previous run left behind (it was killed before it could stop them)."""
        owner = self.var / "run.pid"
        if owner.exists() and owner.read_text().strip().isdigit() and _alive(int(owner.read_text())) \
                and int(owner.read_text()) != os.getpid():
            raise UsageError(f"another `activity-sync run` (pid {owner.read_text().strip()}) uses {self.var}; "
                             "stop it, or give this one its own: --var DIR (ports move by themselves)")
        pids = self.var / "pids"
        if pids.exists():
            for line in pids.read_text().split():
                if line.isdigit() and _alive(int(line)):
                    _terminate(int(line), 10)
            pids.unlink()

    def spawn(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = open(self.var / f"{name}.log", "ab")
        p = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append((name, p))
        with open(self.var / "pids", "a") as f:
            f.write(f"{p.pid}\n")
        print(f"started {name} (pid {p.pid}, log {self.var / (name + '.log')})", flush=True)
        return p

    def start_workers(self) -> None:
        env = self.env()
        env.setdefault("ACTIVITY_SYNC_DATADIR", str(self.var / "streams-data"))
        self.spawn("stream-worker", ["-m", "streams.app"], env)
        start(self, env)
        self.start_admin(env)
        self.start_push(env)
        self.start_sources(env)
        if self.doc.get("scoring"):  # engagement scores: the scoring stage
            port = self.ports["scores metrics"]
            self.spawn("scores", ["-m", "streams.scores"], dict(env, ACTIVITY_SYNC_METRICS_PORT=str(port),
                                                                 ACTIVITY_SYNC_DATADIR=str(self.var / "scores-data")))
            print(f"  scores ({', '.join(x.get('tenant', '?') for x in self.doc['scoring'])}): metrics "
                  f"http://127.0.0.1:{port}/metrics (the admin page's Scores tab; `activity-sync scores report "
                  f"--tenant T`)", flush=True)
        if self.doc.get("lists"):  # community lists: the list stage (the fake marketing platform pulls them)
            port = self.ports["lists metrics"]
            self.spawn("lists", ["-m", "streams.lists"], dict(env, ACTIVITY_SYNC_METRICS_PORT=str(port),
                                                               ACTIVITY_SYNC_DATADIR=str(self.var / "lists-data")))
            tmp = f"http://127.0.0.1:{self.ports[TMP]}"
            print(f"  lists ({', '.join(x.get('name', '?') for x in self.doc['lists'])}): metrics "
                  f"http://127.0.0.1:{port}/metrics (the admin page's Lists tab)\n"
                  f"  the fake marketing platform pulls them: curl -X POST {tmp}/_ui/groups/refresh, then "
                  f"curl -X POST '{tmp}/_ui/groups/<id>/sync?wait=1' (Refresh Target Group List, Sync Now)",
                  flush=True)
        if self.doc.get("anmc"):  # an Action Network <-> Mobile Commons sync: its stream stage
            port = self.ports["anmc metrics"]
            self.spawn("anmc", ["-m", "streams.anmc"], dict(env, ACTIVITY_SYNC_METRICS_PORT=str(port),
                                                             ACTIVITY_SYNC_DATADIR=str(self.var / "anmc-data")))
            print(f"  anmc sync {', '.join(x.get('name', '?') for x in self.doc['anmc'])}: metrics "
                  f"http://127.0.0.1:{port}/metrics (`activity-sync anmc report` shows its runs)", flush=True)

    def start_sources(self, env: dict) -> None:
        """One process running every enabled polling source the config holds (``source --all``)."""
        sources = enabled_sources(self.doc)
        if not sources:
            return
        port = self.ports["source metrics"]
        self.spawn("sources", ["-m", "activity_sync.cli", "source", "--all", "--metrics-port", str(port)], env)
        print(f"  sources {', '.join(x['name'] for x in sources)}: metrics http://127.0.0.1:{port}/metrics "
              f"(`activity-sync sources --status` shows where each is)", flush=True)

    def start_push(self, env: dict) -> None:
        """The member directory worker and the Push API server (its demo key: issue_demo_key)."""
        self.spawn("directory", ["-m", "streams.directory"],
                   dict(env, ACTIVITY_SYNC_METRICS_PORT=str(self.ports["directory metrics"]),
                        ACTIVITY_SYNC_DATADIR=str(self.var / "directory-data")))
        port = self.ports["ingest"]
        self.spawn("ingest", ["-m", "activity_sync.cli", "ingest", "--port", str(port), "--metrics-port",
                              str(self.ports["ingest metrics"])], env)
        print(f"Push API: http://127.0.0.1:{port}/v2/contactinfo and /v2/list (ApiKey: the line in "
              f"{self.var / 'push-key'}; OpenAPI at /v2/openapi.json)", flush=True)

    async def issue_demo_key(self, settings) -> str:
        """A Push API key for the demo tenant, issued once and kept in var/push-key (0600)."""
        from activity_sync.push import _produce_key, issue_key, read_keys

        key_file = self.var / "push-key"
        keys = await read_keys(settings)
        if key_file.exists() and key_file.read_text().split(".")[0] in keys:
            return key_file.read_text().strip()
        if DEMO_KEY_ID in keys:  # issued by a run whose var/push-key is gone: issue it anew
            await _produce_key(settings, DEMO_KEY_ID.encode(), None)
        presented = await issue_key(settings, DEMO_KEY_ID, DEMO_TENANT, None)
        key_file.touch(mode=0o600)
        key_file.write_text(presented + "\n")
        return presented

    async def issue_occ(self, settings: Settings) -> None:
        """The Online Community Connection's credentials for each tenant with lists (issued anew each run,
        stored hashed on activity.config), handed to the fake marketing platform with the feed's address."""
        from aiokafka import AIOKafkaProducer

        from core.lists import issue_connection

        tenants = sorted({x.get("tenant") for x in self.doc.get("lists") or [] if x.get("tenant")})
        if not tenants:
            return
        producer = AIOKafkaProducer(acks="all", **settings.kafka.aiokafka_kwargs())
        await producer.start()
        try:
            conn, password = issue_connection(tenants[0])
            await producer.send_and_wait(Topics(settings.topic_prefix).config, key=conn.key().encode(),
                                         value=json.dumps(conn.record()).encode())
        finally:
            await producer.stop()
        self.occ_env = {"ACTIVITY_SYNC_OCC_FEED_URL": f"http://127.0.0.1:{self.ports['admin']}/occ/v1",
                        "ACTIVITY_SYNC_OCC_IAMKEY": conn.iam_key, "ACTIVITY_SYNC_OCC_PASSWORD": password}
        print(f"Online Community Connection of tenant {tenants[0]}: IAMKey {conn.iam_key} (the password went to the "
              f"fake marketing platform; the admin page's Lists tab issues new ones)", flush=True)

    def start_admin(self, env: dict) -> None:
        """The admin page and API, with a key made once and kept in var/admin-key."""
        import secrets

        key_file = self.var / "admin-key"
        if not key_file.exists():
            key_file.touch(mode=0o600)
            key_file.write_text(secrets.token_urlsafe(24) + "\n")
        aenv = dict(env, ACTIVITY_SYNC_ADMIN_KEY=env.get("ACTIVITY_SYNC_ADMIN_KEY") or key_file.read_text().strip())
        port = self.ports["admin"]
        self.spawn("admin", ["-m", "activity_sync.cli", "admin", "--port", str(port)], aenv)
        print(f"admin page: http://127.0.0.1:{port}/ (API key: the line in {key_file})", flush=True)

    def stop(self) -> None:
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        (self.var / "pids").unlink(missing_ok=True)
        if self.broker is not None:
            self.broker.stop()
        (self.var / "run.pid").unlink(missing_ok=True)


async def run_embedded(args) -> int:
    var = Path(args.var).resolve()
    var.mkdir(parents=True, exist_ok=True)
    emb = Embedded(args.config, var, args.port, not args.no_seed)
    reporter = None
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # both end in the finally below, which stops everything
        loop.add_signal_handler(sig, main_task.cancel)
    try:
        bootstrap = emb.start_broker()
        settings = Settings.from_env(bootstrap)
        await cmd_topics(settings, describe=False)
        n = await publish_config(settings, emb.config)
        print(f"loaded {n} config records from {args.config} into {Topics(settings.topic_prefix).config}")
        push_key = await emb.issue_demo_key(settings)
        await emb.issue_occ(settings)
        emb.start_workers()
        port = emb.ports["ingest"]
        print(f"Push API demo key (tenant {DEMO_TENANT}): {push_key}\n  try: curl -s -H 'ApiKey: {push_key}' "
              f"-H 'Content-Type: application/json' -d '[{{\"ContactDetails\": {{\"ContactId\": \"C-1\", "
              f"\"FirstName\": \"Ada\"}}}}]' http://127.0.0.1:{port}/v2/contactinfo", flush=True)
        reporter = None
        if emb.feed_seed:
            lines = seed_lines()
            await produce_lines(settings, lines)
            print(f"produced the seed's {len(lines)} example activities to {Topics(settings.topic_prefix).raw}")
        watched = watched_fakes(emb)
        if not args.exit:
            reporter = asyncio.gather(*(report_deliveries(url, name=name, ca_file=ca)
                                        for name, url, ca in watched),
                                      return_exceptions=True)  # a stop cancels them: no error to report
        print("\nactivity.enriched, decoded (Ctrl-C to stop; `.venv/bin/activity-sync tail --pretty` shows whole "
              "records):\n", flush=True)
        await tail(settings, "enriched", True, args.max, args.idle, pretty=True, brief=not args.full)
        if args.max is None and args.idle is None:
            return 0
        if args.exit:
            if emb.feed_seed:
                for name, url, ca in watched:
                    print(f"waiting for the {name} to acknowledge them ...", flush=True)
                    await report_deliveries(url, expect=len(seed_lines()), timeout=60, name=name,
                                                           ca_file=ca)
                if "local PostgreSQL" in fakes_needed(emb.doc):
                    await report_postgres(emb, expect=len(seed_lines()))
            return 0
        print("pipeline running; Ctrl-C to stop", flush=True)
        while all(p.poll() is None for _, p in emb.procs):
            await asyncio.sleep(1)
        dead = [n for n, p in emb.procs if p.poll() is not None]
        print(f"worker(s) exited: {', '.join(dead)}; see their logs in {var}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    finally:
        if reporter is not None:
            reporter.cancel()
            try:
                await reporter  # retrieved: a cancelled gather would otherwise be logged with a traceback
            except BaseException:  # noqa: BLE001 - stopping: whatever it ended with is not news
                pass
        emb.stop()


def watched_fakes(emb) -> list[tuple[str, str, Path | None]]:
    """The fakes whose deliveries `run` reports: those an enabled endpoint writes to (the fake CRM
    when none does, as in a config of Activity History only)."""
    urls = fake_urls(emb)
    used = [n for n in urls if n != "fake CRM" and n not in SOURCE_FAKES]
    if any((e.get("provider") or (e.get("settings") or {}).get("sink")) == "webhook"
           for e in enabled_endpoints(emb.doc)) or \
            not (used or "local PostgreSQL" in fakes_needed(emb.doc)):
        used.insert(0, "fake CRM")
    return [(n, urls[n], emb.var / "fake-ca.pem" if n == "fake Dataverse" else None) for n in used]


