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
    activity-sync ingest [--port 8094]   # the Push API: POST /v2/contactinfo, /v2/list
    activity-sync ingest-keys issue|list|revoke [--id ID --tenant T --origin ENDPOINT]
    activity-sync directory           # the member directory worker (Push API contacts and lists)
    activity-sync contacts --tenant T [--id|--email|--phone|--name]

Each subcommand is one ``cmd_*`` handler below, bound to its parser with ``set_defaults``. This is
the composition root: it may import every package; nothing imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from activity_sync.tools import bundled, check_config_file, cmd_topics, produce_lines, publish_config, seed_lines, tail
from core.errors import UsageError, guarded
from core.settings import Settings

PORT_BASE_HELP = ("ACTIVITY_SYNC_PORT_BASE=N moves every port of `run`: Kafka N, its controller N+1, the fake "
                  "CRM N+2, the stream worker's metrics N+3, each sink worker's metrics N+4, N+5, ..., then "
                  "the providers' fakes (and a local PostgreSQL) when the config points at them, then the admin page, "
                  "the Push API, its metrics and the directory worker's metrics")


# --------------------------------------------------------------------------- handlers

def cmd_run(args) -> int:
    from activity_sync.devtools.embedded import run_embedded

    args.config = resolve_config(args.config)
    try:
        return asyncio.run(run_embedded(args))
    except KeyboardInterrupt:
        return 0


def resolve_config(config: str) -> str:
    """A config file, or a provider's name for the example config its package ships."""
    if Path(config).exists() or os.sep in config or config.endswith((".yaml", ".yml")):
        return config
    from sinks.registry import PROVIDERS, example_config

    if config in PROVIDERS and example_config(config) is not None:
        return str(example_config(config))
    source_example = Path(__file__).resolve().parent.parent / "streams" / "data" / f"example-{config}.yaml"
    if source_example.exists():  # a polling source's example (example-alida.yaml)
        return str(source_example)
    examples = sorted(n for n in PROVIDERS if example_config(n) is not None)
    raise UsageError(f"--config {config}: no such file, and no provider of that name has an example config "
                     f"({', '.join(examples)})")


def cmd_worker(args) -> int:
    from streams.app import main as worker_main

    worker_main()
    return 0


def cmd_sink(args) -> int:
    if args.pool:
        from sinks import pool

        return pool.run(pool.selection_from_args(args))
    if args.match or args.exclude or args.tenant:
        raise UsageError("--match, --exclude and --tenant choose a pool's endpoints: add --pool")
    from sinks.worker import main as sink_main

    sink_main([args.endpoint])
    return 0


def cmd_fake_crm(args) -> int:
    sys.argv = ["fake-crm", "--port", str(args.port)]
    from sinks.providers.webhook.fake import main as crm_main

    crm_main()
    return 0


def cmd_history(args) -> int:
    from sinks.providers.activity_history.sink import query

    def norm(t):
        return t if not t or "T" in t else t + "T00:00:00"

    if not Path(args.db).exists():
        raise UsageError(f"no Activity History store at {args.db} yet (an activity-history sink worker creates it; "
                         "--db names another)")
    for row in query(args.db, args.member, args.code, norm(args.since), norm(args.until), args.endpoint,
                     args.limit, args.tenant):
        print(json.dumps(row, ensure_ascii=False))
    return 0


def cmd_admin(args) -> int:
    from activity_sync.admin.api import main as admin_main

    return admin_main(args.host, args.port)


def cmd_kafka(args) -> int:
    from activity_sync.devtools.broker import tool_command

    try:
        return subprocess.call(tool_command(args.tool, args.args))
    except KeyboardInterrupt:
        return 130


def cmd_topics_(args) -> int:
    from core.topics import TopicConfigError

    try:
        asyncio.run(cmd_topics(Settings.from_env(), args.describe))
    except TopicConfigError as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_load_config(args) -> int:
    check_config_file(args.file)
    if args.check:
        print("config is valid")
    else:
        print(f"published {asyncio.run(publish_config(Settings.from_env(), args.file))} records")
    return 0


def cmd_produce(args) -> int:
    if args.seed:
        lines = seed_lines()
    elif args.file == "-":
        lines = [ln.rstrip(b"\r\n") for ln in sys.stdin.buffer if ln.strip()]
    elif args.file:
        with open(args.file, "rb") as src:
            lines = [ln.rstrip(b"\r\n") for ln in src if ln.strip()]
    else:
        raise UsageError("produce needs FILE or --seed")
    print(f"produced {asyncio.run(produce_lines(Settings.from_env(), lines))} events")
    return 0


def cmd_replay(args) -> int:
    from sinks import replay

    settings = Settings.from_env()
    max_replays = args.max_replays if args.max_replays is not None else replay.max_replays()
    decisions = asyncio.run(replay.plan(settings, args.endpoint, replay.parse_time(args.since),
                                        replay.parse_time(args.until), set(args.key or []) or None,
                                        max_replays, args.tenant))
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
    return 0


def cmd_tail(args) -> int:
    try:
        asyncio.run(tail(Settings.from_env(), args.topic, args.from_beginning, args.max, args.idle, args.pretty,
                         brief=args.summary, tenant=args.tenant))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_providers(args) -> int:
    from sinks.registry import describe

    schema = args.schema
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


def cmd_postgres_migrate(args) -> int:
    """Create the table and indexes of a postgresql endpoint (idempotent)."""
    from core.config import endpoint_from_dict, read_config_file
    from sinks.registry import SettingsError, parse_endpoint

    config, name = args.config, args.endpoint

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


def build_parser() -> argparse.ArgumentParser:
    def common_options(parser, default) -> None:
        parser.add_argument("-b", "--bootstrap-server", metavar="HOST:PORT[,…]", default=default,
                            help="the Kafka cluster (default: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092; for "
                                 "run: a local broker it starts); before or after the command")
        parser.add_argument("-v", "--verbose", action="store_true", default=default,
                            help="print the traceback of an error too")

    # The options stand before the command or after it. The subcommands' copy has no default of its
    # own (SUPPRESS), so it never overwrites what was given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common_options(common, argparse.SUPPRESS)
    ap = Parser(prog="activity-sync", description="Member activities from Kafka into AMS/CRM systems")
    common_options(ap, None)
    ap.set_defaults(verbose=False)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    _add = sub.add_parser

    def add_parser(name, **kw):
        return _add(name, parents=[common], **kw)

    sub.add_parser = add_parser
    r = sub.add_parser("run", help="the embedded default: local broker, workers, fake CRM, seed activities")
    r.set_defaults(handler=cmd_run)
    r.add_argument("--config", default=str(bundled("embedded.yaml")),
                   help="the endpoints and subscriptions (default: the bundled embedded.yaml; "
                        "a provider name for its example config, e.g. --config salesforce)")
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
    t.set_defaults(handler=cmd_topics_)
    t.add_argument("--describe", action="store_true", help="also print each topic's partitions and configs")
    c = sub.add_parser("load-config", help="validate a YAML config and publish it to activity.config")
    c.set_defaults(handler=cmd_load_config)
    c.add_argument("file", help="the YAML file of endpoints and subscriptions")
    c.add_argument("--check", action="store_true", help="validate only; publish nothing")
    p = sub.add_parser("produce", help="produce JSON events, one per line, to activity.raw")
    p.set_defaults(handler=cmd_produce)
    p.add_argument("file", nargs="?", help="a file of events, one JSON object per line ('-': stdin)")
    p.add_argument("--seed", action="store_true", help="the seed's five example activities")
    tl = sub.add_parser("tail", help="print a topic decoded (activity.enriched by default)")
    tl.set_defaults(handler=cmd_tail)
    tl.add_argument("--topic", default="enriched", help="enriched, dead, raw, config, scores (member.scores, "
                                                       "decoded), anmc-report, or a topic name")
    tl.add_argument("--from-beginning", action="store_true", help="start at the oldest record, not the newest")
    tl.add_argument("--max", type=int, default=None, help="exit after N records")
    tl.add_argument("--idle", type=float, default=None, help="exit after S seconds without records")
    tl.add_argument("--pretty", action="store_true", help="indented JSON")
    tl.add_argument("--summary", action="store_true", help="a few readable lines per enriched record")
    tl.add_argument("--tenant", help="only this tenant's records (TenantCode)")
    sub.add_parser("worker", help="run one stream worker").set_defaults(handler=cmd_worker)
    sk = sub.add_parser("sink", help="run a sink worker: for one endpoint, or a pool for every endpoint it "
                                     "is told to serve, following activity.config")
    sk.set_defaults(handler=cmd_sink)
    which = sk.add_mutually_exclusive_group(required=True)
    which.add_argument("--endpoint", help="the endpoint's name in activity.config (a dedicated worker)")
    which.add_argument("--pool", action="store_true",
                       help="a pool: a worker for every enabled endpoint chosen below, started when it is saved, "
                            "stopped when it is disabled or deleted")
    from sinks.pool import add_arguments as pool_arguments

    pool_arguments(sk)
    rp = sub.add_parser("replay", help="put dead letters of the delivery stage back into delivery")
    rp.set_defaults(handler=cmd_replay)
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
    hi.set_defaults(handler=cmd_history)
    hi.add_argument("--db", default="var/activity-history.db", help="the store (an activity-history endpoint's path)")
    hi.add_argument("--member", help="customer ID or contact key")
    hi.add_argument("--code", help="activity code")
    hi.add_argument("--since", help="activity date at or after (ISO 8601)")
    hi.add_argument("--until", help="activity date before")
    hi.add_argument("--endpoint", help="only this endpoint's rows")
    hi.add_argument("--tenant", help="tenant (TenantCode)")
    hi.add_argument("--limit", type=int, default=100, help="at most N rows (default 100)")
    pv = sub.add_parser("providers", help="list the providers and their settings")
    pv.set_defaults(handler=cmd_providers)
    pv.add_argument("--schema", action="store_true", help="print each provider's settings as JSON Schema")
    pm = sub.add_parser("postgres-migrate", help="create a postgresql endpoint's activity table and indexes "
                                                 "(for endpoints with create_table: false)")
    pm.set_defaults(handler=cmd_postgres_migrate)
    pm.add_argument("endpoint", help="the postgresql endpoint's name in the config")
    pm.add_argument("--config", default=os.environ.get("ACTIVITY_SYNC_CONFIG") or str(bundled("embedded.yaml")),
                    help="the YAML config naming the endpoint (default: $ACTIVITY_SYNC_CONFIG)")
    ad = sub.add_parser("admin", help="the admin API and page: endpoints, subscriptions, status, dead letters",
                        description="Needs an API key: ACTIVITY_SYNC_ADMIN_KEY (and _READ_KEY) or "
                                    "ACTIVITY_SYNC_ADMIN_KEYS_FILE.")
    ad.set_defaults(handler=cmd_admin)
    ad.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ad.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    kt = sub.add_parser("kafka", help="run one of Kafka's own tools (console-producer, console-consumer, "
                                      "consumer-groups, topics, configs, get-offsets) against the cluster",
                        description="Kafka's own command-line tools, from the jars the project fetches; "
                                    "--bootstrap-server is added from -b or KAFKA_BOOTSTRAP_SERVERS. Example: "
                                    "activity-sync kafka consumer-groups --describe --all-groups")
    kt.set_defaults(handler=cmd_kafka)
    kt.add_argument("tool", choices=["console-producer", "console-consumer", "consumer-groups", "topics", "configs",
                                     "get-offsets"], help="which tool")
    kt.add_argument("args", nargs=argparse.REMAINDER, help="the tool's own arguments (its --help lists them)")
    from activity_sync.push import add_parsers as push_parsers
    from activity_sync.anmccmd import add_parsers as anmc_parsers
    from activity_sync.scorecmd import add_parsers as score_parsers
    from activity_sync.listcmd import add_parsers as list_parsers
    from activity_sync.sourcecmd import add_parsers as source_parsers

    push_parsers(sub)
    source_parsers(sub)
    anmc_parsers(sub)
    score_parsers(sub)
    list_parsers(sub)
    fc = sub.add_parser("fake-crm", help="run the fake CRM webhook receiver")
    fc.set_defaults(handler=cmd_fake_crm)
    fc.add_argument("--port", type=int, default=8085, help="port to listen on (default 8085)")
    return ap


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.bootstrap_server:  # for this process and every worker it starts
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = args.bootstrap_server
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # aiokafka retries a produce to a partition whose leader is still being elected, and says so.
    # Connection failures end as one line of ours (core.errors), not aiokafka's own.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
