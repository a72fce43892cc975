"""The layout's rules hold, and a tool enforces them; a provider is its package's declaration and
nothing more (README: Architecture)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import FIXTURES, ROOT

LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("core", "streams", "sinks", "activity_sync", "bench", "schemas")


def lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT)], cwd=where, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(where)))


def copy_tree(dest: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_import_contracts_hold():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 kept, 0 broken" in r.stdout


def test_a_broken_contract_fails_the_check(tmp_path):
    tree = copy_tree(tmp_path / "tree")
    assert lint(tree).returncode == 0
    # a delivery module reaching into the stream stage, and a provider importing aiokafka
    (tree / "sinks" / "shortcut.py").write_text("from streams.enrich import Enricher  # noqa\n")
    (tree / "sinks" / "providers" / "webhook" / "sink.py").write_text(
        (tree / "sinks" / "providers" / "webhook" / "sink.py").read_text() + "\nimport aiokafka  # noqa\n")
    r = lint(tree)
    assert r.returncode != 0
    assert "Stages never import each other BROKEN" in r.stdout
    assert "sinks.shortcut -> streams.enrich" in r.stdout
    assert "Providers never import Faust, aiokafka, fakes, test support or dev tooling BROKEN" in r.stdout


def tiny_env(**extra) -> dict:
    """The environment in which the test's own provider package (tests/fixtures/tinyprov) is declared."""
    env = dict(os.environ, ACTIVITY_SYNC_PROVIDER_PACKAGES="tinyprov",
               PYTHONPATH=os.pathsep.join([str(FIXTURES), str(ROOT)]))
    env.update(extra)
    return env


def cli(*args, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "activity_sync.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_a_declared_provider_is_seen_by_the_registry_the_check_and_the_bench():
    env = tiny_env()
    r = cli("providers", env=env)
    assert r.returncode == 0 and "tiny: a provider a test declares" in r.stdout, r.stderr
    r = cli("load-config", "--check", str(FIXTURES / "tinyprov" / "example.yaml"), env=env)
    assert r.returncode == 0 and "config is valid" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "bench", "--provider", "tiny", "--records", "200"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tiny: one signed batch POST a request" in r.stdout and "(200 stored of 200" in r.stdout, r.stdout
    # without the declaration it is unknown
    r = cli("load-config", "--check", str(FIXTURES / "tinyprov" / "example.yaml"),
            env={k: v for k, v in env.items() if k != "ACTIVITY_SYNC_PROVIDER_PACKAGES"})
    assert r.returncode == 2 and "unknown provider 'tiny'" in r.stderr


def test_run_starts_a_declared_providers_fake_and_delivers_into_it(kafka, tmp_path):
    """``run --config tiny``: the example config the package ships, its fake started by run, the seed
    delivered into it; on the session's broker (its own topics), so no second broker is started."""
    env = tiny_env(KAFKA_BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
                   ACTIVITY_SYNC_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:8]}.", ACTIVITY_SYNC_PARTITIONS="2")
    r = cli("run", "--config", "tiny", "--var", str(tmp_path / "var"), "--max", "5", "--exit", env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "started fake-tiny" in r.stdout and "[fake Tiny] 5 activities stored" in r.stdout, r.stdout[-3000:]
