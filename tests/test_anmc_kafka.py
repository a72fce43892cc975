"""The Action Network ↔ Mobile Commons sync on the real broker, against both fakes: the pollers
(sources), the rules (streams.anmc), the two providers on the delivery runner; what parsons and
osdi read back agrees with what the sync wrote; no echo over several cycles; the report."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
import yaml

from conftest import consume, publish_config_file, worker_env
from core.topics import Topics
from sinks.providers.actionnetwork.fake import FakeActionNetwork
from sinks.providers.mobilecommons.fake import FakeMobileCommons
from sources.runner import run_pool

AN_KEY = "an-test-key-0123456789"
MC_TOKEN = "mc-test-token-0123456789"
OPTIN = "mobile_opt_in"


def sync_doc(an, mc, **sync) -> dict:
    return {
        "tenants": [{"code": "DEMO"}],
        "sources": [
            {"name": "an", "kind": "actionnetwork", "tenant": "DEMO",
             "settings": {"url": f"{an.base_url}/api/v2", "api_token_env": "AN_TEST_KEY", "at": None}},
            {"name": "mc", "kind": "mobilecommons", "tenant": "DEMO",
             "settings": {"url": f"{mc.base_url}/api", "token_env": "MC_TEST_TOKEN", "overlap_s": 5}}],
        "endpoints": [
            {"name": "an-out", "provider": "actionnetwork", "tenant": "DEMO",
             "settings": {"url": f"{an.base_url}/api/v2", "api_token_env": "AN_TEST_KEY", "linger_ms": 20,
                          "rate_limit_per_s": 0}},
            {"name": "mc-out", "provider": "mobilecommons", "tenant": "DEMO",
             "settings": {"url": f"{mc.base_url}/api", "token_env": "MC_TEST_TOKEN", "linger_ms": 20}}],
        "anmc": [{"name": "demo-sync", "tenant": "DEMO", "action_network_source": "an",
                  "mobile_commons_source": "mc", "action_network_endpoint": "an-out",
                  "mobile_commons_endpoint": "mc-out", "opt_in_path_id": "1001", "optin_field": OPTIN,
                  "login": "organizer@example.org", "password_env": "AN_TEST_PASSWORD", **sync}],
    }


@pytest.fixture
async def fakes():
    an = await FakeActionNetwork(AN_KEY).start()
    mc = await FakeMobileCommons(token=MC_TOKEN).start()
    yield an, mc
    await an.stop()
    await mc.stop()


@pytest.fixture
async def pipeline(settings, tmp_path, spawn, fakes, monkeypatch):
    """The config published; the stream worker, the sync's stage and both sink workers running."""
    an, mc = fakes
    monkeypatch.setenv("AN_TEST_KEY", AN_KEY)
    monkeypatch.setenv("MC_TEST_TOKEN", MC_TOKEN)
    path = tmp_path / "anmc.yaml"
    path.write_text(yaml.safe_dump(sync_doc(an, mc)))
    object.__setattr__(settings, "config_path", str(path))
    await publish_config_file(settings, path)
    env = worker_env(settings, tmp_path, AN_TEST_KEY=AN_KEY, MC_TEST_TOKEN=MC_TOKEN)
    procs = [spawn(["-m", "streams.app"], env, "stream"), spawn(["-m", "streams.anmc"], env, "anmc"),
             spawn(["-m", "sinks.worker", "an-out"], env, "sink-an"),
             spawn(["-m", "sinks.worker", "mc-out"], env, "sink-mc")]
    yield an, mc, procs


async def run_now(settings, name: str):
    """One poll of a source, now (`activity-sync source --name NAME --once`)."""
    return (await run_pool(settings, [name], once=True))[name]


async def until(cond, timeout=90.0, what=""):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def report(settings, n, timeout=60.0):
    msgs = await consume(settings, Topics(settings.topic_prefix).anmc_report, lambda m: len(m) >= n, timeout=timeout)
    return [json.loads(m.value) for m in msgs]


async def test_an_person_becomes_a_subscriber_with_one_welcome_the_ids_cross_and_parsons_agrees(
        settings, pipeline):
    an, mc, procs = pipeline
    rosa = an.add_person("rosa.t@example.org", "(202) 555-0143", "Rosa", "Tester", mobile_status="subscribed",
                         **{OPTIN: True})
    an.add_person("noor.t@example.org", "202-555-0188", "Noor", "Tester", **{OPTIN: False})  # not opted in
    an.add_person("pat.t@example.org", None, "Pat", "Tester", **{OPTIN: True})                # no phone
    an.add_person("old.t@example.org", "2025550199", "Old", "Tester",                          # > 48 h ago
                  modified=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=49), **{OPTIN: True})
    rosa_id = an.pid(rosa)
    await run_now(settings, "an")  # the nightly run
    await until(lambda: "12025550143" in mc.profiles, what="the Mobile Commons profile")
    profile = mc.profiles["12025550143"]
    assert profile["email"] == "rosa.t@example.org" and profile["first_name"] == "Rosa"
    assert profile["custom_columns"]["constituent_id"] == rosa_id
    assert [s["opt_in_path_id"] for s in profile["subscriptions"]] == ["1001"]
    assert mc.welcome_messages == [("12025550143", "1001")]
    assert "12025550188" not in mc.profiles and "12025550199" not in mc.profiles
    await run_now(settings, "mc")  # Mobile Commons' five-minute poll: its identifier goes back
    await until(lambda: f"mobile_commons:{profile['id']}" in rosa["identifiers"], what="the identifier written back")
    lines = await report(settings, 6)
    outcomes = {(x.get("side"), x.get("outcome")) for x in lines if not x.get("summary")}
    assert ("action_network", "subscribed") in outcomes and ("action_network", "not opted in") in outcomes
    assert ("action_network", "no import (missing phone)") in outcomes
    assert ("mobile_commons", "linked") in outcomes
    # the vendors' own client libraries read back what the sync wrote
    import parsons.action_network.action_network as anmod
    import parsons.mobilecommons.mobilecommons as mcmod
    from osdi.action_network.service import ActionNetworkService

    def read_back():
        anmod.API_URL, mcmod.MC_URI = f"{an.base_url}/api/v2", f"{mc.base_url}/api/"
        person = anmod.ActionNetwork(api_token=AN_KEY).get_person(rosa_id)
        profiles = mcmod.MobileCommons(api_key=MC_TOKEN).get_profiles(phones=["12025550143"],
                                                                       include_subscriptions=True)
        service = ActionNetworkService(f"{an.base_url}/api/v2", AN_KEY)
        return person, list(profiles), service.person_by_id(rosa_id)

    person, rows, osdi_person = await asyncio.to_thread(read_back)
    assert f"mobile_commons:{profile['id']}" in person["identifiers"]
    assert osdi_person["identifiers"] == person["identifiers"]
    assert len(rows) == 1 and rows[0]["id"] == profile["id"] and rows[0]["status"] == "Active Subscriber"


async def test_opt_outs_and_opt_ins_flow_back_and_a_second_run_sends_nothing_no_echo(settings, pipeline, tmp_path):
    an, mc, procs = pipeline
    rosa = an.add_person("rosa.t@example.org", "2025550143", "Rosa", "Tester", mobile_status="subscribed",
                         **{OPTIN: True})
    await run_now(settings, "an")
    await until(lambda: "12025550143" in mc.profiles, what="the profile")
    await run_now(settings, "mc")
    await until(lambda: any(i.startswith("mobile_commons:") for i in rosa["identifiers"]), what="the link")
    # subscribers texting in: one with an e-mail, one without; Rosa texts STOP
    mc.add_profile("2025550177", email="sam.t@example.org", first_name="Sam")
    mc.add_profile("2025550166", email=None, first_name="Kim")
    mc.opt_out("12025550143")
    await run_now(settings, "mc")
    await until(lambda: rosa["phone_numbers"][0]["status"] == "unsubscribed", what="Rosa's opt-out in Action Network")
    assert rosa["custom_fields"][OPTIN] is False
    await until(lambda: an.by_phone("2025550177") is not None, what="Sam in Action Network")
    sam = an.by_phone("2025550177")
    assert sam["phone_numbers"][0]["status"] == "subscribed" and sam["custom_fields"][OPTIN] is True
    assert sam["email_addresses"][0]["address"] == "sam.t@example.org" and sam.get("source") == "Mobile Commons"
    assert an.by_phone("2025550166") is None  # no e-mail: reported, not exported
    lines = await report(settings, 1, timeout=10)
    await asyncio.sleep(3)
    lines = await report(settings, len(lines))
    assert any(x.get("outcome") == "no export (missing email)" for x in lines)
    assert any(x.get("outcome") == "opted out" for x in lines)
    # cycles with nothing new: each side's poll reads what the sync itself wrote, and writes nothing back
    await asyncio.sleep(2)
    writes = (len([r for r in an.api_requests if r["method"] in ("POST", "PUT")]),
              len([r for r in mc.api_requests if r["method"] == "POST"]))
    for _ in range(3):
        await run_now(settings, "an")
        await run_now(settings, "mc")
        await asyncio.sleep(2)
    after = (len([r for r in an.api_requests if r["method"] in ("POST", "PUT")]),
             len([r for r in mc.api_requests if r["method"] == "POST"]))
    # Sam's creation in Action Network reaches Mobile Commons once (his Constituent ID), then nothing more
    assert after[0] == writes[0] and after[1] - writes[1] <= 1, (writes, after)
    assert mc.welcome_messages == [("12025550143", "1001")]
    lines = await report(settings, len(lines) + 6, timeout=30)
    summaries = [x for x in lines if x.get("summary") and x.get("side") == "action_network"]
    assert summaries[-1]["changes"] == 0  # the last nightly run: no new changes
    # the report on the command line
    import subprocess
    import sys

    env = worker_env(settings, tmp_path)
    out = subprocess.run([sys.executable, "-m", "activity_sync.cli", "anmc", "report", "--profiles"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "demo-sync  action_network" in out.stdout and "no new changes 1" in out.stdout
    assert "opted out" in out.stdout and "no export (missing email)" in out.stdout and "…0166" in out.stdout
