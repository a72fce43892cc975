"""``activity-sync``: the command line for operators, analysts and the embedded default.

    activity-sync run                 # embedded default: local broker, topics, config, workers, seed events
    activity-sync topics [--describe] # create the declared topics / show their configs
    activity-sync load-config FILE    # validate a YAML config and publish it to activity.config
    activity-sync produce [FILE|--seed]  # JSON events (one per line) to activity.raw
    activity-sync tail [--topic enriched|dead|NAME] [--from-beginning] [--max N] [--idle S]
    activity-sync worker              # one stream worker (same as python -m streams.app)
    activity-sync sink --endpoint NAME   # one sink worker for an endpoint (start more to scale it)
    activity-sync replay [--endpoint NAME] [--since T] [--until T] [--key K ...] [--dry-run]
    activity-sync history [--member ID] [--code CODE] [--since T] [--until T]
    activity-sync providers [--schema]   # providers and their settings (JSON Schema with --schema)
    activity-sync fake-crm [--port 8085]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from streams.envvars import env_int
from streams.errors import UsageError, guarded
from streams.settings import Settings
from streams.tools import (bundled, cmd_topics, produce_lines, publish_config, seed_lines, tail)
from streams.topics import Topics





def check_config_file(path) -> None:
    """Everything a config can be refused for, before any of it is published: the file itself (YAML,
    size, anchors, tags), templates, names (streams.routing), and each endpoint's provider and
    settings (sinks.registry, the one parse path). Raises UsageError naming file, endpoint and field."""
    from sinks.registry import SettingsError, parse_endpoint
    from streams.catalog import load_catalog
    from streams.routing import ConfigError, parse_config, read_config_file

    try:
        doc = read_config_file(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        cfg = parse_config(doc, load_catalog(doc.get("catalog"), doc.get("customer_keys")))
        for ep in cfg.endpoints:
            parse_endpoint(ep)
    except (ConfigError, SettingsError, ValueError, TypeError) as exc:
        raise UsageError(f"{path}: {exc}") from None


PORT_BASE_HELP = ("ACTIVITY_SYNC_PORT_BASE=N moves every port of `run`: Kafka N, its controller N+1, the fake "
                  "CRM N+2, the stream worker's metrics N+3, each sink worker's metrics N+4, N+5, ..., then "
                  "the providers' fakes (and a local PostgreSQL) when the config points at them, then the admin page")


class Ports:
    """Every port `run` opens. With ACTIVITY_SYNC_PORT_BASE all come from it (and must be free);
    otherwise the usual ones, each replaced by a free port when taken (the addresses are printed)."""

    def __init__(self, kafka: int | None, sinks: int, fakes: tuple[str, ...] = ()) -> None:
        from activity_sync.devtools.broker import free_port, port_taken

        base = os.environ.get("ACTIVITY_SYNC_PORT_BASE")
        if base:
            if not base.isdigit() or not 1024 <= int(base) <= 65000:
                raise UsageError(f"ACTIVITY_SYNC_PORT_BASE={base!r}: a port number from 1024 to 65000")
            b = int(base)
            wanted = {"kafka": b, "controller": b + 1, "fake CRM": b + 2, "stream metrics": b + 3}
            wanted.update({f"sink metrics {i}": b + 4 + i for i in range(sinks)})
            wanted.update({name: b + 4 + sinks + j for j, name in enumerate(fakes)})
            wanted["admin"] = b + 4 + sinks + len(fakes)
            taken = [f"{n} {p}" for n, p in wanted.items() if port_taken(p)]
            if taken:
                raise UsageError(f"ports taken: {', '.join(taken)} (ACTIVITY_SYNC_PORT_BASE={base}); choose another base")
            self.ports = wanted
            return
        k = kafka or 9092
        wanted = {"kafka": k, "controller": k + 1, "fake CRM": 8085, "stream metrics": 6066}
        wanted.update({f"sink metrics {i}": 6067 + i for i in range(sinks)})
        from sinks.embedded import FAKE_PORTS
        wanted.update({name: FAKE_PORTS[name] for name in fakes})
        wanted["admin"] = 8080
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
        from sinks import embedded as sinks_embedded

        self.reap_stale()
        (self.var / "run.pid").write_text(str(os.getpid()))
        self.doc = check_and_read(config)
        self.ports = Ports(port, len(sinks_embedded.enabled_endpoints(self.doc)),
                           tuple(sinks_embedded.fakes_needed(self.doc)))
        self.config = sinks_embedded.localise(self.doc, self.var, self.ports)

    def env(self) -> dict:
        env = dict(os.environ)
        env["ACTIVITY_SYNC_CONFIG"] = str(Path(self.config).resolve())
        env["ACTIVITY_SYNC_METRICS_PORT"] = str(self.ports["stream metrics"])
        return env

    def start_broker(self) -> str:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        from activity_sync.devtools.broker import LocalKafka

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
        from activity_sync.devtools.broker import _alive, _terminate

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
        from sinks import embedded as sinks_embedded

        sinks_embedded.start(self, env)
        self.start_admin(env)

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
        emb.start_workers()
        reporter = None
        from sinks import embedded as sinks_embedded

        if emb.feed_seed:
            lines = seed_lines()
            await produce_lines(settings, lines)
            print(f"produced the seed's {len(lines)} example activities to {Topics(settings.topic_prefix).raw}")
        watched = watched_fakes(emb)
        if not args.exit:
            reporter = asyncio.gather(*(sinks_embedded.report_deliveries(url, name=name, ca_file=ca)
                                        for name, url, ca in watched))
        print("\nactivity.enriched, decoded (Ctrl-C to stop; `.venv/bin/activity-sync tail --pretty` shows whole "
              "records):\n", flush=True)
        await tail(settings, "enriched", True, args.max, args.idle, pretty=True, brief=not args.full)
        if args.max is None and args.idle is None:
            return 0
        if args.exit:
            if emb.feed_seed:
                for name, url, ca in watched:
                    print(f"waiting for the {name} to acknowledge them ...", flush=True)
                    await sinks_embedded.report_deliveries(url, expect=len(seed_lines()), timeout=60, name=name,
                                                           ca_file=ca)
                if "local PostgreSQL" in sinks_embedded.fakes_needed(emb.doc):
                    await sinks_embedded.report_postgres(emb, expect=len(seed_lines()))
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
        emb.stop()


def watched_fakes(emb) -> list[tuple[str, str, Path | None]]:
    """The fakes whose deliveries `run` reports: those an enabled endpoint writes to (the fake CRM
    when none does, as in a config of Activity History only)."""
    from sinks import embedded as sinks_embedded

    urls = sinks_embedded.fake_urls(emb)
    used = [n for n in urls if n != "fake CRM"]
    if any((e.get("provider") or (e.get("settings") or {}).get("sink")) == "webhook"
           for e in sinks_embedded.enabled_endpoints(emb.doc)) or \
            not (used or "local PostgreSQL" in sinks_embedded.fakes_needed(emb.doc)):
        used.insert(0, "fake CRM")
    return [(n, urls[n], emb.var / "fake-ca.pem" if n == "fake Dataverse" else None) for n in used]


def check_and_read(path) -> dict:
    from streams.routing import read_config_file

    check_config_file(path)
    return read_config_file(path)


def show_providers(schema: bool) -> int:
    from sinks.registry import describe

    providers = describe()
    if schema:
        print(json.dumps({p["name"]: p.get("settings_schema") for p in providers}, indent=2))
        return 0
    for p in providers:
        print(f"{p['name']}: {p['summary']} (provider_type {', '.join(p['provider_types'])})")
        if "error" in p:
            print(f"  unavailable: {p['error']}")
            continue
        props = p["settings_schema"]["properties"]
        required = set(p["settings_schema"].get("required", []))
        for name, f in props.items():
            default = "required" if name in required else f"default {json.dumps(f.get('default'))}"
            secret = " [where a secret is]" if f.get("x-secret-ref") else ""
            print(f"  {name:18} {f.get('description', '')}{secret} ({default})")
    return 0


def postgres_migrate(config: str, name: str) -> int:
    """Create the table and indexes of the postgresql endpoint ``name`` (idempotent)."""
    from sinks.registry import SettingsError, parse_endpoint
    from streams.routing import endpoint_from_dict, read_config_file

    try:
        raw = next((e for e in read_config_file(config).get("endpoints") or [] if e.get("name") == name), None)
        if raw is None or raw.get("provider") != "postgresql":
            print(f"error: {config} has no postgresql endpoint named {name!r}", file=sys.stderr)
            return 2
        s = parse_endpoint(endpoint_from_dict(raw))
    except (OSError, ValueError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def go() -> None:
        import asyncpg

        from sinks.providers.postgresql.sink import migrate

        pool = await asyncpg.create_pool(s.dsn, password=s.secret("password"), min_size=1, max_size=1,
                                         timeout=s.timeout_s)
        try:
            await migrate(pool, s.schema_name, s.table)
        finally:
            await pool.close()

    try:
        asyncio.run(go())
    except (OSError, LookupError, asyncio.TimeoutError) as exc:
        print(f"error: cannot reach PostgreSQL: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # asyncpg's server errors (a missing privilege, a wrong password)
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f'"{s.schema_name}"."{s.table}" and its indexes are in place')
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line; every error a user can cause is one line and exit status 2 (usage) or 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return guarded(lambda: _main(argv), argv)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's usage errors: the usage, one line, exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def _main(argv: list[str]) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-b", "--bootstrap-server", metavar="HOST:PORT[,…]",
                        help="the Kafka cluster (default: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092; for run: "
                             "a local broker it starts)")
    common.add_argument("-v", "--verbose", action="store_true", help="print the traceback of an error too")
    ap = Parser(prog="activity-sync", description="Member activities from Kafka into AMS/CRM systems",
                parents=[common])
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    _add = sub.add_parser

    def add_parser(name, **kw):
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser
    r = sub.add_parser("run", help="the embedded default: local broker, workers, fake CRM, seed activities")
    r.add_argument("--config", default=str(bundled("embedded.yaml")),
                   help="the endpoints and subscriptions (default: the bundled embedded.yaml; "
                        "streams/data/example-*.yaml for each provider)")
    r.add_argument("--var", default="var", help="where broker data, worker logs and stores go")
    r.add_argument("--port", type=int, default=int(os.environ["ACTIVITY_SYNC_KAFKA_PORT"])
                   if os.environ.get("ACTIVITY_SYNC_KAFKA_PORT", "").isdigit() else None,
                   help="Kafka's port (default 9092, or a free one if that is taken). " + PORT_BASE_HELP)
    r.add_argument("--no-seed", action="store_true", help="do not produce the seed's example activities")
    r.add_argument("--max", type=int, default=None, help="stop tailing after N enriched records")
    r.add_argument("--idle", type=float, default=None, help="stop tailing after S seconds without records")
    r.add_argument("--exit", action="store_true", help="stop everything once tailing stops")
    r.add_argument("--full", action="store_true", help="print whole enriched records, not a summary")
    t = sub.add_parser("topics", help="create the declared topics")
    t.add_argument("--describe", action="store_true", help="also print each topic's partitions and configs")
    c = sub.add_parser("load-config", help="validate a YAML config and publish it to activity.config")
    c.add_argument("file", help="the YAML file of endpoints and subscriptions")
    c.add_argument("--check", action="store_true", help="validate only; publish nothing")
    p = sub.add_parser("produce", help="produce JSON events, one per line, to activity.raw")
    p.add_argument("file", nargs="?", help="a file of events, one JSON object per line ('-': stdin)")
    p.add_argument("--seed", action="store_true", help="the seed's five example activities")
    tl = sub.add_parser("tail", help="print a topic decoded (activity.enriched by default)")
    tl.add_argument("--topic", default="enriched", help="enriched, dead, raw, config or a topic name")
    tl.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not the newest")
    tl.add_argument("--max", type=int, default=None, help="exit after N records")
    tl.add_argument("--idle", type=float, default=None, help="exit after S seconds without records")
    tl.add_argument("--pretty", action="store_true", help="indented JSON")
    tl.add_argument("--summary", action="store_true", help="a few readable lines per enriched record")
    tl.add_argument("--tenant", help="only this tenant's records (TenantCode)")
    sub.add_parser("worker", help="run one stream worker")
    sk = sub.add_parser("sink", help="run one sink worker for an endpoint")
    sk.add_argument("--endpoint", required=True, help="the endpoint's name in activity.config")
    rp = sub.add_parser("replay", help="put dead letters of the delivery stage back into delivery")
    rp.add_argument("--endpoint", help="only this endpoint's dead letters")
    rp.add_argument("--tenant", help="only this tenant's dead letters (TenantCode)")
    rp.add_argument("--since", help="dead-lettered at or after (ISO 8601, or a date)")
    rp.add_argument("--until", help="dead-lettered before")
    rp.add_argument("--key", action="append", help="an ActivityKey (repeat for more)")
    rp.add_argument("--dry-run", action="store_true", help="say what would be replayed, change nothing")
    rp.add_argument("--max-replays", type=int, default=None,
                    help="do not replay a dead letter replayed this often already (default: "
                         "$ACTIVITY_SYNC_MAX_REPLAYS, else 3)")
    hi = sub.add_parser("history", help="query the Activity History store")
    hi.add_argument("--db", default="var/activity-history.db", help="the store (an activity-history endpoint's path)")
    hi.add_argument("--member", help="customer ID or contact key")
    hi.add_argument("--code", help="activity code")
    hi.add_argument("--since", help="activity date at or after (ISO 8601)")
    hi.add_argument("--until", help="activity date before")
    hi.add_argument("--endpoint", help="only this endpoint's rows")
    hi.add_argument("--tenant", help="tenant (TenantCode)")
    hi.add_argument("--limit", type=int, default=100, help="at most N rows (default 100)")
    pv = sub.add_parser("providers", help="list the providers and their settings")
    pv.add_argument("--schema", action="store_true", help="print each provider's settings as JSON Schema")
    pm = sub.add_parser("postgres-migrate", help="create a postgresql endpoint's activity table and indexes "
                                                 "(for endpoints with create_table: false)")
    pm.add_argument("endpoint", help="the postgresql endpoint's name in the config")
    pm.add_argument("--config", default=os.environ.get("ACTIVITY_SYNC_CONFIG") or str(bundled("embedded.yaml")),
                    help="the YAML config naming the endpoint (default: $ACTIVITY_SYNC_CONFIG)")
    ad = sub.add_parser("admin", help="the admin API and page: endpoints, subscriptions, status, dead letters",
                        description="Needs an API key: ACTIVITY_SYNC_ADMIN_KEY (and _READ_KEY) or "
                                    "ACTIVITY_SYNC_ADMIN_KEYS_FILE.")
    ad.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ad.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    kt = sub.add_parser("kafka", help="run one of Kafka's own tools (console-producer, console-consumer, "
                                      "consumer-groups, topics, configs, get-offsets) against the cluster",
                        description="Kafka's own command-line tools, from the jars the project fetches; "
                                    "--bootstrap-server is added from -b or KAFKA_BOOTSTRAP_SERVERS. Example: "
                                    "activity-sync kafka consumer-groups --describe --all-groups")
    kt.add_argument("tool", choices=["console-producer", "console-consumer", "consumer-groups", "topics", "configs",
                                     "get-offsets"], help="which tool")
    kt.add_argument("args", nargs=argparse.REMAINDER, help="the tool's own arguments (its --help lists them)")
    fc = sub.add_parser("fake-crm", help="run the fake CRM webhook receiver")
    fc.add_argument("--port", type=int, default=8085, help="port to listen on (default 8085)")
    args = ap.parse_args(argv)
    if args.bootstrap_server:  # for this process and every worker it starts
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = args.bootstrap_server
    if getattr(args, "max_replays", 0) is None:
        args.max_replays = env_int("ACTIVITY_SYNC_MAX_REPLAYS", 3, 0, 1000)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # aiokafka retries a produce to a partition whose leader is still being elected, and says so.
    # Connection failures end as one line of ours (streams.errors), not aiokafka's own.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if args.cmd == "worker":
        from streams.app import main as worker_main

        worker_main()
        return 0
    if args.cmd == "sink":
        from sinks.worker import main as sink_main

        sink_main([args.endpoint])
        return 0
    if args.cmd == "fake-crm":
        sys.argv = ["fake-crm", "--port", str(args.port)]
        from sinks.providers.webhook.fake import main as crm_main

        crm_main()
        return 0
    if args.cmd == "history":
        from sinks.providers.activity_history.sink import query

        def norm(t):
            return t if not t or "T" in t else t + "T00:00:00"

        if not Path(args.db).exists():
            print(f"error: no Activity History store at {args.db} yet (an activity-history sink worker creates it; "
                  "--db names another)", file=sys.stderr)
            return 2
        for row in query(args.db, args.member, args.code, norm(args.since), norm(args.until), args.endpoint,
                         args.limit, args.tenant):
            print(json.dumps(row, ensure_ascii=False))
        return 0
    if args.cmd == "providers":
        return show_providers(args.schema)
    if args.cmd == "admin":
        from activity_sync.admin.api import main as admin_main

        return admin_main(args.host, args.port)
    if args.cmd == "kafka":
        from activity_sync.devtools.broker import tool_command

        cmd = tool_command(args.tool, args.args)
        try:
            return subprocess.call(cmd)
        except KeyboardInterrupt:
            return 130
    if args.cmd == "postgres-migrate":
        return postgres_migrate(args.config, args.endpoint)
    if args.cmd == "run":
        try:
            return asyncio.run(run_embedded(args))
        except KeyboardInterrupt:
            return 0
    settings = Settings.from_env()
    if args.cmd == "topics":
        from streams.topics import TopicConfigError

        try:
            asyncio.run(cmd_topics(settings, args.describe))
        except TopicConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.cmd == "load-config":
        try:
            check_config_file(args.file)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if not args.check:
            print(f"published {asyncio.run(publish_config(settings, args.file))} records")
        else:
            print("config is valid")
    elif args.cmd == "produce":
        if args.seed:
            lines = seed_lines()
        elif args.file:
            if args.file == "-":
                lines = [ln.rstrip(b"\r\n") for ln in sys.stdin.buffer if ln.strip()]
            else:
                with open(args.file, "rb") as src:
                    lines = [ln.rstrip(b"\r\n") for ln in src if ln.strip()]
        else:
            ap.error("produce needs FILE or --seed")
        print(f"produced {asyncio.run(produce_lines(settings, lines))} events")
    elif args.cmd == "replay":
        from sinks import replay

        decisions = asyncio.run(replay.plan(settings, args.endpoint, replay.parse_time(args.since),
                                            replay.parse_time(args.until), set(args.key or []) or None,
                                            args.max_replays, args.tenant))
        for d in decisions:
            c = d.candidate
            print(f"{d.action:17} {c.info.endpoint} {c.info.tenant or '-'} {c.activity_key} "
                  f"(dead letter {c.marker}, {c.info.error_class}: {c.info.message[:80]})"
                  + (f" - {d.reason}" if d.reason else ""))
        todo = sum(1 for d in decisions if d.action == "replay")
        if args.dry_run:
            print(f"dry run: {todo} would be replayed, {len(decisions) - todo} not")
        else:
            print(f"replayed {asyncio.run(replay.execute(settings, decisions))}, not replayed {len(decisions) - todo}")
    elif args.cmd == "tail":
        try:
            asyncio.run(tail(settings, args.topic, args.from_beginning, args.max, args.idle, args.pretty,
                             brief=args.summary, tenant=args.tenant))
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
