"""The Alida source and its fake, without Kafka: settings, the token exchange (checked with
requests-oauthlib), paging, token expiry, 429, bad records, and the cursor's rules."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time

import pytest

from core.config import ConfigError, Source, parse_config
from sources.alida.fake import AlidaFake
from sources.framework import BadRecord, Cursor, Throttled
from sources.registry import SourceSettingsError, make_source, parse_source

SECRET = "alida-test-secret"


def source(base_url: str, **settings) -> Source:
    return Source("alida-t", "alida", "DEMO", True, {
        "region": "na1", "community": "demo-community", "client_id": "activity-sync",
        "client_secret_env": "ALIDA_TEST_SECRET", "api_key_env": "ALIDA_TEST_KEY", "base_url": base_url,
        "page_size": 1000, "customer_id_variable": "CustomerID", "backoff_s": 0.05, **settings})


@pytest.fixture
async def fake(monkeypatch):
    monkeypatch.setenv("ALIDA_TEST_SECRET", SECRET)
    monkeypatch.setenv("ALIDA_TEST_KEY", "x-api-key-test")
    f = AlidaFake(client_secret=SECRET, api_key="x-api-key-test")
    await f.start()
    yield f
    await f.stop()


async def read_all(poller, since=None) -> list[dict]:
    since = since or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    out = []
    async for page in poller.pages(since):
        out += await poller.activities(page.records)
    return out


# ----------------------------------------------------------------------------- settings

def test_settings_refuse_an_unknown_region_an_unknown_event_type_and_a_missing_secret_naming_the_field():
    ok = Source("a", "alida", "DEMO", True, {"region": "eu1", "community": "c", "client_id": "x",
                                            "client_secret_file": "/run/secrets/alida"})
    assert parse_source(ok).api_url == "https://api.eu1.alida.com"
    cases = [({"region": "us3"}, "settings.region"),
             ({"event_types": ["SurveyCompleted", "SurveyExploded"]}, "settings.event_types"),
             ({"client_secret_file": None}, "settings.client_secret_file"),
             ({"page_size": 1001}, "settings.page_size"),
             ({"every": "soon"}, "settings.every"),
             ({"client_secret": "hunter2hunter2"}, "settings.client_secret"),
             ({"start_from": "yesterday"}, "settings.start_from")]
    for change, field in cases:
        bad = Source("a", "alida", "DEMO", True, {**ok.settings, **change})
        with pytest.raises(SourceSettingsError) as e:
            parse_source(bad)
        assert e.value.field == field, (change, str(e.value))
        assert "source a" in str(e.value)


def test_config_documents_take_sources_and_refuse_bad_ones_naming_the_field():
    doc = {"sources": [{"name": "alida-demo", "kind": "alida", "tenant": "DEMO", "settings": {"region": "na1"}}]}
    cfg = parse_config(doc)
    assert [k for k, _ in cfg.records()] == ["source:alida-demo"]
    for bad, field in [({"name": "x", "kind": "alida"}, "tenant"), ({"name": "x", "tenant": "D"}, "kind"),
                       ({"name": "x", "kind": "alida", "tenant": "*"}, "tenant"),
                       ({"name": "x", "kind": "alida", "tenant": "D", "enabled": "yes"}, "enabled"),
                       ({"name": "x", "kind": "alida", "tenant": "D", "schedule": "5m"}, "schedule")]:
        with pytest.raises(ConfigError) as e:
            parse_config({"sources": [bad]})
        assert e.value.field == field, bad
    with pytest.raises(ConfigError):
        parse_config({"sources": [doc["sources"][0], doc["sources"][0]]})


def test_the_example_config_is_valid_and_its_check_runs_every_sources_model(tmp_path):
    from activity_sync.tools import check_config_file
    from core.errors import UsageError

    check_config_file("streams/data/example-alida.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - {name: a, kind: alida, tenant: DEMO, settings: {region: mars, community: c, "
                   "client_id: x, client_secret_env: S}}\n")
    with pytest.raises(UsageError, match="settings.region"):
        check_config_file(bad)


# ----------------------------------------------------------------------------- the fake, independently

async def test_requests_oauthlib_gets_a_token_from_the_fake_and_the_fake_refuses_wrong_credentials(tmp_path):
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session

    fake = AlidaFake(client_secret=SECRET, api_key="x-api-key-test")
    await fake.start(tls=True, ca_file=tmp_path / "ca.pem")  # OAuth 2 over HTTPS only, as requests-oauthlib insists

    def fetch(secret):
        session = OAuth2Session(client=BackendApplicationClient(client_id="activity-sync"))
        return session.fetch_token(f"{fake.base_url}/oauth2/token", client_id="activity-sync", client_secret=secret,
                                   headers={"x-api-key": "x-api-key-test"}, verify=fake.ca_file)

    try:
        token = await asyncio.to_thread(fetch, SECRET)
        assert token["token_type"] == "Bearer" and token["expires_in"] == 3600
        assert fake.token_valid(token["access_token"])
        with pytest.raises(Exception, match="invalid_client"):
            await asyncio.to_thread(fetch, "wrong")
    finally:
        await fake.stop()


async def test_the_fake_pages_filters_projects_and_refuses_what_the_api_refuses(fake):
    import aiohttp

    fake.seed(45, members=5)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{fake.base_url}/oauth2/token", data={"grant_type": "client_credentials"},
                          headers={"x-api-key": "x-api-key-test",
                                   "Authorization": "Basic " + base64.b64encode(f"activity-sync:{SECRET}".encode()).decode()}) as r:
            token = (await r.json())["access_token"]
        h = {"Authorization": f"Bearer {token}"}
        app = f"{fake.base_url}/v1/applications/demo-community"
        async with s.get(f"{app}/memberevents", headers=h) as r:
            body = await r.json()
        assert len(body["items"]) == 20 and body["meta"] == {"limit": 20, "offset": 0, "count": 45}
        assert {link["rel"] for link in body["links"]} == {"first", "last", "next"}
        nxt = next(link["href"] for link in body["links"] if link["rel"] == "next")
        async with s.get(nxt, headers=h) as r:
            assert (await r.json())["meta"]["offset"] == 20
        async with s.get(f"{app}/memberevents", headers=h, params={"limit": "1001"}) as r:
            assert r.status == 400
        async with s.get(f"{app}/memberevents", headers=h, params={"q": "memberId~x"}) as r:
            assert r.status == 400
        async with s.get(f"{app}/memberevents", headers={}) as r:
            assert r.status == 401
        async with s.get(f"{fake.base_url}/v1/applications/other/memberevents", headers=h) as r:
            assert r.status == 404
        aid = next(iter(fake.activities))
        async with s.get(f"{app}/activities/{aid}", headers=h, params={"fields": "id,name,href"}) as r:
            act = await r.json()
        assert set(act) == {"id", "name", "href"} and "/c/services/api/v1/tenants/" in act["href"]
        fake.hidden.add(aid)
        async with s.get(f"{app}/activities/{aid}", headers=h) as r:
            assert r.status == 404


# ----------------------------------------------------------------------------- the source against it

async def test_paging_reads_every_event_once_even_when_events_are_updated_while_it_pages(fake):
    fake.seed(2500, members=200, spread_s=600)
    poller = make_source(source(fake.base_url))
    await poller.start()
    try:
        seen: list[str] = []
        pages = 0
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        first_ids = [e["id"] for e in list(fake.events.values())[:5]]
        async for page in poller.pages(since):
            pages += 1
            seen += [r["id"] for r in page.records]
            if pages == 1:  # updated mid-poll: they move to the end of the sort; no later event may be skipped
                for i in first_ids:
                    fake.update_event(i)
        assert pages >= 3
        assert set(seen) == set(fake.events) and len(seen) == 2500 + 5
        assert {p["query"]["limit"] for p in fake.api_requests if p["path"].endswith("/memberevents")} == {"1000"}
    finally:
        await poller.stop()


async def test_an_expired_token_mid_run_costs_one_refresh_and_loses_nothing(fake):
    fake.seed(300, members=10)
    poller = make_source(source(fake.base_url, page_size=100))
    await poller.start()
    try:
        n = 0
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
        async for page in poller.pages(since):
            n += len(await poller.activities(page.records))
            if n == 100:
                fake.control({"expire_tokens": True})
        assert n == 300
        assert fake.token_requests == 2
        assert sum(1 for r in fake.api_requests if r["status"] == 401) == 1
    finally:
        await poller.stop()


async def test_a_429_is_honoured_for_its_retry_after_and_a_5xx_is_retried(fake):
    fake.seed(30, members=3)
    poller = make_source(source(fake.base_url))
    await poller.start()
    try:
        await poller.http.tokens.get()
        fake.control({"throttle": {"retry_after": 1, "count": 1}})
        t0 = time.monotonic()
        acts = await read_all(poller)
        assert len(acts) == 30 and time.monotonic() - t0 >= 1.0
        assert fake.early == 0  # nothing came while the Retry-After ran
        fake.control({"fail": {"status": 503, "count": 2}})
        assert len(await read_all(poller)) == 30
        fake.control({"throttle": {"retry_after": 0.05, "count": 50}})
        with pytest.raises(Throttled):
            await read_all(poller)  # more 429s than max_retries: the poll gives up, classed
        assert poller.http.retries > 6
    finally:
        await poller.stop()


async def test_events_map_to_activities_with_identity_and_bad_records_are_classed(fake):
    mid = fake.add_member("rosa.t@example.org", "Rosa", "Tester", CustomerID="C-77")
    aid = fake.add_activity("Annual member survey")
    hidden = fake.add_activity("Internal pilot", hidden=True)
    good = fake.add_event(mid, aid, "SurveyCompleted")
    dark = fake.add_event(mid, hidden, "SurveyInvited")
    skipped = fake.add_event(mid, aid, "Complaint")
    unknown = fake.add_event(mid, aid, "SurveyTeleported")
    nodate = fake.add_event(mid, aid, "SurveyStarted", eventDate="last tuesday")
    poller = make_source(source(fake.base_url, event_types=["SurveyCompleted", "SurveyInvited", "SurveyStarted"]))
    await poller.start()
    try:
        by_id = {}
        async for page in poller.pages(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)):
            for r, a in zip(page.records, await poller.activities(page.records)):
                by_id[r["id"]] = a
    finally:
        await poller.stop()
    a = by_id[good["id"]]
    assert a["ActivityKey"] == f"alida:DEMO:demo-community:{good['id']}" and a["ActivityCode"] == "AlidaSurveyCompleted"
    assert a["MemberExternalKey"] == "C-77" and a["MemberEmail"] == "rosa.t@example.org"
    assert a["ActivityDescription"] == 'Rosa Tester completed "Annual member survey"'
    assert a["LinkUrl"].startswith("https://api.na1.alida.com/c/services/api/v1/tenants/")
    assert by_id[dark["id"]]["ActivityDescription"] == "Rosa Tester was invited to an activity"
    assert "ActivityName" not in by_id[dark["id"]]
    assert by_id[skipped["id"]] is None
    assert isinstance(by_id[unknown["id"]], BadRecord) and by_id[unknown["id"]].reason == "UnknownEventType"
    assert isinstance(by_id[nodate["id"]], BadRecord) and by_id[nodate["id"]].reason == "BadDate"
    # each member and activity looked up once
    assert sum(1 for r in fake.api_requests if "/members/" in r["path"]) == 1


def test_the_cursor_skips_what_was_sent_takes_late_records_in_the_overlap_and_updates():
    c = Cursor()
    c.advance("2026-12-01T10:00:00.0000000Z", "b")
    c.advance("2026-12-01T10:00:00.0000000Z", "a")
    assert (c.updated, c.id) == ("2026-12-01T10:00:00.0000000Z", "b")
    assert c.seen("2026-12-01T10:00:00.0000000Z", "a") and c.seen("2026-12-01T10:00:00.0000000Z", "b")
    assert not c.seen("2026-12-01T10:00:00.0000000Z", "c")      # after b at the same time: new
    assert not c.seen("2026-12-01T09:59:30.0000000Z", "late")   # committed late, inside the overlap: taken
    assert not c.seen("2026-12-01T10:05:00.0000000Z", "a")      # a updated: sent again
    back = Cursor.from_record(json.loads(json.dumps(c.record())))
    assert back.seen("2026-12-01T10:00:00.0000000Z", "a")
    c.advance("2026-12-01T11:00:00.0000000Z", "z")
    c.prune(60)
    assert set(c.recent) == {"z"}
