import json

import pytest
from conftest import FIXTURES, seed_events

from core.catalog import load_catalog
from streams.enrich import Enricher, choose_customer, link_of
from core.config import parse_config, read_config_file
from core.routing import Routing


@pytest.fixture(scope="module")
def enricher():
    cat = load_catalog()
    routing = Routing(cat)
    cfg = parse_config(read_config_file(FIXTURES / "config.yaml"), cat)
    for key, value in cfg.records():
        routing.apply_record(key, value)
    return Enricher(cat, routing)


def enrich(enricher, event: dict):
    return enricher.enrich(json.dumps(event).encode(), None, "activity.raw", 2, 42, 1_700_000_000_000)


# (code, customer id, field it came from): whose activity it is differs per activity type.
EXPECTED = {
    "DiscussionMessageCreate": ("aquill", "AuthorExternalKey", "Discussions"),
    "DiscussionMessageReply": ("aquill", "AuthorExternalKey", "Discussions"),  # no AgentExternalKey here
    "LibraryEntryView": ("0037yHT1MAAW", "AccessedByExternalKey", "Resource Libraries"),  # not the agent's key
    "CommunityMemberJoin": ("clindqvist", "MemberExternalKey", "Communities"),
    "CommunityMemberInvite": ("0037000000uwuhgAAA", "MemberExternalKey", "Communities"),
}


@pytest.mark.parametrize("event", seed_events(), ids=lambda e: e["ActivityCode"])
def test_seed_activities(enricher, event):
    rec = enrich(enricher, event).record
    cid, field, category = EXPECTED[event["ActivityCode"]]
    assert (rec["customer_id"], rec["customer_key_field"], rec["category"]) == (cid, field, category)
    assert rec["link_url"] == event.get("LinkUrl", event.get("ParentLinkUrl"))
    assert rec["source"] == {"topic": "activity.raw", "partition": 2, "offset": 42}
    assert {d["name"] for d in rec["details"]} == set(event) - {"ActivityKey", "ActivityCode", "ActivityDate", "TenantCode"}


def test_descriptions_and_writeback_codes(enricher):
    by_code = {e["ActivityCode"]: enrich(enricher, e).record for e in seed_events()}
    create = by_code["DiscussionMessageCreate"]["deliveries"]
    assert [(d["endpoint"], d["writeback_code1"], d["writeback_code2"]) for d in create] == [
        ("crm", "COMMUNITY", "DISC_POST"), ("history", "DiscussionMessageCreate", None)]
    assert create[0]["description"] == \
        'Avery Quill posted a new message titled "Annual Conference" in the Demo Community community'
    # a disabled subscription and a disabled endpoint route nothing
    assert [d["endpoint"] for d in by_code["LibraryEntryView"]["deliveries"]] == ["crm"]
    assert [d["endpoint"] for d in by_code["CommunityMemberJoin"]["deliveries"]] == ["crm"]


def test_library_view_has_parent_link(enricher):
    ev = next(e for e in seed_events() if e["ActivityCode"] == "LibraryEntryView")
    assert "LinkUrl" not in ev
    assert enrich(enricher, ev).record["link_url"] == ev["ParentLinkUrl"]


def test_unknown_code_still_flows_uncategorized(enricher):
    ev = dict(seed_events()[0], ActivityCode="SomethingNew", ActivityKey="new-1")
    out = enrich(enricher, ev)
    assert out.unknown_code and out.record["category"] == "Uncategorized"
    assert out.record["deliveries"] == []
    assert out.record["customer_id"] == "aquill"  # default key order: AgentExternalKey first


def test_key_is_the_members_contact_key(enricher):
    ev = seed_events()[2]
    assert enrich(enricher, ev).key == ev["AccessedByContactKey"].encode()


def test_customer_key_choice_is_configurable():
    cat = load_catalog(customer_keys={"LibraryEntryView": ["AgentExternalKey"]})
    ev = seed_events()[2]
    assert choose_customer(ev, cat.customer_key("LibraryEntryView")) == ("0037000001yHT1MAAW", "AgentExternalKey")


def test_no_customer_key_gives_null():
    assert choose_customer({"AuthorExternalKey": "  "}, ("AuthorExternalKey",)) == (None, None)
    assert link_of({"LinkUrl": "", "ParentLinkUrl": "p"}) == "p"


def _directory():
    from core.directory import Directory

    d = Directory()
    for cid, email, phone, alt in (("AMS-1", "ada@example.org", "+1 (555) 010-0001", "ck-ada"),
                                   ("AMS-2", "shared@example.org", None, None), ("AMS-3", "shared@example.org", None, None)):
        entry = {"tenant": "DEMO", "ContactId": cid, "deleted": False, "groups": {}, "lists": {},
                 "details": {"ContactId": cid, "FirstName": "X", "PrimaryEmailAddress": email,
                             **({"AlternativeContactId": alt} if alt else {})},
                 "PhoneNumbers": [{"FormattedNumber": phone}] if phone else []}
        d.apply(f"DEMO|{cid}".encode(), json.dumps(entry).encode())
    return d


def _event(**props):
    return {"ActivityKey": "k1", "ActivityCode": "DiscussionMessageCreate", "ActivityDate": "2026-01-01T00:00:00Z",
            "TenantCode": "DEMO", **props}


def test_the_directory_resolves_members_the_event_does_not_name():
    cat = load_catalog()
    e = Enricher(cat, Routing(cat), directory=_directory())

    def out(**props):
        r = e.enrich(json.dumps(_event(**props)).encode(), None, "raw", 0, 0, 0).record
        return r["customer_id"], r["customer_key_field"], r["customer_resolved_by"]

    assert out(AuthorContactKey="ck-ada") == ("AMS-1", "AuthorContactKey", "directory:contact_key")
    assert out(AuthorContactKey="AMS-1") == ("AMS-1", "AuthorContactKey", "directory:contact_key")
    assert out(AuthorEmail="ADA@example.org") == ("AMS-1", "AuthorEmail", "directory:email")
    assert out(AuthorPhone="555.010.0001") == ("AMS-1", "AuthorPhone", "directory:phone")
    assert out(Email="ada@example.org") == ("AMS-1", "Email", "directory:email")
    assert out(AuthorEmail="shared@example.org") == (None, None, None)  # ambiguous: nobody
    assert out(AuthorEmail="nobody@example.org") == (None, None, None)
    # the event's own customer ID always wins, and is not marked resolved
    assert out(AuthorExternalKey="AMS-9", AuthorEmail="ada@example.org") == ("AMS-9", "AuthorExternalKey", None)
    # another tenant's directory is not consulted
    r = e.enrich(json.dumps(_event(TenantCode="ACME", AuthorEmail="ada@example.org")).encode(), None, "raw", 0, 0, 0)
    assert r.record["customer_id"] is None


def test_the_tenants_resolve_by_order_and_the_loop_guard():
    cat = load_catalog()
    routing = Routing(cat)
    cfg = parse_config({"tenants": [{"code": "DEMO", "resolve_by": ["phone"]}],
                        "endpoints": [{"name": "ams", "provider": "webhook", "tenant": "DEMO",
                                       "settings": {"url": "http://127.0.0.1:1/"}}],
                        "subscriptions": [{"activity_code": "ContactCreate", "endpoint": "ams"}]})
    for k, v in cfg.records():
        routing.apply_record(k, v)
    e = Enricher(cat, routing, directory=_directory())
    rec = e.enrich(json.dumps(_event(AuthorEmail="ada@example.org")).encode(), None, "raw", 0, 0, 0).record
    assert rec["customer_id"] is None  # e-mail is not among this tenant's ways
    change = {"ActivityKey": "c1", "ActivityCode": "ContactCreate", "ActivityDate": "2026-01-01T00:00:00Z",
              "TenantCode": "DEMO", "ContactExternalKey": "AMS-1"}
    assert [d["endpoint"] for d in e.enrich(json.dumps(change).encode(), None, "raw", 0, 0, 0).record["deliveries"]] \
        == ["ams"]
    looped = dict(change, OriginSystem="ams")
    assert e.enrich(json.dumps(looped).encode(), None, "raw", 0, 0, 0).record["deliveries"] == []
