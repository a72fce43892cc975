"""The Push API's objects as the seed specifies them (pure: no server, no Kafka)."""

from __future__ import annotations

import json

from sources.push import model as M

SEED_LIST = """[
{
"ContactIds": ["aafdd36c-b35c-ee5c-5892-9098a09f2a81"],
"ListId": "LIST1",
"ListName": "Test List 1",
"ListType": "Awesome List",
"Mode": "Append"
},
{
"ContactIds": ["aafdd36c-b35c-ee5c-5892-9098a09f2a81","74cec42c-5e4d-e3bd-91ec-917d40a4c9dc"],
"ListId": "LIST2",
"ListName": "Test List 2",
"Mode": "Replace"
}
]"""


def contact(**details) -> dict:
    return {"ContactDetails": {"ContactId": "C-1", "FirstName": "Ada", **details}}


def fields(problems) -> list[str]:
    return [p.field for p in problems]


def test_the_seeds_list_example_is_valid_and_append_is_add():
    out = [M.list_object(i, o) for i, o in enumerate(json.loads(SEED_LIST))]
    assert [p for _, p in out] == [[], []]
    assert [r["Mode"] for r, _ in out] == ["Add", "Replace"]
    assert out[1][0]["ListType"] is None and out[0][0]["ContactIds"] == ["aafdd36c-b35c-ee5c-5892-9098a09f2a81"]


def test_required_fields_as_the_seed_says():
    assert fields(M.contact_info(0, {"ContactDetails": {"FirstName": "Ada"}})[1]) == ["ContactDetails.ContactId"]
    assert fields(M.contact_info(0, {"ContactDetails": {"ContactId": "C-1"}})[1]) == ["ContactDetails.FirstName"]
    assert M.contact_info(0, {"ContactDetails": {"ContactId": "C-1", "LastName": "Byron"}})[1] == []
    org = {"ContactDetails": {"ContactId": "O-1", "IsOrganization": True, "FirstName": "x"}}
    assert fields(M.contact_info(0, org)[1]) == ["ContactDetails.OrganizationName"]
    org["ContactDetails"]["OrganizationName"] = "Example Society"
    assert M.contact_info(0, org)[1] == []
    # a soft delete needs only the ContactId
    rec, probs = M.contact_info(0, {"ContactDetails": {"ContactId": "C-1", "IsDeleted": True}})
    assert probs == [] and rec["ContactDetails"]["IsDeleted"] is True
    assert fields(M.contact_info(3, {"Groups": []})[1]) == ["ContactDetails"]
    assert M.contact_info(3, {"Groups": []})[1][0].index == 3
    assert fields(M.contact_info(0, contact() | {"Groups": [{"GroupName": "Board"}]})[1]) == ["Groups[0].GroupId"]


def test_datetime_only_in_the_two_dotnet_formats():
    for ok in ("2026-03-01T09:30:00.000Z", "2026-03-01T09:30:00.123+05:30", "2026-03-01T09:30:00.123-08:00"):
        assert M.contact_info(0, contact(MemberSince=ok))[1] == [], ok
    for bad in ("2026-03-01T09:30:00Z", "2026-03-01", "2026-03-01T09:30:00.1234567Z", "2026-03-01T09:30:00.000",
                "2026-02-30T09:30:00.000Z", "2026-03-01T09:30:00.000+0530", 20260301):
        assert fields(M.contact_info(0, contact(MemberSince=bad))[1]) == ["ContactDetails.MemberSince"], bad


def test_types_are_never_coerced_and_unknown_fields_are_refused():
    for name, bad in (("IsMember", "true"), ("Age", "42"), ("Age", 4.5), ("Age", True), ("FirstName", 7),
                      ("DoNotEmail", 1), ("Age", 2 ** 40)):
        assert fields(M.contact_info(0, contact(**{name: bad}))[1]) == [f"ContactDetails.{name}"], (name, bad)
    assert fields(M.contact_info(0, contact(Organisation="typo"))[1]) == ["ContactDetails.Organisation"]
    assert fields(M.contact_info(0, contact() | {"Phones": []})[1]) == ["Phones"]
    addr = contact() | {"Addresses": [{"City": "Lyon", "Latitude": 95.0}]}
    assert fields(M.contact_info(0, addr)[1]) == ["Addresses[0].Latitude"]


def test_every_seed_field_is_kept_with_its_type():
    details = {"ContactId": "C-9", "Age": 41, "ContactType": "Individual", "Birthday": "1985-04-02T00:00:00.000Z",
               "IsMember": True, "FirstName": "Grace", "LastName": "Hopper", "Bio": "<p>hi</p>" * 100}
    rec, probs = M.contact_info(0, {"ContactDetails": details, "PhoneNumbers": [
        {"FormattedNumber": "+1 555 010 0199", "IsSmsPreferred": True}], "EmailAddresses": [
        {"EmailAddress": "grace@example.org", "Type": "Work"}]})
    assert probs == []
    assert set(rec["ContactDetails"]) == set(M.CONTACT_DETAILS)
    assert rec["ContactDetails"]["Age"] == 41 and rec["ContactDetails"]["Title"] is None
    assert rec["PhoneNumbers"][0]["IsSmsPreferred"] is True
    assert json.loads(rec["EmailAddresses"][0]) == {"EmailAddress": "grace@example.org", "Type": "Work"}
    # opaque objects are flat
    nested = contact() | {"JobHistory": [{"Employer": {"Name": "x"}}]}
    assert fields(M.contact_info(0, nested)[1]) == ["JobHistory[0].Employer"]


def test_community_essentials_refuses_what_it_does_not_support():
    for name in ("Demographics", "Education", "JobHistory", "Orders"):
        probs = M.contact_info(0, contact() | {name: [{"A": 1}]}, essentials=True)[1]
        assert fields(probs) == [name] and "Community Essentials" in probs[0].reason
        assert M.contact_info(0, contact() | {name: [{"A": 1}]})[1] == []
    rec, probs = M.contact_info(0, contact() | {"Groups": [{"GroupId": "G1"}]}, essentials=True)
    assert probs == [] and rec["Groups"][0]["GroupKind"] == "security"
    assert M.contact_info(0, contact() | {"Groups": [{"GroupId": "G1"}]})[0]["Groups"][0]["GroupKind"] is None
    probs = M.list_object(0, json.loads(SEED_LIST)[0], essentials=True)[1]
    assert "Community Essentials does not support pushing Lists" in probs[0].reason


def test_limits_are_marked_as_limits():
    probs = M.contact_info(0, contact(FirstName="x" * (M.MAX_TEXT + 1)))[1]
    assert probs[0].limit and "the limit is" in probs[0].reason
    assert not M.contact_info(0, contact(IsMember="yes"))[1][0].limit
    too_many = {"ListId": "L", "Mode": "Add", "ContactIds": [str(i) for i in range(M.MAX_LIST_IDS + 1)]}
    assert M.list_object(0, too_many)[1][0].limit


def test_tenant_settings_go_through_the_one_strict_parser():
    import pytest

    from core.config import ConfigError, parse_config
    from core.routing import Routing

    doc = {"tenants": [{"code": "HUG", "community_essentials": True, "resolve_by": ["email"]}]}
    cfg = parse_config(doc)
    assert [k for k, _ in cfg.records()] == ["tenant:HUG"]
    routing = Routing(cfg_catalog := __import__("core.catalog", fromlist=["load_catalog"]).load_catalog())
    for k, v in cfg.records():
        routing.apply_record(k, v)
    assert routing.tenant("HUG").community_essentials and routing.tenant("HUG").resolve_by == ("email",)
    assert routing.tenant("OTHER").resolve_by == ("contact_key", "email", "phone") and cfg_catalog
    for bad, field in (({"code": "HUG", "community_essentials": "yes"}, "community_essentials"),
                       ({"code": "HUG", "resolve_by": ["email", "email"]}, "resolve_by"),
                       ({"code": "HUG", "resolve_by": ["fax"]}, "resolve_by"),
                       ({"code": "HUG", "colour": "red"}, None), ({"community_essentials": True}, "code")):
        with pytest.raises(ConfigError) as err:
            parse_config({"tenants": [bad]})
        if field:
            assert err.value.field == field
    with pytest.raises(ConfigError, match="unique"):
        parse_config({"tenants": [{"code": "HUG"}, {"code": "HUG"}]})
