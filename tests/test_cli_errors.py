"""One-line errors and exit statuses for what a user gets wrong, health-free: no Kafka here (an
unreachable one is the point), plus every environment variable the code reads is documented."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.envvars import DOCUMENTED, EnvError, env_floats, env_int

ROOT = Path(__file__).resolve().parent.parent
DEAD_KAFKA = "127.0.0.1:1"


def cli(*args, env=None, module="activity_sync.cli", timeout=90) -> subprocess.CompletedProcess:
    e = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=DEAD_KAFKA, **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], env=e, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    assert lines and lines[-1].startswith("error: "), r.stderr
    return lines[-1]


@pytest.mark.parametrize("args", [["tail", "--idle", "1"], ["topics"], ["produce", "--seed"], ["replay", "--dry-run"],
                                  ["load-config", "activity_sync/data/embedded.yaml"]])
def test_kafka_unreachable_is_one_line_and_status_1(args):
    r = cli(*args)
    assert r.returncode == 1 and "cannot reach Kafka at 127.0.0.1:1" in one_line(r)
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1


@pytest.mark.parametrize("module, args", [("streams.app", []), ("sinks.worker", ["crm"])])
def test_a_worker_without_kafka_stops_with_one_line(module, args):
    r = cli(*args, module=module, env={"ACTIVITY_SYNC_METRICS_PORT": "0"})
    assert r.returncode == 1 and "cannot reach Kafka" in one_line(r)


def test_bootstrap_server_option_on_every_command():
    r = cli("tail", "-b", "127.0.0.1:2", "--idle", "1")
    assert r.returncode == 1 and "127.0.0.1:2" in one_line(r)
    for cmd in ("run", "topics", "load-config", "produce", "tail", "worker", "sink", "replay", "history",
                "providers", "postgres-migrate", "fake-crm"):
        assert "--bootstrap-server" in cli(cmd, "--help").stdout, cmd


COMMANDS = [["run"], ["topics"], ["load-config", "f.yaml"], ["produce", "--seed"], ["tail"], ["worker"],
            ["sink", "--endpoint", "crm"], ["replay", "--dry-run"], ["history"], ["providers"],
            ["postgres-migrate", "x"], ["admin"], ["kafka", "consumer-groups", "--list"], ["fake-crm"]]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_bootstrap_server_before_or_after_the_command_is_honoured(command):
    """`-b` stands before the command (where --help shows it) or after it; the subcommand's copy of the
    option never overwrites what was given before the command."""
    from activity_sync.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-b", "before:1", *command]).bootstrap_server == "before:1"
    assert parser.parse_args([*command[:1], "-b", "after:2", *command[1:]]).bootstrap_server == "after:2"
    assert parser.parse_args(command).bootstrap_server is None
    assert parser.parse_args(["-v", *command]).verbose and not parser.parse_args(command).verbose


@pytest.mark.parametrize("command", [["tail", "--idle", "1"], ["topics"], ["produce", "--seed"], ["replay", "--dry-run"],
                                     ["load-config", "activity_sync/data/embedded.yaml"]])
def test_bootstrap_server_before_the_command_reaches_kafka(command):
    r = cli("-b", "127.0.0.1:39999", *command)
    assert r.returncode == 1 and "cannot reach Kafka at 127.0.0.1:39999" in one_line(r), r.stderr


def test_bootstrap_server_before_the_command_reaches_kafkas_own_tools(monkeypatch):
    from activity_sync import cli as cli_module
    from activity_sync.devtools import broker

    seen = []
    monkeypatch.setattr(broker, "resolve_jars", lambda: Path("/nonexistent"))
    monkeypatch.setattr(cli_module.subprocess, "call", lambda cmd: seen.append(cmd) or 0)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "default:1")  # main() sets it from -b; restored after
    assert cli_module.main(["-b", "prod:9092", "kafka", "consumer-groups", "--list"]) == 0
    assert seen and seen[0][seen[0].index("--bootstrap-server") + 1] == "prod:9092"


def test_usage_errors_are_status_2(tmp_path):
    missing = cli("produce", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "nope.jsonl: No such file or directory" in one_line(missing)
    bad = cli("topics", env={"ACTIVITY_SYNC_PARTITIONS": "six"})
    assert bad.returncode == 2 and "ACTIVITY_SYNC_PARTITIONS='six': a whole number" in one_line(bad)
    delays = cli("crm", module="sinks.worker", env={"ACTIVITY_SYNC_RETRY_DELAYS": "2 4 8"})
    assert delays.returncode == 2 and "ACTIVITY_SYNC_RETRY_DELAYS='2 4 8'" in one_line(delays)
    fmt = cli(module="streams.app", env={"ACTIVITY_SYNC_LOG_FORMAT": "yaml"})
    assert fmt.returncode == 2 and "ACTIVITY_SYNC_LOG_FORMAT" in one_line(fmt)
    unknown = cli("bogus")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_a_port_in_use_is_one_line_and_status_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = cli(module="streams.app", env={"ACTIVITY_SYNC_METRICS_PORT": str(s.getsockname()[1])})
    assert r.returncode == 2 and "already in use" in one_line(r)


def test_verbose_shows_the_traceback():
    r = cli("topics", "--verbose")
    assert r.returncode == 1 and "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error:")


def test_environment_values_take_spaces_or_commas_and_name_the_variable(monkeypatch):
    monkeypatch.setenv("ACTIVITY_SYNC_RETRY_DELAYS", "2 4, 8 16")
    assert env_floats("ACTIVITY_SYNC_RETRY_DELAYS", 4) == [2, 4, 8, 16]
    monkeypatch.setenv("ACTIVITY_SYNC_RETRY_DELAYS", "2 4 8 -1")
    with pytest.raises(EnvError, match="ACTIVITY_SYNC_RETRY_DELAYS='2 4 8 -1': 4 positive numbers"):
        env_floats("ACTIVITY_SYNC_RETRY_DELAYS", 4)
    monkeypatch.setenv("X_PORT", "70000")
    with pytest.raises(EnvError, match="from 0 to 65535"):
        env_int("X_PORT", 1, 0, 65535)


def test_every_environment_variable_the_code_reads_is_documented():
    used = set()
    for folder in ("core", "streams", "sinks", "activity_sync"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r'"((?:ACTIVITY_SYNC|KAFKA)_[A-Z0-9_]+|SCHEMA_REGISTRY_URL)"', path.read_text()))
    readme = (ROOT / "README.md").read_text()
    assert used - set(DOCUMENTED) == set(), "read but not in core/envvars.py DOCUMENTED"
    assert [n for n in DOCUMENTED if f"`{n}`" not in readme] == [], "not in the README's table"


def test_json_logs_one_object_per_line_with_the_record_and_no_secret(monkeypatch, capsys):
    from core import logs

    monkeypatch.setenv("ACTIVITY_SYNC_LOG_FORMAT", "json")
    monkeypatch.setenv("CRM_API_TOKEN", "tok-very-secret-42")
    logs.configure_logging("sink", endpoint="crm")
    logs.register_secret("X-Key: hdr-secret-99")
    log = logging.getLogger("activity_sync.test")
    log.warning("sending with tok-very-secret-42 and hdr-secret-99",
                extra=logs.record_fields("act-1", "activity.enriched", 2, 41, "DEMO"))
    try:
        raise RuntimeError("boom tok-very-secret-42")
    except RuntimeError:
        log.exception("failed")
    lines = [json.loads(ln) for ln in capsys.readouterr().err.splitlines() if ln.startswith("{")]
    first, second = lines[-2:]
    assert first["role"] == "sink" and first["endpoint"] == "crm" and first["level"] == "WARNING"
    assert (first["activity_key"], first["topic"], first["partition"], first["offset"]) == \
        ("act-1", "activity.enriched", 2, 41)
    assert first["message"] == "sending with *** and ***" and first["ts"].endswith("Z")
    assert "tok-very-secret-42" not in second["exception"] and "RuntimeError" in second["exception"]
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
