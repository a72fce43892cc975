"""The Action Network ↔ Mobile Commons sync without Kafka: its settings and mappings (the seed's
cautions), the rules over several cycles (no echo), the report, and both providers' handling of
their vendor's answers (an invalid phone is permanent, a 401 body's echoed key never escapes)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from core.anmc import (AN_UPDATE, AN_UPSERT, MC_UPDATE, NO_CHANGES, SyncError, an_change, mc_change, parse_sync,
                       summarize)
from core.config import ConfigError, parse_config

BASE = {"name": "s", "tenant": "DEMO", "action_network_source": "an", "mobile_commons_source": "mc",
        "action_network_endpoint": "an-out", "mobile_commons_endpoint": "mc-out", "opt_in_path_id": "1001",
        "optin_field": "mobile_opt_in"}
STD = [{"field": "phone_number", "api_field": "phone_numbers.number"},
       {"field": "email", "api_field": "email_addresses.address"},
       {"field": "opt_in_status", "api_field": "custom_fields.mobile_opt_in"},
       {"field": "first_name", "api_field": "given_name"}]


def test_default_mappings_are_the_standard_profile_fields_and_the_seeds_cautions_are_enforced():
    sync = parse_sync(BASE)
    assert {m.field for m in sync.field_mappings} >= {"phone_number", "email", "opt_in_status", "constituent_id"}
    assert sync.source_code == "Mobile Commons"
    bad = [
        ([{**STD[0], "required": True}, *STD[1:]], "field_mappings[0].required", "do not mark phone_number"),
        ([*STD[:1], {**STD[1], "required": True}, *STD[2:]], "field_mappings", "do not mark email"),
        ([*STD, {"field": "constituent_id", "api_field": "identifiers.action_network", "required": True}],
         "field_mappings", "constituent_id"),
        ([*STD, {"field": "city", "api_field": "custom_fields.town"}], "field_mappings", "custom fields are not synced"),
        ([*STD, {"field": "city", "api_field": "postal_addresses.locallity"}], "field_mappings", "locallity"),
        ([*STD, {"field": "favourite_colour", "api_field": "given_name"}], "field_mappings", "favourite_colour"),
        (STD[:2] + STD[3:], "field_mappings", "opt_in_status must be mapped"),
        ([*STD[:2], {"field": "opt_in_status", "api_field": "custom_fields.other"}, STD[3]], "field_mappings",
         "the checkbox optin_field names"),
    ]
    for mappings, field, text in bad:
        with pytest.raises(SyncError) as e:
            parse_sync({**BASE, "field_mappings": mappings})
        assert text in str(e.value), str(e.value)
        assert e.value.field.startswith(field.split("[")[0]), (e.value.field, str(e.value))
    with pytest.raises(SyncError, match="password"):
        parse_sync({**BASE, "password": "hunter2-hunter2"})
    with pytest.raises(SyncError) as e:
        parse_sync({**BASE, "optin_field": 5})
    assert e.value.field == "optin_field"


def test_a_sync_must_name_sources_and_endpoints_of_the_right_kinds_and_gets_its_subscriptions():
    def doc(**over):
        d = {"sources": [{"name": "an", "kind": "actionnetwork", "tenant": "DEMO", "settings": {}},
                         {"name": "mc", "kind": "mobilecommons", "tenant": "DEMO", "settings": {}}],
             "endpoints": [{"name": "an-out", "provider": "actionnetwork", "tenant": "DEMO"},
                           {"name": "mc-out", "provider": "mobilecommons", "tenant": "DEMO"}],
             "anmc": [{**BASE, **over}]}
        return d

    cfg = parse_config(doc())
    assert {(s.activity_code, s.endpoint) for s in cfg.subscriptions} == {
        (MC_UPDATE, "mc-out"), (AN_UPSERT, "an-out"), (AN_UPDATE, "an-out")}
    assert "anmc:s" in [k for k, _ in cfg.records()]
    for over, field in [({"action_network_source": "mc"}, "action_network_source"),
                        ({"mobile_commons_endpoint": "an-out"}, "mobile_commons_endpoint"),
                        ({"tenant": "ACME"}, "action_network_endpoint")]:
        with pytest.raises(ConfigError) as e:
            parse_config(doc(**over))
        assert e.value.field == field, (over, str(e.value))


def person(pid="p1", phone="2025550143", email="rosa.t@example.org", optin=True, ids=()):
    return {"identifiers": [f"action_network:{pid}", *ids], "given_name": "Rosa",
            "email_addresses": [{"primary": True, "address": email}] if email else [],
            "phone_numbers": [{"primary": True, "number": phone, "status": "subscribed"}] if phone else [],
            "custom_fields": {"mobile_opt_in": optin}}


def profile(pid="100001", phone="12025550143", status="Active Subscriber", email="rosa.t@example.org", constituent=None):
    return {"id": pid, "phone_number": phone, "status": status, "email": email,
            "custom_columns": {"constituent_id": constituent} if constituent else {}}


def test_the_rules_over_several_cycles_send_each_change_once_and_never_echo():
    sync = parse_sync(BASE)
    e, acts, lines = an_change(None, person(), sync, "an:1", "2026-12-01T03:00:00Z")
    assert [a["ActivityCode"] for a in acts] == [MC_UPDATE] and lines[0]["outcome"] == "subscribed"
    params = json.loads(acts[0]["SyncFields"])
    assert params["opt_in_path_id"] == "1001" and params["constituent_id"] == "p1"
    assert params["phone_number"] == "12025550143" and params["email"] == "rosa.t@example.org"
    # Mobile Commons' poll reads the profile the sync made: linked, its id goes to Action Network once
    e, acts, lines = mc_change(e, profile(constituent="p1"), sync, "mc:1", "2026-12-01T03:00:05Z")
    assert [a["ActivityCode"] for a in acts] == [AN_UPDATE] and lines[0]["outcome"] == "linked"
    assert json.loads(acts[0]["SyncFields"]) == {"identifiers": ["mobile_commons:100001"]}
    # Action Network's next run reads the person the sync updated: no difference, nothing sent
    e, acts, lines = an_change(e, person(ids=("mobile_commons:100001",)), sync, "an:2", "2026-12-02T03:00:00Z")
    assert acts == [] and lines[0]["outcome"] == "no difference"
    e, acts, lines = mc_change(e, profile(constituent="p1"), sync, "mc:2", "2026-12-02T03:00:05Z")
    assert acts == [] and lines[0]["outcome"] == "no difference"
    # STOP in Mobile Commons: Action Network's mobile status unsubscribed, once
    e, acts, lines = mc_change(e, profile(status="Opted-Out"), sync, "mc:3", "2026-12-02T09:00:00Z")
    body = json.loads(acts[0]["SyncFields"])
    assert acts[0]["ActivityCode"] == AN_UPSERT and lines[0]["outcome"] == "opted out"
    assert body["person"]["phone_numbers"] == [{"number": "12025550143", "status": "unsubscribed"}]
    assert body["person"]["custom_fields"] == {"mobile_opt_in": False}
    e, acts, _ = mc_change(e, profile(status="Opted-Out"), sync, "mc:4", "2026-12-02T09:05:00Z")
    assert acts == []
    # and the person that write changed, read at night: nothing goes back to Mobile Commons
    e, acts, lines = an_change(e, person(optin=False, ids=("mobile_commons:100001",)), sync, "an:3",
                               "2026-12-03T03:00:00Z")
    assert acts == [] and lines[0]["outcome"] == "no difference"
    # a real change on Action Network's side is sent, without a second opt-in
    changed = person(email="rosa.new@example.org", ids=("mobile_commons:100001",))
    e, acts, lines = an_change(e, changed, sync, "an:4", "2026-12-04T03:00:00Z")
    assert [a["ActivityCode"] for a in acts] == [MC_UPDATE] and "opt_in_path_id" not in json.loads(acts[0]["SyncFields"])


def test_mobile_commons_opt_ins_create_people_only_with_an_email_and_missing_fields_are_reported():
    sync = parse_sync(BASE)
    e, acts, lines = mc_change(None, profile(phone="2025550177", email="sam.t@example.org"), sync, "mc:1", "t1")
    body = json.loads(acts[0]["SyncFields"])
    assert acts[0]["ActivityCode"] == AN_UPSERT and lines[0]["outcome"] == "created"
    assert body["person"]["phone_numbers"][0]["status"] == "subscribed"
    assert body["person"]["custom_fields"] == {"mobile_opt_in": True}
    assert body["action_network:referrer_data"] == {"source": "Mobile Commons"}
    e, acts, lines = mc_change(None, profile(phone="2025550166", email=None), sync, "mc:1", "t1")
    assert acts == [] and lines[0]["outcome"] == "no export (missing email)"
    _, acts, lines = an_change(None, person(phone=None), sync, "an:1", "t1")
    assert acts == [] and lines[0]["outcome"] == "no import (missing phone)"
    _, acts, lines = an_change(None, person(optin=False), sync, "an:1", "t1")
    assert acts == [] and lines[0]["outcome"] == "not opted in"
    strict = parse_sync({**BASE, "field_mappings": [*STD[:3], {**STD[3], "required": True}]})
    p = person()
    p["given_name"] = None
    _, acts, lines = an_change(None, p, strict, "an:1", "t1")
    assert acts == [] and (lines[0]["outcome"], lines[0]["detail"]) == ("missing required field", "first_name")


def test_the_report_groups_lines_by_run_and_says_no_new_changes():
    lines = [{"sync": "s", "side": "action_network", "run": "an:100", "profile": "…0143", "outcome": "subscribed"},
             {"source": "an", "side": "action_network", "run": "an:100", "records": 3, "changes": 1, "summary": True},
             {"source": "an", "side": "action_network", "run": "an:200", "records": 3, "changes": 0, "summary": True}]
    runs = summarize(lines, {"an": "s"})
    assert [(r["run"], r["sync"], r["read"], r["outcomes"]) for r in runs] == [
        ("an:100", "s", 3, {"subscribed": 1}), ("an:200", "s", 3, {NO_CHANGES: 1})]


# ----------------------------------------------------------------------------- providers, against the fakes

async def _sink(provider: str, settings: dict, env: dict, monkeypatch):
    from sinks.contract import SinkContext
    from sinks.registry import parse_settings, sink_class

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    parsed = parse_settings(provider, settings)
    sink = sink_class(provider)()
    await sink.start(SinkContext(endpoint=f"{provider}-t", settings=parsed))
    return sink


def delivery(code: str, fields: dict, **details):
    from sinks.contract import Delivery

    return Delivery(activity_key="k1", endpoint="x", activity_code=code, category="Mobile Sync", tenant_code="DEMO",
                    activity_date=dt.datetime.now(dt.timezone.utc), customer_id=None, contact_key=None,
                    link_url=None, description="", writeback_code1=None, writeback_code2=None,
                    details_json=json.dumps({"SyncFields": json.dumps(fields), **details}), details_xml="")


async def test_mobile_commons_invalid_phone_is_permanent_with_the_vendors_message_others_retried(monkeypatch):
    from sinks.contract import FatalError, RetriableError
    from sinks.providers.mobilecommons.fake import FakeMobileCommons

    fake = await FakeMobileCommons(token="mc-t").start()
    sink = await _sink("mobilecommons", {"url": f"{fake.base_url}/api", "token_env": "MC_T"}, {"MC_T": "mc-t"},
                       monkeypatch)
    try:
        await sink.write_one(delivery(MC_UPDATE, {"phone_number": "2025550143", "opt_in_path_id": "1001"}))
        assert fake.profiles["12025550143"]["status"] == "Active Subscriber"
        with pytest.raises(FatalError, match="Invalid phone number"):
            await sink.write_one(delivery(MC_UPDATE, {"phone_number": "555"}))
        with pytest.raises(RetriableError, match="error 6"):
            await sink.write_one(delivery(MC_UPDATE, {"phone_number": "2025550143", "opt_in_path_id": "9"}))
        # once per campaign: a second opt-in through the same path sends no second welcome
        await sink.write_one(delivery(MC_UPDATE, {"phone_number": "2025550143", "opt_in_path_id": "1001"}))
        assert len(fake.welcome_messages) == 1
    finally:
        await sink.stop()
        await fake.stop()


async def test_action_network_401_echoes_the_key_and_the_sink_and_source_cut_it_out(monkeypatch, caplog):
    from core.config import Source
    from sinks.contract import AuthExpired
    from sinks.providers.actionnetwork.fake import FakeActionNetwork
    from sources.framework import AuthRefused
    from sources.registry import make_source

    fake = await FakeActionNetwork("the-right-key").start()
    wrong = "wrong-key-6f2b9c"
    sink = await _sink("actionnetwork", {"url": f"{fake.base_url}/api/v2", "api_token_env": "AN_T"},
                       {"AN_T": wrong}, monkeypatch)
    try:
        with pytest.raises(AuthExpired) as e:
            await sink.write_one(delivery(AN_UPSERT, {"person": {"email_addresses": [{"address": "a@example.org"}]}}))
        assert wrong not in str(e.value) and "[redacted]" in str(e.value)
        assert fake.api_requests[-1]["status"] == 401
        poller = make_source(Source("an", "actionnetwork", "DEMO", True, {"url": f"{fake.base_url}/api/v2",
                                                                          "api_token_env": "AN_T"}))
        await poller.start()
        try:
            with pytest.raises(AuthRefused) as e:
                async for _ in poller.pages(dt.datetime.now(dt.timezone.utc)):
                    pass
            assert wrong not in str(e.value)
        finally:
            await poller.stop()
        assert wrong not in caplog.text
    finally:
        await sink.stop()
        await fake.stop()


async def test_parsons_and_osdi_write_and_page_against_both_fakes_as_against_the_real_apis():
    """The vendors' client libraries: what parsons and osdi send, the fakes take; what they page, they serve."""
    import asyncio

    import parsons.action_network.action_network as anmod
    import parsons.mobilecommons.mobilecommons as mcmod
    from osdi.action_network.service import ActionNetworkService

    from sinks.providers.actionnetwork.fake import FakeActionNetwork
    from sinks.providers.mobilecommons.fake import FakeMobileCommons

    an = await FakeActionNetwork("an-k").start()
    mc = await FakeMobileCommons(token="mc-k").start()
    an.seed(30)

    def clients():
        anmod.API_URL, mcmod.MC_URI = f"{an.base_url}/api/v2", f"{mc.base_url}/api/"
        a = anmod.ActionNetwork(api_token="an-k")
        made = a.upsert_person(email_address="lee.t@example.org", given_name="Lee", mobile_number="2025550111")
        again = a.upsert_person(email_address="lee.t@example.org", family_name="Tester")
        people = a.get_people()
        m = mcmod.MobileCommons(api_key="mc-k")
        first = m.create_profile("2025550111", first_name="Lee", opt_in_path_id="1001")
        second = m.create_profile("2025550111", first_name="Lee", opt_in_path_id="1001")
        profiles = m.get_profiles(include_subscriptions=True)
        tags = ActionNetworkService(f"{an.base_url}/api/v2", "an-k").tags_by_name
        return made, again, people, first, second, profiles, tags

    try:
        made, again, people, first, second, profiles, tags = await asyncio.to_thread(clients)
        assert made["identifiers"] == again["identifiers"]  # matched by e-mail: the same person
        assert made["phone_numbers"][0]["status"] == "unsubscribed"  # new numbers: mobile unsubscribed
        assert again["family_name"] == "Tester" and again["given_name"] == "Lee"
        assert people.num_rows == 31  # 30 seeded + Lee, over two pages of 25 (next links to the end)
        assert first == second and len(mc.welcome_messages) == 1  # once per campaign through the API
        assert profiles.num_rows == 1 and "volunteer" in tags
    finally:
        await an.stop()
        await mc.stop()
