"""Which endpoints a pool sink worker serves (sinks.pool.Selection), and its command line."""

from __future__ import annotations

import pytest

from activity_sync.cli import build_parser
from core.config import Endpoint
from core.errors import UsageError
from sinks.pool import selection_from_args


def pick(*args: str):
    return selection_from_args(build_parser().parse_args(["sink", "--pool", *args]))


def ep(name: str, tenants=("*",), enabled=True) -> Endpoint:
    return Endpoint(name=name, tenants=tuple(tenants), enabled=enabled)


def test_all_by_default_a_list_or_patterns_and_exclusions():
    assert pick().serves(ep("anything"))
    assert not pick().serves(ep("off", enabled=False))  # a disabled endpoint has no worker
    listed = pick("--match", "crm,history")
    assert listed.serves(ep("crm")) and listed.serves(ep("history")) and not listed.serves(ep("crm2"))
    pat = pick("--match", "crm-*", "--match", "erp", "--exclude", "crm-big")
    assert pat.serves(ep("crm-a")) and pat.serves(ep("erp")) and not pat.serves(ep("crm-big"))
    assert not pat.serves(ep("CRM-A"))  # names match case-sensitively, as they are keys


def test_a_tenant_filter_takes_only_endpoints_naming_the_tenant():
    acme = pick("--tenant", "ACME")
    assert acme.serves(ep("a", ["ACME", "DEMO"])) and not acme.serves(ep("d", ["DEMO"]))
    assert not acme.serves(ep("every", ["*"]))  # an endpoint of every tenant is not ACME's
    assert pick("--tenant", "*").serves(ep("every", ["*"]))


def test_pool_options_need_pool():
    from activity_sync.cli import cmd_sink

    with pytest.raises(UsageError, match="add --pool"):
        cmd_sink(build_parser().parse_args(["sink", "--endpoint", "crm", "--match", "x"]))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sink", "--pool", "--endpoint", "crm"])  # one or the other


def test_a_worker_that_stops_mid_answer_leaves_the_pools_metrics_whole():
    """A child stopping while /metrics is scraped answers half a body: the pool's answer skips it."""
    import socket
    import threading

    from prometheus_client import generate_latest

    from core.health import Health, metric_names
    from sinks import poolmetrics
    from sinks.pool import PoolRegistry

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def half_an_answer():
        for _ in range(2):  # a scrape may ask once or twice
            try:
                conn, _ = srv.accept()
            except OSError:  # the test closed the socket: it asked once
                return
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 9702\r\n\r\n# HELP activity_sync_x")
            conn.close()

    threading.Thread(target=half_an_answer, daemon=True).start()

    class Pool:
        def child_ports(self):
            return {"crm": srv.getsockname()[1]}

    registry = PoolRegistry(Health("sink-pool", metric_names(poolmetrics)).registry, Pool())
    text = generate_latest(registry).decode()
    assert "activity_sync_pool_endpoints" in text and 'endpoint="crm"' not in text
    srv.close()
