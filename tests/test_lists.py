"""Community lists without Kafka: criteria, a member's state, the stage's step, the connection's
credentials, the fake marketing platform's partner API, and the reconciliation."""

from __future__ import annotations

import datetime as dt

import pytest

from core.config import ConfigError, list_from_dict
from core.catalog import load_catalog
from core.lists import (ListError, apply_activity, check_password, evaluate, hash_password, issue_connection,
                        new_state, parse_list, target_group_name, valid_email)
from sinks.providers.informz.reconcile import reconcile
from streams.lists import step

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc).timestamp()
DAY = 86400


def lst(criteria, name="Informz Test", **kw):
    return parse_list({"tenant": "DEMO", "name": name, "criteria": criteria, **kw})


def member(*acts, score=None, comm=()):
    st = new_state("DEMO", "M1")
    for i, (code, cat, ago_days) in enumerate(acts):
        apply_activity(st, f"k{i}", code, cat, NOW - ago_days * DAY, {}, NOW)
    st["score"] = score
    for c in comm:
        apply_activity(st, f"j{c}", "CommunityMemberJoin", "Communities", NOW - DAY, {"CommunityName": c}, NOW)
    return st


def test_activity_counts_windows_dates_and_never():
    st = member(("Login", "Common", 1), ("Login", "Common", 40), ("DiscussionMessageCreate", "Discussions", 5))
    assert lst({"activity": {"codes": ["Login"]}}).test(st, NOW)
    assert lst({"activity": {"codes": ["Login"], "at_least": 2}}).test(st, NOW)
    assert not lst({"activity": {"codes": ["Login"], "at_least": 2, "within_days": 30}}).test(st, NOW)
    assert lst({"activity": {"categories": ["Discussions"], "within": "7d"}}).test(st, NOW)
    assert not lst({"activity": {"codes": ["Login"], "at_most": 1}}).test(st, NOW)
    assert lst({"activity": {"codes": ["Login"], "from": "2026-10-01", "to": "2026-10-31"}}).test(st, NOW)
    assert not lst({"activity": {"codes": ["Login"], "from": "2026-11-01", "to": "2026-11-20"}}).test(st, NOW)
    assert not lst({"never": {"codes": ["Login"], "within": "90d"}}).test(st, NOW)
    assert lst({"never": {"codes": ["Login"], "within": "12h"}}).test(st, NOW)


def test_combinations_scores_and_communities():
    st = member(("DiscussionMessageCreate", "Discussions", 1), score=42.0, comm=("Annual Conference",))
    crit = {"all": [{"score": {"at_least": 40}}, {"member_of": {"community": "annual conference"}},
                    {"not": {"activity": {"codes": ["Login"]}}}]}
    assert lst(crit).test(st, NOW)
    assert not lst({"any": [{"score": {"at_least": 50}}, {"activity": {"codes": ["Login"]}}]}).test(st, NOW)
    apply_activity(st, "leave", "CommunityMemberLeave", "Communities", NOW, {"CommunityName": "Annual Conference"},
                   NOW)
    assert not lst(crit).test(st, NOW)


def test_a_window_says_when_the_answer_changes():
    st = member(("DiscussionMessageCreate", "Discussions", 29.5))
    d = lst({"activity": {"codes": ["DiscussionMessageCreate"], "within": "30d"}})
    ins, due = evaluate([d], st, NOW)
    assert ins == {d.id} and due == pytest.approx(NOW + 0.5 * DAY)
    ins, _ = evaluate([d], st, due + 1)
    assert ins == set()


def test_an_activity_delivered_twice_counts_once():
    st = new_state("DEMO", "M1")
    assert apply_activity(st, "k", "Login", "Common", NOW, {}, NOW)
    assert not apply_activity(st, "k", "Login", "Common", NOW, {}, NOW)
    assert st["codes"]["Login"][0] == 1


def test_the_stage_step_joins_leaves_and_updates_on_a_new_email():
    d = lst({"activity": {"codes": ["Login"], "within": "1d"}})
    r = {"tenant": "DEMO", "member": "M1", "key": "a", "code": "Login", "category": "Common", "when": NOW - 3600,
         "d": {"MemberEmail": "m1@example.org"}}
    st, changes = step(None, r, [d], NOW)
    assert [(lid, rec["email"]) for lid, rec in changes] == [(d.id, "m1@example.org")]
    st, changes = step(st, {**r, "key": "b", "d": {"MemberEmail": "new@example.org"}}, [d], NOW)
    assert [(lid, rec["email"]) for lid, rec in changes] == [(d.id, "new@example.org")]
    st, changes = step(st, {**r, "key": "c", "d": {"MemberEmail": "new@example.org"}}, [d], NOW)
    assert changes == []
    st, changes = step(st, {"tenant": "DEMO", "member": "M1", "tick": 1}, [d], NOW + 2 * 86400)
    assert changes == [(d.id, None)] and st["lists"] == []
    assert step(None, {"tenant": "DEMO", "member": "M9", "tick": 1}, [d], NOW) == (None, [])


@pytest.mark.parametrize("criteria, field", [
    ({"activity": {"codes": []}}, "criteria.activity.codes"),
    ({"activity": {"codes": ["Login"], "within": "forever"}}, "criteria.activity.within"),
    ({"activity": {"codes": ["Login"], "at_least": 3, "at_most": 1}}, "criteria.activity.at_most"),
    ({"all": [{"activity": {"codes": ["Login"], "colour": 1}}]}, "criteria.all[0].activity.colour"),
    ({"sometimes": {}}, "criteria"),
    ({"score": {"at_least": "ten"}}, "criteria.score.at_least"),
    ({"activity": {"codes": ["Login"], "within": "1d", "from": "2026-01-01"}}, "criteria.activity.within"),
])
def test_bad_criteria_name_their_field(criteria, field):
    with pytest.raises(ListError) as e:
        lst(criteria)
    assert e.value.field == field


def test_a_list_in_a_config_names_known_codes_only():
    cat = load_catalog()
    ok = list_from_dict({"tenant": "DEMO", "name": "Informz Posters",
                         "criteria": {"activity": {"codes": ["DiscussionMessageCreate"]}}}, cat)
    assert ok.id == "informz-posters" and ok.target_group == "Posters"
    with pytest.raises(ConfigError, match="unknown code NoSuchCode"):
        list_from_dict({"tenant": "DEMO", "name": "X", "criteria": {"activity": {"codes": ["NoSuchCode"]}}}, cat)


def test_only_informz_lists_are_offered_without_the_prefix():
    assert target_group_name("Informz Has Started Discussion Thread") == "Has Started Discussion Thread"
    assert target_group_name("Has Started Discussion Thread") is None
    assert target_group_name("Informz") is None


def test_emails_and_credentials():
    assert valid_email("ann.lee+x@example.org") and not valid_email("ann@") and not valid_email("a b@example.org")
    assert not valid_email("ann@example") and not valid_email(None)
    h = hash_password("s3cret-password")
    assert h.startswith("scrypt$") and "s3cret" not in h
    assert check_password("s3cret-password", h) and not check_password("wrong", h)
    conn, password = issue_connection("DEMO")
    assert check_password(password, conn.password_hash) and password not in str(conn.record())


def test_reconciliation_explains_the_difference():
    members = [{"RemoteId": "M1", "Email": "a@example.org"}, {"RemoteId": "M2", "Email": "s@example.org"},
               {"RemoteId": "M3", "Email": "S@example.org"}, {"RemoteId": "M4", "Email": "bad"}]
    groups = [{"target_group_id": "7", "target_group_name": "Posters", "folder_name": "Online Community"}]
    subs = [{"email": "a@example.org", "status": "unsubscribed"}, {"email": "s@example.org", "status": "subscribed"}]
    r = reconcile("Informz Posters", members, groups, subs)
    assert r["community_count"] == 4 and r["platform_count"] == 1 and r["explained"] == 3 and r["fully_explained"]
    assert reconcile("Informz Posters", members, [], None)["reasons"][0].startswith("no target group")
    elsewhere = [{**groups[0], "folder_name": "Archive"}]
    assert "Archive" in reconcile("Informz Posters", members, elsewhere, None)["reasons"][0]


# ----------------------------------------------------------------------------- the push provider

def list_deliveries(changes, tg="Posters"):
    """Deliveries of CommunityListJoin/Leave activities, through the real enrichment."""
    import json as _json

    from core.catalog import load_catalog as _cat
    from core.config import Endpoint, Subscription
    from core.routing import Routing
    from sinks.contract import Delivery
    from streams.enrich import Enricher

    routing = Routing(_cat())
    routing.put_endpoint(Endpoint("tmp", tenants=("*",)))
    for code in ("CommunityListJoin", "CommunityListLeave"):
        routing.put_subscription(Subscription(code, "tmp", "{ActivityDescription}", True, None, None))
    enricher = Enricher(_cat(), routing)
    out = []
    for i, (member, email, joined) in enumerate(changes):
        st = {"t": "DEMO", "m": member, "email": email, "first": "F", "last": "L"}
        d = parse_list({"tenant": "DEMO", "name": f"Informz {tg}", "push": True,
                        "criteria": {"activity": {"codes": ["Login"]}}})
        from streams.lists import list_activity

        ev = list_activity(st, d, {} if joined else None, NOW + i)
        rec = enricher.enrich(_json.dumps(ev).encode(), None, "raw", 0, i, 0).record
        out.append(Delivery.from_record(rec, rec["deliveries"][0]))
    return out


async def informz_sink(fake, monkeypatch, **overrides):
    from sinks.contract import SinkContext
    from sinks.registry import parse_settings, sink_class

    monkeypatch.setenv("TEST_INFORMZ_PASSWORD", fake.password)
    settings = parse_settings("informz", {"url": fake.url, "brand_id": fake.brand_id, "brand": fake.brand,
                                          "username": fake.user, "password_env": "TEST_INFORMZ_PASSWORD",
                                          **overrides}, "membership")
    sink = sink_class("informz")()
    await sink.start(SinkContext("tmp", settings, lambda *_: None))
    return sink


async def test_the_push_provider_subscribes_bulk_uploads_and_removes(monkeypatch):
    from sinks.contract import FatalError, SetupError
    from sinks.providers.informz.fake import FakeInformz

    fake = await FakeInformz(hour_s=0, bulk_delay_s=0.02).start()
    sink = await informz_sink(fake, monkeypatch, bulk_above=3)
    try:
        small = list_deliveries([("M1", "a@example.org", True), ("M2", "bad-address", True)])
        failures = await sink.write(small)
        assert [(f.index, type(f.error)) for f in failures] == [(1, FatalError)]
        assert "malformed" in str(failures[0].error)
        g = fake.group_named("Posters")
        assert g["folder"] == "Online Community" and sorted(g["members"]) == ["M1"]
        assert not fake.uploads  # two changes: one synchronous Subscribe
        big = list_deliveries([(f"B{i}", f"b{i}@example.org", True) for i in range(5)]
                              + [("M1", "a@example.org", False)])
        assert await sink.write(big) == []
        assert sorted(g["members"]) == [f"B{i}" for i in range(5)]
        assert [u["action"] for u in fake.uploads.values()] == ["AddOrUpdateSubscribers", "RemoveSubscribers"]
        assert all(u["status"] == "Complete" for u in fake.uploads.values())
        # a member who joins and leaves in one batch: the last change wins
        assert await sink.write(list_deliveries([("B0", "b0@example.org", False), ("B0", "b0@example.org", True)])) == []
        assert "B0" in g["members"]
    finally:
        await sink.stop()
    fake.password = "changed"
    sink = await informz_sink(fake, monkeypatch)
    fake.password = "changed-again"
    try:
        with pytest.raises(SetupError, match="AuthenticationFailed"):
            await sink.write(list_deliveries([("M9", "m9@example.org", True)]))
    finally:
        await sink.stop()
        await fake.stop()


async def test_the_partner_api_refuses_what_the_vendor_refuses():
    from sinks.providers.informz.aapi import AapiError, credentials
    from sinks.providers.informz.client import PartnerClient
    from sinks.providers.informz.fake import FakeInformz

    fake = await FakeInformz(hour_s=0).start()
    try:
        async with PartnerClient(fake.url, fake.brand_id, fake.brand, fake.user, fake.password) as c:
            with pytest.raises(AapiError, match="TooManySubscribers"):
                await c.subscribe("G", "AddOrUpdateSubscribers",
                                  [{"email": f"x{i}@example.org", "remote_id": str(i)} for i in range(1001)])
            with pytest.raises(AapiError, match="InvalidAction"):
                await c.subscribe("G", "RemoveSubscribers", [{"email": "x@example.org", "remote_id": "1"}])
            with pytest.raises(AapiError, match="NumberOfRows"):
                from sinks.providers.informz.aapi import grid_request

                await c.post(grid_request(c.creds, "upload_history", ["upload_id"], rows=1001))
            uid = await c.bulk_upload("G", "AddOrUpdateSubscribers",
                                      [{"email": f"y{i}@example.org", "remote_id": f"R{i}"} for i in range(2500)])
            assert (await c.upload(uid))["status"] in ("Pending", "Processing")  # asynchronous
            done = await c.wait_upload(uid)
            assert done["status"] == "Complete" and done["succeeded"] == "2500"
            rows = await c.grid("target_group_subscriber", ["email"])
            assert len(rows) == 2500  # three grid pages of at most 1,000 rows
        async with PartnerClient(fake.url, fake.brand_id, fake.brand, fake.user, "wrong") as c:
            with pytest.raises(AapiError, match="AuthenticationFailed"):
                await c.grid("interest_target_group", ["target_group_id"])
        assert "<Password>" in credentials("1", "b", "u", "p")
    finally:
        await fake.stop()
