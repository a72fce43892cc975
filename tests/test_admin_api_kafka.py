"""The admin API against a real broker: access control, validation naming the field, endpoints and
subscriptions written to activity.config (and read back), filters, previews, delete with its
count, tenant scoping and the audit trail."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import produce, seed_events

from activity_sync.admin.api import make_app
from activity_sync.admin.keys import ApiKey, authenticate, parse_keys
from activity_sync.admin.state import AdminState
from core.catalog import load_catalog
from core.routing import Routing
from core.topics import Topics

ADMIN = ApiKey("ops", "admin", ("*",), "admin-secret-0123456789")
READ = ApiKey("viewer", "read", ("*",), "read-secret-0123456789ab")
HUG = ApiKey("hug", "admin", ("HUG",), "hug-secret-0123456789abc")
ACME = ApiKey("acme-ro", "read", ("ACME",), "acme-secret-0123456789abc")
ACME_ADMIN = ApiKey("acme", "admin", ("ACME",), "acme-admin-secret-0123456789")


def auth(key: ApiKey) -> dict:
    return {"Authorization": f"Bearer {key.secret}"}


@pytest.fixture
async def client(settings):
    state = AdminState(settings, load_catalog())
    await state.start()
    c = TestClient(TestServer(make_app(state, [ADMIN, READ, HUG, ACME, ACME_ADMIN])))
    await c.start_server()
    c.state = state
    yield c
    await c.close()
    await state.stop()


WEBHOOK = {"url": "http://127.0.0.1:9/none"}


async def create(client, key=ADMIN, **body):
    doc = {"name": "crm2", "provider_type": "membership", "provider": "webhook", "tenant": "DEMO",
           "settings": WEBHOOK, **body}
    return await client.post("/api/v1/endpoints", json=doc, headers=auth(key))


async def test_keys_are_required_and_roles_and_tenants_respected(client):
    assert (await client.get("/api/v1/endpoints")).status == 401
    assert (await client.get("/api/v1/endpoints", headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.get("/api/v1/endpoints", headers={"X-API-Key": READ.secret})).status == 200
    r = await create(client, READ)
    assert r.status == 403 and "read-only" in (await r.json())["error"]
    r = await create(client, HUG, tenant="ACME")
    assert r.status == 403 and (await r.json())["field"] == "tenant"
    assert (await create(client, HUG, name="hug-crm", tenant="HUG")).status == 201
    assert (await create(client, ADMIN, name="acme-crm", tenant="ACME")).status == 201
    names = {e["name"] for e in await (await client.get("/api/v1/endpoints", headers=auth(HUG))).json()}
    assert "hug-crm" in names and "acme-crm" not in names
    assert (await client.get("/api/v1/endpoints/acme-crm", headers=auth(HUG))).status == 404
    assert (await client.delete("/api/v1/endpoints/acme-crm", headers=auth(HUG))).status == 404
    audit = await (await client.get("/api/v1/audit", headers=auth(HUG))).json()
    assert [a["target"] for a in audit] == ["hug-crm"] and audit[0]["key_id"] == "hug" and audit[0]["tenants"] == ["HUG"]
    full = await (await client.get("/api/v1/audit", headers=auth(ADMIN))).json()
    assert {a["target"] for a in full} >= {"hug-crm", "acme-crm"}


async def test_cross_site_and_non_json_changes_are_refused(client):
    r = await client.post("/api/v1/endpoints", data="name=x", headers={**auth(ADMIN),
                                                                       "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400
    r = await client.post("/api/v1/endpoints", json={"name": "x"}, headers={**auth(ADMIN), "Origin": "https://evil.example"})
    assert r.status == 403 and "cross-site" in (await r.json())["error"]
    page = await client.get("/")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"] and page.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("body, field, text", [
    ({"name": ""}, "name", "name is required"),
    ({"name": "twice"}, "name", "exists already"),
    ({"provider": "nope"}, "provider", "unknown provider"),
    ({"provider_type": "other"}, "provider_type", "provider_type must be one of"),
    ({"settings": {"url": "http://x", "batch_size": 100000}}, "settings.batch_size", "limit of 1000"),
    ({"settings": {"url": "http://x", "hmac_secret": "s3cret-inline"}}, "settings.hmac_secret", "looks like a secret"),
    ({"tenant": None}, "tenant", "tenant is required"),
    ({"subscriptions": ["NoSuchActivity"]}, "subscriptions", "unknown activity code"),
])
async def test_endpoint_validation_names_the_field(client, body, field, text):
    if body.get("name") == "twice":
        assert (await create(client, name="twice")).status == 201
    r = await create(client, **body)
    doc = await r.json()
    assert r.status in (409, 422) and doc["field"] == field and text in doc["error"], doc


async def test_endpoint_lifecycle_subscriptions_filters_preview_and_delete(client, settings):
    r = await create(client, subscriptions=["DiscussionMessageCreate", "LibraryEntryView"])
    ep = await r.json()
    assert r.status == 201 and ep["subscriptions"] == {"active": 2, "inactive": 0} and ep["enabled"] is True
    # written to activity.config: a Routing fed from the topic sees it as a worker would
    from core.configtable import ConfigTable
    routing = Routing(load_catalog())
    table = ConfigTable(settings.kafka, Topics(settings.topic_prefix).config, routing)
    await table.start()
    await asyncio.wait_for(table.wait_ready(), 30)
    await table.stop()
    assert routing.endpoints["crm2"].settings == WEBHOOK and "subscription:LibraryEntryView:crm2" in routing.subscriptions
    # edit a subscription: template errors name the field, the write-back code length is checked
    put = lambda body: client.put("/api/v1/subscriptions/LibraryEntryView/crm2", json=body, headers=auth(ADMIN))  # noqa: E731
    r = await put({"description": "{AccessedByDisplayName} read {NoSuchVar}"})
    doc = await r.json()
    assert r.status == 422 and doc["field"] == "description" and "NoSuchVar" in doc["error"]
    r = await put({"description": "x" * 501})
    assert r.status == 422 and "at most 500" in (await r.json())["error"]
    r = await put({"writeback_code1": "C" * 101})
    assert r.status == 422 and (await r.json())["field"] == "writeback_code1"
    r = await put({"enabled": False, "description": "{AccessedByDisplayName} viewed {ParentName}",
                   "writeback_code1": "LIB", "writeback_code2": "VIEW"})
    assert r.status == 200 and (await r.json())["writeback_codes"] == ["LIB", "VIEW"]
    ep = await (await client.get("/api/v1/endpoints/crm2", headers=auth(ADMIN))).json()
    assert ep["subscriptions"] == {"active": 1, "inactive": 1}
    # filters: name substring (any case), endpoint, category, subscribed / unsubscribed
    q = lambda qs: client.get(f"/api/v1/subscriptions?{qs}", headers=auth(READ))  # noqa: E731
    rows = await (await q("name=LIBRARYentry")).json()
    assert [r["activity_code"] for r in rows] == ["LibraryEntryView"]
    lib = rows[0]["endpoints"][0]
    assert lib == {"endpoint": "crm2", "enabled": False, "endpoint_enabled": True,
                   "description": "{AccessedByDisplayName} viewed {ParentName}", "writeback_code1": "LIB",
                   "writeback_code2": "VIEW"}
    subscribed = {r["activity_code"] for r in await (await q("endpoint=crm2&subscribed=subscribed")).json()}
    assert subscribed == {"DiscussionMessageCreate", "LibraryEntryView"}
    unsub = {r["activity_code"] for r in await (await q("subscribed=unsubscribed&category=Discussions")).json()}
    assert "DiscussionMessageCreate" not in unsub and all(c for c in unsub)
    assert (await q("subscribed=maybe")).status == 422
    # preview against a real recent activity of that code
    await produce(settings, Topics(settings.topic_prefix).enriched, [])  # nothing yet: a note, not an error
    r = await client.post("/api/v1/preview", json={"activity_code": "LibraryEntryView",
                                                   "description": "{AccessedByDisplayName} viewed {ParentName}"},
                          headers=auth(READ))
    assert r.status == 200 and (await r.json())["rendered"] is None
    # disable, then delete: the dry run says how many subscriptions go with it
    r = await client.patch("/api/v1/endpoints/crm2", json={"enabled": False}, headers=auth(ADMIN))
    assert r.status == 200 and (await r.json())["enabled"] is False
    dry = await (await client.delete("/api/v1/endpoints/crm2?dry_run=true", headers=auth(ADMIN))).json()
    assert dry == {"endpoint": "crm2", "subscriptions": 2, "dry_run": True}
    done = await (await client.delete("/api/v1/endpoints/crm2", headers=auth(ADMIN))).json()
    assert done["subscriptions"] == 2
    assert (await client.get("/api/v1/endpoints/crm2", headers=auth(ADMIN))).status == 404
    rows = await (await q("endpoint=crm2&subscribed=subscribed")).json()
    assert rows == []
    actions = [a["action"] for a in await (await client.get("/api/v1/audit", headers=auth(ADMIN))).json()]
    assert actions[:2] == ["delete endpoint", "update endpoint"] and "put subscription" in actions


async def test_preview_renders_the_newest_activity_of_that_code(client, settings, stream_worker):
    import json as _json
    from conftest import publish_config_file
    await publish_config_file(settings, settings.config_path)
    stream_worker()
    ev = dict(seed_events()[2], ActivityKey="preview-0001")
    await produce(settings, Topics(settings.topic_prefix).raw, [(None, _json.dumps(ev).encode())])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while ("DEMO", "LibraryEntryView") not in client.state.recent and loop.time() < deadline:
        await asyncio.sleep(0.3)
    r = await client.post("/api/v1/preview", json={"activity_code": "LibraryEntryView",
                                                   "description": "{AccessedByDisplayName} viewed \"{ParentName}\""},
                          headers=auth(READ))
    doc = await r.json()
    assert doc["activity_key"] == "preview-0001"
    assert doc["rendered"] == f'{ev["AccessedByDisplayName"]} viewed "{ev["ParentName"]}"'


def test_keys_file_format_and_constant_time_lookup():
    keys = parse_keys("# comment\nops admin * 0123456789abcdef0123\nhug read HUG,HUG2 fedcba9876543210fedc\n", "f")
    assert [(k.id, k.role, k.tenants) for k in keys] == [("ops", "admin", ("*",)), ("hug", "read", ("HUG", "HUG2"))]
    assert authenticate(keys, "fedcba9876543210fedc").id == "hug" and authenticate(keys, "nope") is None
    assert "fedcba" not in repr(keys[1])
    with pytest.raises(ValueError, match="16 characters"):
        parse_keys("x admin * short", "f")


async def wait_recent(client, *where, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not all(w in client.state.recent for w in where):
        assert loop.time() < deadline, f"not enriched in time: {where}"
        await asyncio.sleep(0.3)


async def test_a_tenant_key_never_sees_another_tenants_data(client, settings, stream_worker):
    """The preview renders only activities of tenants the key sees (and of the endpoint's own), and no
    route answers a tenant key with another tenant's data, counts or endpoint names."""
    import json as _json
    assert (await create(client, ADMIN, name="demo-crm", tenant="DEMO", subscriptions=["LibraryEntryView"])).status \
        == 201
    assert (await create(client, ADMIN, name="acme-crm", tenant="ACME", subscriptions=["LibraryEntryView"])).status \
        == 201
    stream_worker()
    seed = seed_events()[2]
    acme = dict(seed, ActivityKey="acme-0001", TenantCode="ACME", AccessedByDisplayName="Wile Coyote")
    demo = dict(seed, ActivityKey="demo-0001", AccessedByDisplayName="Dana Demo-Member")
    raw = Topics(settings.topic_prefix).raw
    await produce(settings, raw, [(None, _json.dumps(acme).encode())])
    await wait_recent(client, ("ACME", "LibraryEntryView"))
    await produce(settings, raw, [(None, _json.dumps(demo).encode())])  # the newest of the code: DEMO's
    await wait_recent(client, ("DEMO", "LibraryEntryView"))
    template = {"activity_code": "LibraryEntryView", "description": "{AccessedByDisplayName} / {TenantCode}"}

    async def preview(key, **extra):
        r = await client.post("/api/v1/preview", json={**template, **extra}, headers=auth(key))
        return r.status, await r.json()

    assert await preview(ACME) == (200, {"activity_code": "LibraryEntryView", "rendered": "Wile Coyote / ACME",
                                         "activity_key": "acme-0001", "note": None})
    assert (await preview(ACME, endpoint="acme-crm"))[1]["activity_key"] == "acme-0001"
    assert (await preview(ACME, endpoint="demo-crm"))[0] == 404  # another tenant's endpoint: not there
    assert (await preview(ADMIN, endpoint="acme-crm"))[1]["activity_key"] == "acme-0001"  # the endpoint's tenant
    assert (await preview(ADMIN))[1]["rendered"] == "Dana Demo-Member / DEMO"
    # every read route, with the ACME key: nothing of DEMO's
    secrets_of_demo = ("demo-crm", "Dana Demo-Member", "demo-0001")
    for path in ("/api/v1/endpoints", "/api/v1/endpoints/acme-crm", "/api/v1/subscriptions",
                 "/api/v1/subscriptions?subscribed=subscribed", "/api/v1/status", "/api/v1/dead-letters",
                 "/api/v1/audit", "/api/v1/activities"):
        r = await client.get(path, headers=auth(ACME))
        text = await r.text()
        assert r.status == 200, (path, text)
        assert not [s for s in secrets_of_demo if s in text], (path, text[:2000])
    # and every GET route of the OpenAPI document, its path parameters filled with DEMO's names: refused,
    # or answered without anything of DEMO's (a route added later is swept too)
    from activity_sync.admin.openapi import document

    fill = {"name": "demo-crm", "tenant": "DEMO", "member": "demo-0001", "id": "demo-list"}
    swept = 0
    for path, ops in document()["paths"].items():
        if "get" not in ops or not path.startswith("/api/v1/"):
            continue
        params = [*ops.get("parameters", []), *ops["get"].get("parameters", [])]
        url = path.format(**fill)
        query = "&".join(f"{q['name']}={fill[q['name']]}" for q in params if q["in"] == "query" and q.get("required"))
        r = await client.get(url + (f"?{query}" if query else ""), headers=auth(ACME))
        text = await r.text()
        assert r.status in (200, 403, 404), (url, r.status, text[:500])
        asked = url + query  # a refusal may name what was asked for; nothing else of DEMO's
        assert not [s for s in secrets_of_demo if s in text and s not in asked], (url, text[:2000])
        if r.status == 200:
            assert not [s for s in secrets_of_demo if s in text], (url, text[:2000])
        swept += 1
    assert swept >= 20
    rows = await (await client.get("/api/v1/subscriptions?subscribed=subscribed", headers=auth(ACME))).json()
    assert [e["endpoint"] for row in rows for e in row["endpoints"]] == ["acme-crm"]
    r = await client.post("/api/v1/replay", json={"endpoint": "acme-crm", "dry_run": True}, headers=auth(ACME))
    assert r.status == 200 and not [s for s in secrets_of_demo if s in await r.text()]
    assert (await client.post("/api/v1/replay", json={"dry_run": True}, headers=auth(ACME))).status == 422
    # the uniqueness message does not tell a tenant key that another tenant's endpoint has that name
    r = await create(client, ACME_ADMIN, name="demo-crm", tenant="ACME")
    doc = await r.json()
    assert r.status == 409 and doc["field"] == "name" and "exists" not in doc["error"], doc
    r = await create(client, ADMIN, name="demo-crm", tenant="DEMO")
    assert r.status == 409 and "exists already" in (await r.json())["error"]


async def test_replay_takes_exactly_the_rows_selected_across_endpoints_and_nothing_for_none(client, settings):
    """Issue 18, replay: rows of two endpoints selected together are planned (and replayed) as selected;
    an empty selection replays nothing, where it used to replay the whole endpoint."""
    from core import headers as H
    from sinks.contract import FatalError

    for name in ("left", "right"):
        assert (await create(client, name=name)).status == 201
    t = Topics(settings.topic_prefix)
    for ep, key in (("left", "l-1"), ("left", "l-2"), ("right", "r-1")):
        await produce(settings, t.dead, [(b"k", b"value")], headers=H.dead_letter(
            "deliver", (t.enriched, 0, 1), FatalError("HTTP 400: refused"), endpoint=ep, tenant="DEMO",
            activity_key=key))

    async def replay(**body):
        r = await client.post("/api/v1/replay", json={"dry_run": True, **body}, headers=auth(ADMIN))
        assert r.status == 200, await r.text()
        return await r.json()

    both = await replay(rows=[{"endpoint": "left", "activity_key": "l-1"}, {"endpoint": "right", "activity_key": "r-1"}])
    assert both["would_replay"] == 2 and sorted((i["endpoint"], i["activity_key"]) for i in both["items"]) == \
        [("left", "l-1"), ("right", "r-1")]
    for nothing in ({"rows": []}, {"endpoint": "left", "keys": []}):
        assert (await replay(**nothing))["would_replay"] == 0, nothing
    assert (await replay(endpoint="left"))["would_replay"] == 2  # all of an endpoint, asked for explicitly
    r = await client.post("/api/v1/replay", json={"rows": [{"endpoint": "left", "activity_key": "l-1"}],
                                                  "dry_run": True}, headers=auth(ACME))
    assert r.status in (403, 404)  # a tenant key does not reach another tenant's endpoint through rows
    done = await client.post("/api/v1/replay", json={"rows": [{"endpoint": "right", "activity_key": "r-1"}],
                                                     "dry_run": False}, headers=auth(ADMIN))
    assert (await done.json())["replayed"] == 1


async def test_the_sources_status_shows_each_sources_position_and_lag_to_its_tenants_only(client, settings):
    """A polling source's cursor (source.offsets) on the Status tab's API; a key of another tenant sees none."""
    import json as _json
    import time as _time

    from core.config import parse_config

    topics = Topics(settings.topic_prefix)
    cfg = parse_config({"sources": [{"name": "alida-acme", "kind": "alida", "tenant": "ACME", "settings": {}},
                                    {"name": "alida-hug", "kind": "alida", "tenant": "HUG", "settings": {}}]})
    await produce(settings, topics.config, [(k.encode(), v) for k, v in cfg.records()])
    cursor = {"source": "alida-acme", "updated": "2026-12-01T10:00:00.0000000Z", "id": "ev-9", "records": 40,
              "activities": 38, "caught_up_at": _time.time(), "recent": {}}
    await produce(settings, topics.source_offsets, [(b"alida-acme", _json.dumps(cursor).encode())])

    async def rows(key):
        for _ in range(100):
            r = await client.get("/api/v1/sources/status", headers=auth(key))
            assert r.status == 200
            body = await r.json()
            if any(x["cursor"] for x in body) or key is HUG and body:
                return body
            await asyncio.sleep(0.1)
        return body

    everything = await rows(ADMIN)
    assert [x["source"] for x in everything] == ["alida-acme", "alida-hug"]
    acme = (await rows(ACME))
    assert [x["source"] for x in acme] == ["alida-acme"]
    assert acme[0]["cursor"] == "2026-12-01T10:00:00.0000000Z" and acme[0]["cursor_id"] == "ev-9"
    assert acme[0]["lag_s"] > 3600 and acme[0]["records"] == 40 and acme[0]["activities"] == 38
    hug = await rows(HUG)
    assert [x["source"] for x in hug] == ["alida-hug"] and hug[0]["cursor"] is None
    assert (await client.get("/api/v1/sources/status")).status == 401


async def test_the_sync_report_shows_each_syncs_runs_to_its_tenants_only(client, settings):
    """The Action Network <-> Mobile Commons report (anmc.report) on the admin API: a key of another
    tenant sees none of it."""
    import json as _json

    from core.config import parse_config

    def sync(name, tenant):
        return {"name": name, "tenant": tenant, "action_network_source": f"{name}-an",
                "mobile_commons_source": f"{name}-mc", "action_network_endpoint": f"{name}-an-out",
                "mobile_commons_endpoint": f"{name}-mc-out", "optin_field": "mobile_opt_in"}

    doc = {"sources": [], "endpoints": [], "anmc": []}
    for name, tenant in (("acme-sync", "ACME"), ("hug-sync", "HUG")):
        doc["sources"] += [{"name": f"{name}-an", "kind": "actionnetwork", "tenant": tenant, "settings": {}},
                           {"name": f"{name}-mc", "kind": "mobilecommons", "tenant": tenant, "settings": {}}]
        doc["endpoints"] += [{"name": f"{name}-an-out", "provider": "actionnetwork", "tenant": tenant},
                             {"name": f"{name}-mc-out", "provider": "mobilecommons", "tenant": tenant}]
        doc["anmc"].append(sync(name, tenant))
    topics = Topics(settings.topic_prefix)
    await produce(settings, topics.config, [(k.encode(), v) for k, v in parse_config(doc).records()
                                            if k.startswith("anmc:")])
    lines = [{"sync": "acme-sync", "side": "action_network", "run": "acme-sync-an:1700000000", "profile": "…0143",
              "outcome": "subscribed"},
             {"source": "acme-sync-an", "side": "action_network", "run": "acme-sync-an:1700000000", "records": 2,
              "changes": 1, "summary": True},
             {"sync": "hug-sync", "side": "mobile_commons", "run": "hug-sync-mc:1700000100", "profile": "…0999",
              "outcome": "opted out"}]
    await produce(settings, topics.anmc_report, [(b"x", _json.dumps(x).encode()) for x in lines])

    async def runs(key):
        for _ in range(100):
            r = await client.get("/api/v1/anmc/report", headers=auth(key))
            assert r.status == 200
            body = await r.json()
            if len(body) >= (2 if key is ADMIN else 1):
                return body
            await asyncio.sleep(0.1)
        return body

    assert [r["sync"] for r in await runs(ADMIN)] == ["hug-sync", "acme-sync"]
    acme = await runs(ACME)
    assert [r["sync"] for r in acme] == ["acme-sync"] and acme[0]["outcomes"] == {"subscribed": 1}
    assert acme[0]["read"] == 2 and "0999" not in _json.dumps(acme)
    assert [r["sync"] for r in await runs(HUG)] == ["hug-sync"]
    assert (await client.get("/api/v1/anmc/report?limit=0", headers=auth(ADMIN))).status == 422


async def test_scores_report_cards_and_models_are_tenant_scoped(client, settings):
    """The Scores routes: a key of another tenant gets 404 for the report card and member pages, 403 for
    the model; a read-only key cannot change a model; the card's numbers come from member.scores."""
    import datetime as _dt

    from core.avro import SingleObjectCodec
    from core.scoring import apply, new_state, parse_model, score_record

    model = parse_model({"tenant": "HUG", "points": {"LibraryEntryView": 2}})
    s, _ = apply(new_state("HUG", "H-1"), model, "x1", "LibraryEntryView", "Resource Libraries",
                 _dt.datetime(2026, 11, 3, tzinfo=_dt.timezone.utc))
    topics = Topics(settings.topic_prefix)
    await produce(settings, topics.config, [(model.key().encode(), json.dumps(model.record()).encode())])
    await produce(settings, topics.member_scores, [(b"HUG|H-1", SingleObjectCodec(name="member_score").encode(
        score_record(s, model, 0)))])
    for _ in range(100):
        if client.state.member_scores.get("HUG"):
            break
        await asyncio.sleep(0.1)
    r = await client.get("/api/v1/scores/report?tenant=HUG&period=2026-11", headers=auth(HUG))
    card = await r.json()
    assert r.status == 200 and card["points"]["now"] == 2 and card["active_members"]["now"] == 1
    assert (await client.get("/api/v1/scores/report?tenant=HUG&period=2026-11", headers=auth(ACME))).status == 404
    assert (await client.get("/api/v1/scores/members/H-1?tenant=HUG", headers=auth(ACME))).status == 404
    assert [t["tenant"] for t in await (await client.get("/api/v1/scores", headers=auth(ACME))).json()] == []
    assert (await client.get("/api/v1/scores/report?tenant=HUG&period=11-2026", headers=auth(HUG))).status == 422
    assert (await client.put("/api/v1/scores/models/HUG", json={"points": {}}, headers=auth(ACME_ADMIN))).status == 403
    assert (await client.put("/api/v1/scores/models/HUG", json={"points": {}}, headers=auth(READ))).status == 403
    r = await client.put("/api/v1/scores/models/HUG", json={"points": {"LibraryEntryView": 3}}, headers=auth(HUG))
    assert r.status == 200 and (await r.json())["points"] == {"LibraryEntryView": 3.0}
    r = await client.put("/api/v1/scores/models/HUG", json={"points": {"X": "lots"}}, headers=auth(HUG))
    assert r.status == 422 and (await r.json())["field"].startswith("points")


async def test_activity_codes_are_added_changed_and_retired_by_a_key_of_every_tenant(client):
    """Issue 18: activity codes from the API, checked by the parser the workers use, audited; a tenant
    key may not change them (they are shared by every tenant); retiring one a subscription holds is refused."""
    body = {"category": "Events", "customer_key": ["AttendeeExternalKey"],
            "properties": ["AttendeeExternalKey", "WebinarTitle"], "description": "{AttendeeExternalKey} attended"}
    r = await client.put("/api/v1/activities/WebinarAttend", json=body, headers=auth(HUG))
    assert r.status == 403 and "every tenant" in (await r.json())["error"]
    r = await client.put("/api/v1/activities/WebinarAttend", json=body, headers=auth(READ))
    assert r.status == 403
    for bad, field in (({**body, "category": "Nope"}, "category"), ({**body, "properties": ["has space"]}, "properties"),
                       ({**body, "description": "{Nope}"}, "description"), ({**body, "colour": "red"}, "colour")):
        r = await client.put("/api/v1/activities/WebinarAttend", json=bad, headers=auth(ADMIN))
        doc = await r.json()
        assert r.status == 422 and doc["field"] == field, doc
    r = await client.put("/api/v1/activities/bad%20code", json=body, headers=auth(ADMIN))
    assert r.status == 422 and (await r.json())["field"] == "code"
    r = await client.put("/api/v1/activities/WebinarAttend", json=body, headers=auth(ADMIN))
    got = await r.json()
    assert r.status == 200 and got["category"] == "Events" and got["origin"] == "defined", got
    assert "WebinarTitle" in got["merge_variables"] and got["default_description"] == "{AttendeeExternalKey} attended"
    codes = {a["activity_code"]: a for a in await (await client.get("/api/v1/activities", headers=auth(HUG))).json()}
    assert codes["WebinarAttend"]["customer_key"] == ["AttendeeExternalKey"]
    assert "Events" in await (await client.get("/api/v1/categories", headers=auth(HUG))).json()
    # a subscription uses it (with the code's default description), so it cannot be retired yet
    assert (await create(client, ADMIN, name="webinars", tenant="HUG", subscriptions=["WebinarAttend"])).status == 201
    subs = await (await client.get("/api/v1/subscriptions?name=WebinarAttend", headers=auth(ADMIN))).json()
    assert subs[0]["endpoints"][0]["description"] == "{AttendeeExternalKey} attended"
    r = await client.delete("/api/v1/activities/WebinarAttend", headers=auth(ADMIN))
    assert r.status == 409 and "still subscribed" in (await r.json())["error"]
    assert (await client.delete("/api/v1/subscriptions/WebinarAttend/webinars", headers=auth(ADMIN))).status == 200
    r = await client.delete("/api/v1/activities/WebinarAttend", headers=auth(ADMIN))
    assert r.status == 200 and (await r.json())["retired"] == "WebinarAttend"
    codes = {a["activity_code"] for a in await (await client.get("/api/v1/activities", headers=auth(ADMIN))).json()}
    assert "WebinarAttend" not in codes
    # a bundled code is changed, then goes back to its bundled definition
    r = await client.put("/api/v1/activities/LibraryEntryView", json={"category": "Common"}, headers=auth(ADMIN))
    assert r.status == 200 and (await r.json())["category"] == "Common"
    assert (await client.delete("/api/v1/activities/LibraryEntryView", headers=auth(ADMIN))).status == 200
    codes = {a["activity_code"]: a for a in await (await client.get("/api/v1/activities", headers=auth(ADMIN))).json()}
    assert codes["LibraryEntryView"]["category"] == "Resource Libraries" and codes["LibraryEntryView"]["origin"] == "bundled"
    r = await client.delete("/api/v1/activities/LibraryEntryView", headers=auth(ADMIN))
    assert r.status == 409 and "bundled" in (await r.json())["error"]
    audit = [a for a in await (await client.get("/api/v1/audit", headers=auth(ADMIN))).json()
             if a["target"] == "activity:WebinarAttend"]
    assert [a["action"] for a in audit] == ["retire activity code", "create activity code"]
    assert not [a for a in await (await client.get("/api/v1/audit", headers=auth(HUG))).json()
                if a["target"].startswith("activity:")]  # shared changes are not a tenant key's audit
