"""The Push API against the real broker: the ingest server in this process, the directory worker
and the stream worker as subprocesses. What a 200 says is on Kafka; what a 4xx says is not."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import yaml
from conftest import consume, produce, publish_config_file, worker_env

from activity_sync.push import issue_key, read_directory
from core.avro import decode_single_object, parsed_schema
from core.config import catalog_for
from core.topics import Topics
from sources.push.server import serve
from test_push_model import SEED_LIST


@pytest.fixture
async def ingest(settings):
    """A running ingest server for this test's topics: ``(url, ingest state)``."""
    started: asyncio.Future = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(serve(settings, catalog_for(settings), "127.0.0.1", 0,
                                       lambda url, ing: started.set_result((url, ing))))
    done, _ = await asyncio.wait([started, task], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    yield started.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def key_for(settings, ing, key_id="ams-demo", tenant="DEMO", origin="imis-demo") -> str:
    presented = await issue_key(settings, key_id, tenant, origin)
    for _ in range(100):
        if ing.ring.authenticate(presented):
            return presented
        await asyncio.sleep(0.05)
    raise AssertionError("the issued key never reached the server")


async def post(url, path, body, key, ctype="application/json", **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with aiohttp.ClientSession() as s:
        async with s.post(url + path, data=data, headers={"Content-Type": ctype, "ApiKey": key or "", **headers}) as r:
            return r.status, await r.json(content_type=None), r.headers


async def written(settings, topic) -> int:
    """How many records the topic holds (the sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from core.topics import partition_ids

    c = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs())
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in await partition_ids(settings.kafka, topic)]
        return sum((await c.end_offsets(parts)).values())
    finally:
        await c.stop()


async def records(settings, topic, n, timeout=30.0, settle=0.0):
    return await consume(settings, topic, lambda ms: len(ms) >= n, timeout=timeout, settle=settle)


def contact(i: int, **over) -> dict:
    c = {"ContactDetails": {"ContactId": f"M{i:05d}", "FirstName": f"Member{i}", "LastName": "Example",
                            "PrimaryEmailAddress": f"member{i}@example.org", "Title": "Dr", "IsMember": True},
         "Groups": [{"GroupId": "BOARD", "GroupName": "Board", "Role": "Member"},
                    {"GroupId": "CMTE", "GroupName": "Committee"}],
         "PhoneNumbers": [{"FormattedNumber": f"+1 (555) 01{i % 10}-{i:04d}", "IsSmsPreferred": True}]}
    c["ContactDetails"].update(over)
    return c


async def test_a_wrong_key_writes_nothing_and_the_seeds_list_example_is_accepted(settings, ingest):
    url, ing = ingest
    key = await key_for(settings, ing)
    topics = Topics(settings.topic_prefix)
    for bad in (None, "", "ams-demo.wrong", key + "x", "nosuch.key"):
        status, body, _ = await post(url, "/list", SEED_LIST, bad)
        assert status == 401 and body["stored"] == 0
    status, body, _ = await post(url, "/list", SEED_LIST, key, ctype="text/plain")
    assert status == 415
    status, body, _ = await post(url, "/list", SEED_LIST, key, ctype="text/json")  # the seed's body verbatim
    assert status == 200 and body["stored"] == 2 and [r["id"] for r in body["results"]] == ["LIST1", "LIST2"]
    msgs = await records(settings, topics.push_lists, 2, settle=1.0)
    assert len(msgs) == 2  # the refused requests wrote nothing
    ops = {m.key: decode_single_object(m.value, parsed_schema("push_list")) for m in msgs}
    assert ops[b"DEMO|LIST1"]["Mode"] == "Add" and ops[b"DEMO|LIST2"]["Mode"] == "Replace"
    assert ops[b"DEMO|LIST1"]["origin"] == "imis-demo" and ops[b"DEMO|LIST1"]["key_id"] == "ams-demo"
    # a request with an invalid object stores nothing, and says which object and field
    status, body, _ = await post(url, "/contactinfo", [contact(1), contact(2, IsMember="yes")], key)
    assert status == 400 and body["stored"] == 0
    assert body["problems"] == [{"index": 1, "field": "ContactDetails.IsMember",
                                 "reason": "must be true or false, not text"}]
    assert await written(settings, topics.push_contacts) == 0


async def test_full_record_semantics_in_the_directory_and_contact_changes_as_activities(
        settings, ingest, tmp_path, spawn):
    url, ing = ingest
    key = await key_for(settings, ing)
    topics = Topics(settings.topic_prefix)
    spawn(["-m", "streams.directory"], worker_env(settings, tmp_path), "directory")
    people = [contact(i) for i in range(1000)]
    status, body, _ = await post(url, "/contactinfo", people, key)
    assert status == 200 and body["stored"] == 1000
    # the second push omits one group and one field of one contact, and repeats the rest
    changed = contact(7)
    changed["Groups"] = changed["Groups"][:1]
    del changed["ContactDetails"]["Title"]
    status, _, _ = await post(url, "/contactinfo", people[:7] + [changed] + people[8:], key)
    assert status == 200
    # the same list push twice leaves the same state
    lst = [{"ContactIds": ["M00001", "M00002"], "ListId": "VOL", "ListName": "Volunteers", "Mode": "Add"}]
    for _ in range(2):
        assert (await post(url, "/list", lst, key))[0] == 200
    # creates, group joins and list adds for everyone; then exactly the change of contact 7
    expected = 1000 + 2000 + 2 + 2
    raw = await records(settings, topics.raw, expected, timeout=120, settle=3.0)
    events = [json.loads(m.value) for m in raw]
    by_code: dict[str, list] = {}
    for e in events:
        by_code.setdefault(e["ActivityCode"], []).append(e)
    assert len(by_code["ContactCreate"]) == 1000 and len(by_code["ContactGroupJoin"]) == 2000
    assert [(e["ContactExternalKey"], e["GroupKey"]) for e in by_code["ContactGroupLeave"]] == [("M00007", "CMTE")]
    assert [(e["ContactExternalKey"], e["UpdatedProperties"]) for e in by_code["ContactUpdate"]] == [("M00007", "Title")]
    assert sorted(e["ContactExternalKey"] for e in by_code["ContactListAdd"]) == ["M00001", "M00002"]
    assert len(events) == expected  # the repeated contacts and the repeated list push changed nothing
    assert all(e["OriginSystem"] == "imis-demo" and e["TenantCode"] == "DEMO" for e in events)
    assert len({e["ActivityKey"] for e in events}) == expected
    d = await read_directory(settings)
    seven, eight = d.get("DEMO", "M00007"), d.get("DEMO", "M00008")
    assert sorted(seven["groups"]) == ["BOARD"] and "Title" not in seven["details"]
    assert sorted(eight["groups"]) == ["BOARD", "CMTE"] and eight["details"]["Title"] == "Dr"
    assert d.count("DEMO") == 1000 and sorted(d.get("DEMO", "M00001")["lists"]) == ["VOL"]
    assert [e["ContactId"] for e in d.find("DEMO", email="MEMBER12@example.org")] == ["M00012"]
    assert [e["ContactId"] for e in d.find("DEMO", phone="555-012-0012")] == ["M00012"]
    # the command line looks up the same directory
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "activity_sync.cli", "directory", "--tenant", "DEMO", "--email",
                          "member7@example.org"], env=worker_env(settings, tmp_path), capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    found = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["ContactId"] for e in found] == ["M00007"] and sorted(found[0]["groups"]) == ["BOARD"]


async def test_an_activity_with_only_a_contact_key_reaches_salesforce_with_the_pushed_customer_id(
        settings, ingest, tmp_path, spawn):
    from sinks.providers.salesforce.fake import FakeSalesforce

    url, ing = ingest
    key = await key_for(settings, ing, origin="fonteva")
    secret = "push-e2e-sf-secret-1"
    sf = await FakeSalesforce("e2e-app", secret, contact_keys={"Member_Number__c": ["AMS-4711", "AMS-0815"]}).start()
    try:
        doc = {"tenants": [{"code": "DEMO", "resolve_by": ["contact_key", "email"]}],
               "endpoints": [{"name": "fonteva", "provider": "salesforce", "tenant": "DEMO", "settings": {
                   "preset": "fonteva", "login_url": sf.base_url, "client_id": "e2e-app",
                   "client_secret_env": "E2E_SF_SECRET", "linger_ms": 20, "contact_match": "external_id",
                   "contact_external_id_field": "Member_Number__c"}}],
               "subscriptions": [{"activity_code": c, "endpoint": "fonteva"} for c in
                                 ("DiscussionMessageCreate", "ContactCreate")]}
        path = tmp_path / "push.yaml"
        path.write_text(yaml.safe_dump(doc))
        object.__setattr__(settings, "config_path", str(path))
        await publish_config_file(settings, path)
        env = worker_env(settings, tmp_path, E2E_SF_SECRET=secret)
        spawn(["-m", "streams.directory"], env, "directory")
        # the AMS pushes its contacts: its ContactId is the customer ID; the community knows the
        # member by AlternativeContactId (a contact key) or e-mail
        people = [{"ContactDetails": {"ContactId": "AMS-4711", "FirstName": "Rosa", "LastName": "Example",
                                      "AlternativeContactId": "ck-rosa", "PrimaryEmailAddress": "rosa@example.org"}},
                  {"ContactDetails": {"ContactId": "AMS-0815", "FirstName": "Noor", "LastName": "Example",
                                      "PrimaryEmailAddress": "noor@example.org"}}]
        assert (await post(url, "/contactinfo", people, key))[0] == 200
        topics = Topics(settings.topic_prefix)
        await records(settings, topics.push_directory, 2, timeout=60)
        spawn(["-m", "streams.app"], env, "stream")
        spawn(["-m", "sinks.worker", "fonteva"], env, "sink")
        events = [{"ActivityKey": "push-e2e-1", "ActivityCode": "DiscussionMessageCreate",
                   "ActivityDate": "2026-11-30T10:00:00.000Z", "TenantCode": "DEMO",
                   "ActivityDescription": "Posted a message", "AuthorContactKey": "ck-rosa"},
                  {"ActivityKey": "push-e2e-2", "ActivityCode": "DiscussionMessageCreate",
                   "ActivityDate": "2026-11-30T10:01:00.000Z", "TenantCode": "DEMO",
                   "ActivityDescription": "Posted again", "AuthorEmail": "Noor@Example.org"}]
        await produce(settings, topics.raw, [(e["ActivityKey"].encode(), json.dumps(e).encode()) for e in events])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while loop.time() < deadline and len(sf.stored_keys("Task")) < 2:
            await asyncio.sleep(0.3)
        # the contacts' own ContactCreate activities came from fonteva's AMS: never written back to it
        await asyncio.sleep(2.0)
        assert sorted(sf.stored_keys("Task")) == ["push-e2e-1", "push-e2e-2"]
        assert sf.records[("Task", "push-e2e-1")]["WhoId"] == sf.contact_keys[("Member_Number__c", "AMS-4711")]
        assert sf.records[("Task", "push-e2e-2")]["WhoId"] == sf.contact_keys[("Member_Number__c", "AMS-0815")]
        from core.avro import decode_any

        enriched = {r["activity_key"]: r for r in (decode_any(m.value) for m in await records(
            settings, topics.enriched, 4, timeout=30))}
        assert enriched["push-e2e-1"]["customer_id"] == "AMS-4711"
        assert enriched["push-e2e-1"]["customer_resolved_by"] == "directory:contact_key"
        assert enriched["push-e2e-1"]["customer_key_field"] == "AuthorContactKey"
        assert enriched["push-e2e-2"]["customer_resolved_by"] == "directory:email"
        creates = [r for r in enriched.values() if r["activity_code"] == "ContactCreate"]
        assert len(creates) == 2 and all(r["deliveries"] == [] for r in creates)  # the loop guard
    finally:
        await sf.stop()


def _hostile() -> list[tuple[str, bytes, dict]]:
    """(path, body, extra headers): 40 bodies an ingest server must refuse, each with a 4xx and a reason."""
    ok = {"ContactId": "H1", "FirstName": "Hostile"}

    def c(**details) -> bytes:
        return json.dumps([{"ContactDetails": {**ok, **details}}]).encode()

    deep = b"[" * 10_000 + b"]" * 10_000
    import gzip

    gz = gzip.compress(b"[" + b",".join([c()[1:-1]] * 2000) + b"]")
    out = [
        ("/contactinfo", b"{", {}),
        ("/contactinfo", json.dumps({"ContactDetails": ok}).encode(), {}),
        ("/contactinfo", b"[1, 2]", {}),
        ("/contactinfo", b'[{"ContactDetails": {"ContactId": "H1", "FirstName": "x", "Age": NaN}}]', {}),
        ("/contactinfo", b'[{"ContactDetails": {"ContactId": "H1", "FirstName": "x", "Age": -Infinity}}]', {}),
        ("/contactinfo", deep, {}),
        ("/contactinfo", b'[{"ContactDetails": {"ContactId": "H1", "FirstName": "x"}, "JobHistory": [' + deep + b"]}]", {}),
        ("/contactinfo", b'[{"ContactDetails": {"ContactId": "H1", "ContactId": "H2", "FirstName": "x"}}]', {}),
        ("/contactinfo", b'[{"ContactDetails": {"ContactId": "H1", "FirstName": "\\ud800"}}]', {}),
        ("/contactinfo", b'[{"ContactDetails": {"ContactId": "\xff\xfe", "FirstName": "x"}}]', {}),
        ("/contactinfo", gz, {"Content-Encoding": "gzip"}),
        ("/contactinfo", b'[{"ContactDetails": {"ContactId": "H1", "FirstName": "x", "Age": 123456789012345678901234567890}}]', {}),
        ("/contactinfo", b'[{"ContactDetails": {"ContactId": "H1", "FirstName": "x", "Age": 1e400}}]', {}),
        ("/contactinfo", json.dumps([{"ContactDetails": "H1"}]).encode(), {}),
        ("/contactinfo", json.dumps([{"ContactDetails": ok, "Groups": {"GroupId": "G"}}]).encode(), {}),
        ("/contactinfo", c(ContactId=42), {}),
        ("/contactinfo", c(ContactId="  "), {}),
        ("/contactinfo", json.dumps([{"ContactDetails": ok}] * 1001).encode(), {}),
        ("/contactinfo", b"", {}),
        ("/contactinfo", b"null", {}),
        ("/contactinfo", "\ufeff[]".encode(), {}),
        ("/contactinfo", "[]".encode("utf-16"), {}),
        ("/contactinfo", c(MemberSince="2026-01-01 10:00:00"), {}),
        ("/contactinfo", c(FirstName="a\u0000b"), {}),
        ("/contactinfo", json.dumps([{"ContactDetails": ok, "Extra": 1}]).encode(), {}),
        ("/contactinfo", json.dumps([{"ContactDetails": ok, "Addresses": [{"Latitude": "north"}]}]).encode(), {}),
        ("/contactinfo", c(Age=True), {}),
        ("/contactinfo", c(IsDeleted="true"), {}),
        ("/contactinfo", c(FirstName="x" * 5000), {}),
        ("/contactinfo", b"[] trailing", {}),
        ("/contactinfo", json.dumps([{"ContactDetails": None}]).encode(), {}),
        ("/contactinfo", b"[01]", {}),
        ("/contactinfo", b"[/* comment */]", {}),
        ("/contactinfo", b"[]", {"Content-Type": "application/xml"}),
        ("/contactinfo", b"[]", {"Content-Type": "application/json; charset=utf-16"}),
        ("/list", json.dumps([{"ListId": "L", "Mode": "append", "ContactIds": ["a"]}]).encode(), {}),
        ("/list", json.dumps([{"ListId": "L", "Mode": "Add"}]).encode(), {}),
        ("/list", json.dumps([{"ListId": "L", "Mode": "Add", "ContactIds": [None]}]).encode(), {}),
        ("/list", json.dumps([{"ListId": "L", "Mode": "Add", "ContactIds": "a,b"}]).encode(), {}),
        ("/list", json.dumps([{"ListId": "L", "Mode": "Add", "ContactIds": [str(i) for i in range(10_001)]}]).encode(), {}),
    ]
    return out


async def test_hostile_bodies_get_a_4xx_with_a_reason_and_nothing_is_written(settings, ingest):
    url, ing = ingest
    key = await key_for(settings, ing)
    topics = Topics(settings.topic_prefix)
    bodies = _hostile()
    assert len(bodies) == 40
    answers = []
    async with aiohttp.ClientSession() as s:
        for path, body, headers in bodies:
            h = {"Content-Type": "application/json", "ApiKey": key, **headers}
            async with s.post(url + path, data=body, headers=h) as r:
                answers.append((path, body[:60], r.status, await r.json(content_type=None)))
        # a 50 MB string: refused from its Content-Length, before the body is read
        reader, writer = await asyncio.open_connection(*url.split("//")[1].split("/")[0].split(":"))
        writer.write(f"POST /v2/contactinfo HTTP/1.1\r\nHost: x\r\nApiKey: {key}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {50 * 1024 * 1024 + 40}\r\n\r\n".encode() + b'[{"ContactDetails": {"Bio": "')
        await writer.drain()
        head = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        assert head.startswith(b"HTTP/1.1 413"), head[:200]

        # a chunked body (no Content-Length) refused once it passes the limit
        async def chunks():
            yield b'[{"ContactDetails": {"ContactId": "H1", "FirstName": "x", "Bio": "'
            for _ in range(200):
                yield b"x" * 65536
            yield b'"}}]'
        try:
            async with s.post(url + "/contactinfo", data=chunks(), headers={"Content-Type": "application/json",
                                                                             "ApiKey": key}) as r:
                answers.append(("/contactinfo", b"chunked 13 MB", r.status, await r.json(content_type=None)))
        except aiohttp.ClientError:  # the server may close the connection as it answers
            pass
    for path, body, status, reply in answers:
        assert 400 <= status < 500 and status != 401, (path, body, status, reply)
        assert reply["stored"] == 0 and reply["error"], (path, body, reply)
    assert {s for *_, s, _ in answers} <= {400, 413, 415}
    assert await written(settings, topics.push_contacts) == 0
    assert await written(settings, topics.push_lists) == 0
    # the server is still there
    assert (await post(url, "/contactinfo", [contact(1)], key))[0] == 200
    assert await written(settings, topics.push_contacts) == 1  # what the count above would have seen


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(settings, ingest, tmp_path):
    import os
    import sys
    from pathlib import Path

    url, ing = ingest
    key = await key_for(settings, ing, key_id="fuzz")
    base = url[: -len("/v2")]
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/openapi.json", "--url", base,
        "-H", f"ApiKey: {key}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_headers_conformance,response_schema_conformance",
        "--max-examples", "40", "--generation-deterministic", "--request-timeout", "20",
        "--phases", "examples,coverage,fuzzing",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false"))
    out, _ = await asyncio.wait_for(proc.communicate(), 900)
    text = out.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    assert proc.returncode == 0, text[-6000:]
    assert "passed" in text.lower()
    # what it sent that was valid was stored; nothing it sent broke the server
    assert (await post(url, "/contactinfo", [contact(1)], key))[0] == 200


async def test_the_admin_contacts_and_ingest_keys_api_is_tenant_scoped(settings, ingest):
    from activity_sync.admin.api import serve as admin_serve
    from activity_sync.admin.keys import ApiKey

    url, ing = ingest
    ops = ApiKey("ops", "admin", ("*",), "ops-key-0123456789abcdef")
    acme = ApiKey("acme", "admin", ("ACME",), "acme-key-0123456789abcdef")
    acme_ro = ApiKey("acme-ro", "read", ("ACME",), "acme-ro-key-0123456789ab")
    topics = Topics(settings.topic_prefix)
    entries = [{"tenant": t, "ContactId": cid, "deleted": False, "groups": {}, "lists": {},
                "details": {"ContactId": cid, "FirstName": name, "PrimaryEmailAddress": f"{cid}@example.org"}}
               for t, cid, name in (("ACME", "A-1", "Ana"), ("ACME", "A-2", "Ben"), ("DEMO", "D-1", "Dee"))]
    await produce(settings, topics.push_directory,
                  [(f"{e['tenant']}|{e['ContactId']}".encode(), json.dumps(e).encode()) for e in entries])
    runner, state, port = await admin_serve(settings, "127.0.0.1", 0, [ops, acme, acme_ro])
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with aiohttp.ClientSession() as s:
            async def call(method, path, key, body=None):
                async with s.request(method, base + path, json=body,
                                     headers={"Authorization": f"Bearer {key.secret}"}) as r:
                    return r.status, await r.json()

            for _ in range(100):
                if state.directory.count() == 3:
                    break
                await asyncio.sleep(0.1)
            status, body = await call("GET", "/contacts", acme)
            assert status == 200 and sorted(c["ContactId"] for c in body["contacts"]) == ["A-1", "A-2"]
            assert body["total"] == 2  # DEMO's contact is not even counted
            assert (await call("GET", "/contacts?tenant=DEMO", acme))[0] == 404
            assert (await call("GET", "/contacts?email=D-1@example.org", acme))[1]["contacts"] == []
            assert [c["ContactId"] for c in (await call("GET", "/contacts?email=D-1@example.org", ops))[1]
                    ["contacts"]] == ["D-1"]
            # keys: issued for the key's own tenant only, by an admin key, listed without secrets
            assert (await call("POST", "/ingest-keys", acme, {"id": "acme-ams", "tenant": "DEMO"}))[0] == 422
            assert (await call("POST", "/ingest-keys", acme_ro, {"id": "acme-ams", "tenant": "ACME"}))[0] == 403
            status, issued = await call("POST", "/ingest-keys", acme, {"id": "acme-ams", "tenant": "ACME"})
            assert status == 201 and issued["key"].startswith("acme-ams.")
            assert (await call("POST", "/ingest-keys", ops, {"id": "demo-ams", "tenant": "DEMO"}))[0] == 201
            assert (await call("POST", "/ingest-keys", acme, {"id": "demo-ams", "tenant": "ACME"}))[0] == 409
            listed = (await call("GET", "/ingest-keys", acme_ro))[1]
            assert [k["id"] for k in listed] == ["acme-ams"] and "sha256" not in listed[0] and "key" not in listed[0]
            assert (await call("DELETE", "/ingest-keys/demo-ams", acme))[0] == 404
            # the issued key pushes for ACME; revoked, it is refused
            for _ in range(100):
                if ing.ring.authenticate(issued["key"]):
                    break
                await asyncio.sleep(0.05)
            assert (await post(url, "/contactinfo", [contact(1)], issued["key"]))[0] == 200
            assert (await call("DELETE", "/ingest-keys/acme-ams", acme))[0] == 200
            for _ in range(100):
                if not ing.ring.authenticate(issued["key"]):
                    break
                await asyncio.sleep(0.05)
            assert (await post(url, "/contactinfo", [contact(1)], issued["key"]))[0] == 401
    finally:
        await runner.cleanup()
        await state.stop()
