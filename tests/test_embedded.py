"""The README's first command: the embedded default, end to end, as a newcomer runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from conftest import seed_events

from activity_sync.devtools.broker import free_port


def running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split()[2] != "Z":
                alive.append(pid)
    return alive


def free_base() -> int:
    from activity_sync.devtools.broker import port_taken

    while True:
        base = free_port()
        if base < 60000 and not any(port_taken(base + i) for i in range(16)):
            return base


def test_run_shows_the_seed_enriched_and_delivered_then_stops_everything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    base = free_base()
    env["ACTIVITY_SYNC_PORT_BASE"] = str(base)  # every port moves with it
    var = tmp_path / "var"
    proc = subprocess.run([sys.executable, "-m", "activity_sync.cli", "run", "--var", str(var), "--max", "5",
                           "--exit"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for e in seed_events():
        assert f"key {e['ActivityKey']}" in out
    assert "-> crm (membership) [COMMUNITY/DISC_POST]: Avery Quill posted a new message titled " \
           '"Annual Conference" in the Demo Community community' in out
    assert "[fake CRM] 5 activities stored, 0 duplicates ignored, 0 rejected" in out
    assert f"starting Kafka on 127.0.0.1:{base} " in out and f"fake CRM: http://127.0.0.1:{base + 2}/" in out
    assert f"sink pool (crm: webhook, history: activity-history; endpoints saved later start by themselves): " \
           f"metrics http://127.0.0.1:{base + 4}/metrics" in out
    assert f"admin page: http://127.0.0.1:{base + 6}/" in out
    # the history endpoint wrote its store (relative to the working directory, as configured)
    assert (tmp_path / "var" / "activity-history.db").exists()
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
    # the broker, the stream worker, the fake CRM, the sink pool, the admin, the directory, the Push API,
    # the scoring stage, the list stage, the fake marketing platform
    assert len(pids) == 10, out
    assert "Online Community Connection of tenant DEMO: IAMKey " in out
    assert not (var / "pids").exists(), "run left its pid file: it did not stop everything"
    time.sleep(1)
    assert not running(pids)


def test_run_with_the_alida_example_polls_the_fake_alida_into_the_pipeline(tmp_path):
    """`make run CONFIG=alida`: the fake Alida, the source process, the stream stage, all from the example."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    base = free_base()
    env["ACTIVITY_SYNC_PORT_BASE"] = str(base)
    var = tmp_path / "var"
    proc = subprocess.run([sys.executable, "-m", "activity_sync.cli", "run", "--config", "alida", "--var", str(var),
                           "--no-seed", "--max", "20", "--exit"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "fake Alida: http://127.0.0.1:" in out and "started sources (pid" in out
    assert len(re.findall(r"AlidaSurvey\w+ \[Insight Communities\]", out)) >= 20, out[-3000:]
    assert re.search(r'-> crm \(membership\) \[SURVEY/COMPLETED\]: Panel\d+ Tester completed the survey "', out), out
    assert "customer C1000" in out  # the member variable named by customer_id_variable
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
    assert not (var / "pids").exists()
    time.sleep(1)
    assert not running(pids)
