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
