"""Community lists and the Online Community Connection on the real broker and the fake Thrive Marketing
Professional: activities through the stream worker and the list stage into list.members; the fake
pulls the feed served by the admin server (Refresh, Sync, resync, hourly sync of a running campaign),
and the reconciliation explains the count difference."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from conftest import produce, publish_config_file, seed_events, worker_env

from activity_sync.admin.api import make_app
from activity_sync.admin.keys import ApiKey
from activity_sync.admin.state import AdminState
from core.catalog import load_catalog
from core.topics import Topics
from sinks.providers.informz.fake import FakeInformz

SUPER = ApiKey("root", "super", ("*",), "super-secret-0123456789")
ADMIN = ApiKey("ops", "admin", ("*",), "admin-secret-0123456789")
ACME = ApiKey("acme", "super", ("ACME",), "acme-secret-0123456789ab")
STARTED = {"tenant": "DEMO", "name": "Informz Has Started Discussion Thread", "id": "started-thread",
           "criteria": {"activity": {"codes": ["DiscussionMessageCreate"], "within": "30d"}}}
READERS = {"tenant": "DEMO", "name": "Library Readers", "criteria": {"activity": {"categories": ["Resource Libraries"]}}}


def auth(key: ApiKey) -> dict:
    return {"Authorization": f"Bearer {key.secret}"}


def post(member: str, email: str, key: str, ago_s: float = 0.0) -> dict:
    seed = next(e for e in seed_events() if e["ActivityCode"] == "DiscussionMessageCreate")
    when = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=ago_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return dict(seed, ActivityKey=key, ActivityDate=when, AuthorExternalKey=member, AuthorEmail=email,
                AuthorFirstName=f"First{member}", AuthorLastName="Example", TenantCode="DEMO")


def view(member: str, key: str) -> dict:
    seed = next(e for e in seed_events() if e["ActivityCode"] == "LibraryEntryView")
    return dict(seed, ActivityKey=key, AccessedByExternalKey=member, TenantCode="DEMO")


async def wait_for(check, timeout=90.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.25)


@pytest.fixture
async def fake():
    f = await FakeInformz(hour_s=0, bulk_delay_s=0.05).start()
    yield f
    await f.stop()


async def test_lists_reach_the_marketing_platform_as_target_groups(settings, tmp_path, spawn, fake, monkeypatch):
    monkeypatch.setenv("TEST_INFORMZ_PASSWORD", fake.password)
    doc = yaml.safe_load(open("activity_sync/data/embedded.yaml"))
    doc["lists"] = [STARTED, READERS]
    doc["endpoints"].append({"name": "tmp", "provider": "informz", "tenant": "DEMO",
                             "settings": {"url": fake.url, "brand_id": fake.brand_id, "brand": fake.brand,
                                          "username": fake.user, "password_env": "TEST_INFORMZ_PASSWORD"}})
    path = tmp_path / "lists.yaml"
    path.write_text(yaml.safe_dump(doc))
    object.__setattr__(settings, "config_path", str(path))
    await publish_config_file(settings, path)
    env = worker_env(settings, tmp_path, ACTIVITY_SYNC_LISTS_TICK_S="1")
    spawn(["-m", "streams.app"], env, "stream")
    spawn(["-m", "streams.lists"], dict(env, ACTIVITY_SYNC_DATADIR=str(tmp_path / "lists-data")), "lists")

    state = AdminState(settings, load_catalog())
    await state.start()
    client = TestClient(TestServer(make_app(state, [SUPER, ADMIN, ACME])))
    await client.start_server()
    try:
        # credentials: only a super admin issues them; stored hashed
        r = await client.post("/api/v1/list-connections/DEMO", json={}, headers=auth(ADMIN))
        assert r.status == 403
        r = await client.post("/api/v1/list-connections/DEMO", json={}, headers=auth(SUPER))
        creds = await r.json()
        assert r.status == 200 and creds["iam_key"] and len(creds["password"]) >= 20
        assert creds["password"] not in json.dumps(state.lists.connections["DEMO"].record())
        fake.integration.update(active=True, iam_key=creds["iam_key"], password=creds["password"],
                                feed_url=str(client.make_url("/occ/v1")))

        topics = Topics(settings.topic_prefix)
        evs = [post("M1", "ann@example.org", "l-1"), post("M2", "shared@example.org", "l-2"),
               post("M3", "Shared@Example.org", "l-3"), post("M4", "not-an-email", "l-4"),
               view("M6", "l-6"), view("M1", "l-7")]
        await produce(settings, topics.raw, [(e["ActivityKey"].encode(), json.dumps(e).encode()) for e in evs])
        await wait_for(lambda: state.lists.count("DEMO", "started-thread") == 4, what="4 members in the list")
        # M5 posted 30 days less 18 s ago: out of the 30-day window soon
        await produce(settings, topics.raw, [(b"l-5", json.dumps(post("M5", "eve@example.org", "l-5",
                                                                      ago_s=30 * 86400 - 18)).encode())])
        await wait_for(lambda: state.lists.count("DEMO", "started-thread") == 5, what="5 members in the list")
        await wait_for(lambda: state.lists.count("DEMO", "library-readers") == 2, what="2 library readers")

        entered = time.monotonic()
        # a wrong password is refused by the feed
        async with aiohttp.ClientSession() as s:
            async with s.get(client.make_url("/occ/v1/lists"), headers={"HLIAMKey": creds["iam_key"],
                                                                        "HLPassword": "wrong"}) as resp:
                assert resp.status == 401

        # Refresh: exactly the Informz list, without its prefix, in Online Community
        offered = await fake.refresh()
        assert [g["name"] for g in offered] == ["Has Started Discussion Thread"]
        assert list(fake.folders) == ["Online Community"]
        g = fake.groups[offered[0]["id"]]
        assert g["state"] == "never" and g["folder"] == "Online Community"

        # Sync Now: members keyed by Remote ID = Legacy Contact Key; the malformed address refused;
        # the shared address one subscriber
        info = await fake.sync(g)
        assert info["state"] == "synced" and info["last_transfer"]["full"] is True
        assert info["remote_ids"] == ["M1", "M2", "M3", "M5"]
        assert [r["remote_id"] for r in info["rejected"]] == ["M4"]
        assert info["count"] == 3 and fake.subscribers["ann@example.org"]["remote_id"] == "M1"

        rec = await (await client.get("/api/v1/lists/DEMO/started-thread/reconciliation", headers=auth(ADMIN))).json()
        assert rec["community_count"] == 5 and rec["platform_count"] == 3, (rec.get("platform_error"), rec.get("reasons"))
        assert rec["community_count"] == 5 and rec["platform_count"] == 3 and rec["difference"] == 2
        assert [m["remote_id"] for m in rec["malformed_emails"]] == ["M4"]
        assert rec["duplicate_emails"] == [{"email": "shared@example.org", "remote_ids": ["M2", "M3"]}]
        assert rec["explained"] == 2 and rec["unsubscribed"] == [] and rec["fully_explained"]
        why = await (await client.get("/api/v1/lists/DEMO/library-readers/reconciliation", headers=auth(ADMIN))).json()
        assert why["appears"] is False and "Informz" in why["reasons"][0]

        # a member unsubscribed in the platform stays out; a second sync transfers nothing
        fake.subscribers["ann@example.org"]["status"] = "unsubscribed"
        info = await fake.sync(g)
        assert info["last_transfer"] == {"full": False, "members": 0, "removed": 0}
        assert info["count"] == 2 and fake.subscribers["ann@example.org"]["status"] == "unsubscribed"
        rec = await (await client.get("/api/v1/lists/DEMO/started-thread/reconciliation", headers=auth(ADMIN))).json()
        assert rec["unsubscribed"] == ["ann@example.org"] and rec["explained"] == 3 and rec["difference"] == 3

        assert time.monotonic() - entered < 15, "the steps above must run while M5 is in the list"
        # a tenant-scoped key sees nothing of DEMO's lists
        assert (await (await client.get("/api/v1/lists", headers=auth(ACME))).json()) == []
        r = await client.get("/api/v1/lists/DEMO/started-thread/reconciliation", headers=auth(ACME))
        assert r.status == 404

        # the window passes for M5: it leaves the list with no new activity; the campaign's hourly sync removes it
        campaign = await (await client.session.post(f"{fake.base_url}/_ui/campaigns",
                                                    json={"target_groups": [g["id"]]})).json()
        assert campaign["running"]
        await wait_for(lambda: state.lists.count("DEMO", "started-thread") == 4, timeout=60, what="M5 to leave")
        await fake.hour()
        assert "M5" not in g["members"] and g["last_transfer"] == {"full": False, "members": 0, "removed": 1}

        # sync on send: a mailing to the group resyncs it just before it goes
        before = g["syncs"]
        mailing = await (await client.session.post(f"{fake.base_url}/_ui/mailings",
                                                   json={"target_groups": [g["id"]]})).json()
        assert g["syncs"] == before + 1 and mailing["recipients"] == ["shared@example.org"]

        # a target group deleted in the platform is recreated by the next sync that needs it
        del fake.groups[g["id"]]
        synced = await fake.hour()
        assert len(synced) == 1 and synced[0]["state"] == "synced" and synced[0]["id"] != g["id"]
        assert synced[0]["name"] == "Has Started Discussion Thread" and synced[0]["remote_ids"] == ["M1", "M2", "M3"]

        # the command line: the lists and their counts, a list's members, new credentials
        import subprocess
        import sys

        def cli(*args):
            out = subprocess.run([sys.executable, "-m", "activity_sync.cli", "lists", *args], env=env,
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            return out.stdout

        shown = [json.loads(line) for line in cli("show", "--tenant", "DEMO").splitlines()]
        assert {(x.get("id"), x.get("members")) for x in shown if "id" in x} == {("started-thread", 4),
                                                                               ("library-readers", 2)}
        members = [json.loads(line)["member"] for line in cli("members", "--tenant", "DEMO", "--list",
                                                              "started-thread").splitlines()]
        assert members == ["M1", "M2", "M3", "M4"]
        issued = cli("connection", "--tenant", "DEMO")
        assert "IAMKey:" in issued and "Password:" in issued
        await wait_for(lambda: state.lists.connections["DEMO"].iam_key != creds["iam_key"], 30, "new credentials")
        with pytest.raises(RuntimeError, match="401"):  # the old password no longer opens the feed
            await fake.refresh()
    finally:
        await client.close()
        await state.stop()


def test_the_feeds_openapi_document_is_the_one_served():
    from activity_sync.admin.lists import FEED_OPENAPI

    with open("docs/occ-feed.openapi.json") as f:
        assert json.load(f) == FEED_OPENAPI


async def test_a_push_list_reaches_the_target_group_through_the_partner_api(settings, tmp_path, spawn, fake):
    """``push: true``: each join and leave is an activity the informz endpoint writes (Subscribe, BulkUpload)."""
    doc = yaml.safe_load(open("sinks/providers/informz/example.yaml"))
    doc["endpoints"][0]["settings"]["url"] = fake.url
    doc["lists"][0]["criteria"] = {"activity": {"codes": ["DiscussionMessageCreate"], "within": "30d"}}
    path = tmp_path / "push.yaml"
    path.write_text(yaml.safe_dump(doc))
    object.__setattr__(settings, "config_path", str(path))
    await publish_config_file(settings, path)
    env = worker_env(settings, tmp_path, ACTIVITY_SYNC_LISTS_TICK_S="1", ACTIVITY_SYNC_INFORMZ_PASSWORD=fake.password)
    spawn(["-m", "streams.app"], env, "stream")
    spawn(["-m", "streams.lists"], dict(env, ACTIVITY_SYNC_DATADIR=str(tmp_path / "lists-data")), "lists")
    spawn(["-m", "sinks.worker", "marketing"], env, "sink")
    topics = Topics(settings.topic_prefix)
    evs = [post(f"P{i}", f"p{i}@example.org", f"p-{i}") for i in range(20)]
    evs.append(post("P99", "p99@example.org", "p-99", ago_s=30 * 86400 - 12))  # leaves in 12 s
    t0 = time.monotonic()
    await produce(settings, topics.raw, [(e["ActivityKey"].encode(), json.dumps(e).encode()) for e in evs])

    def group():
        return fake.group_named("Has Started Discussion Thread")

    await wait_for(lambda: group() and len(group()["members"]) == 21, timeout=120, what="21 subscribers")
    first = time.monotonic() - t0
    assert group()["folder"] == "Online Community" and fake.subscribers["p3@example.org"]["remote_id"] == "P3"
    await wait_for(lambda: "P99" not in group()["members"], timeout=60, what="P99 to be removed")
    assert len(group()["members"]) == 20 and first < 120
