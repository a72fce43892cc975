"""The seed's example activities reach the Salesforce and Dataverse fakes end to end through the
real broker: the stream worker enriches them, one sink worker per endpoint writes them, and each
fake holds them with the fields the README documents."""

from __future__ import annotations

import asyncio

import yaml
from conftest import produce, publish_config_file, seed_events, worker_env

from sinks.providers.dynamics.fake import FakeDataverse
from sinks.providers.salesforce.fake import FakeSalesforce
from core.topics import Topics

SF_SECRET, DV_SECRET = "e2e-sf-secret-77a1", "e2e-dv-secret-0c4d"
CODES = sorted({e["ActivityCode"] for e in seed_events()})


async def test_seed_activities_reach_salesforce_and_dataverse_through_the_broker(settings, tmp_path, spawn):
    # the seed's members are Contacts known by their member number (the seed's external keys)
    sf = await FakeSalesforce("e2e-app", SF_SECRET, contact_keys={"Member_Number__c": [
        "aquill", "0037yHT1MAAW", "clindqvist", "0037000000uwuhgAAA"]}).start()
    dv = await FakeDataverse("e2e-tenant", "e2e-app", DV_SECRET).start(tls=True, ca_file=tmp_path / "ca.pem")
    try:
        doc = {"endpoints": [
            {"name": "fonteva", "provider": "salesforce", "tenant": "DEMO", "settings": {
                "preset": "fonteva", "login_url": sf.base_url, "client_id": "e2e-app",
                "client_secret_env": "E2E_SF_SECRET", "linger_ms": 20, "contact_match": "external_id",
                "contact_external_id_field": "Member_Number__c"}},
            {"name": "nimble", "provider": "salesforce", "tenant": "DEMO", "settings": {
                "preset": "nimble_ams", "schedule": "realtime", "login_url": sf.base_url, "client_id": "e2e-app",
                "client_secret_env": "E2E_SF_SECRET", "linger_ms": 20, "contact_match": "external_id",
                "contact_external_id_field": "Member_Number__c"}},
            {"name": "cobalt", "provider": "dynamics", "tenant": "DEMO", "settings": {
                "preset": "cobalt", "url": dv.base_url, "authority_host": dv.base_url, "tenant_id": "e2e-tenant",
                "client_id": "e2e-app", "client_secret_env": "E2E_DV_SECRET", "ca_file": dv.ca_file,
                "linger_ms": 20}},
        ], "subscriptions": []}
        for ep in ("fonteva", "nimble", "cobalt"):
            doc["subscriptions"] += [{"activity_code": c, "endpoint": ep, "description": "{ActivityDescription}",
                                      "writeback_codes": ["COMMUNITY", c]} for c in CODES]
        path = tmp_path / "crm.yaml"
        path.write_text(yaml.safe_dump(doc))
        object.__setattr__(settings, "config_path", str(path))
        await publish_config_file(settings, path)
        env = worker_env(settings, tmp_path, E2E_SF_SECRET=SF_SECRET, E2E_DV_SECRET=DV_SECRET)
        spawn(["-m", "streams.app"], env, "stream")
        for ep in ("fonteva", "nimble", "cobalt"):
            spawn(["-m", "sinks.worker", ep], env, f"sink-{ep}")
        seeds = seed_events()
        await produce(settings, Topics(settings.topic_prefix).raw,
                      [(None, __import__("json").dumps(e).encode()) for e in seeds])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while loop.time() < deadline and not (len(sf.stored_keys("Task")) >= 5 and
                                              len(sf.stored_keys("Community_Activity__c")) >= 5 and
                                              len(dv.stored_keys()) >= 5):
            await asyncio.sleep(0.3)
    finally:
        await sf.stop()
        await dv.stop()
    by_key = {e["ActivityKey"]: e for e in seeds}
    assert sorted(sf.stored_keys("Task")) == sorted(by_key) == sorted(sf.stored_keys("Community_Activity__c"))
    assert sorted(dv.stored_keys()) == sorted(by_key)
    for key, ev in by_key.items():
        task = sf.records[("Task", key)]
        customer = next(ev[k] for k in ("AuthorExternalKey", "AccessedByExternalKey", "MemberExternalKey") if k in ev)
        contact = sf.contact_keys[("Member_Number__c", customer)]  # found by its external ID
        assert task["WhoId"] == contact and task["Type"] == "COMMUNITY"
        assert task["Writeback_Code_2__c"] == ev["ActivityCode"] and task["Status"] == "Completed"
        assert task["Subject"] == ev["ActivityDescription"][:255] and task["ActivityDate"] == "2016-06-13"
        nimble = sf.records[("Community_Activity__c", key)]
        assert nimble["WhoId__c"] == contact and nimble["ActivityDate__c"].startswith("2016-06-13T")
        assert nimble["Type__c"] == "COMMUNITY" and nimble["Description__c"] == ev["ActivityDescription"]
        dtask = dv.records[("tasks", key)]
        assert dtask["_regardingobjectid_value"] == customer and dtask["subcategory"] == ev["ActivityCode"]
        assert dtask["subject"] == ev["ActivityDescription"][:200] and dtask["actualend"].startswith("2016-06-13T")
        assert dtask["cobalt_activitykey"] == key


async def test_seed_activities_reach_every_ams_provider_through_the_broker(settings, tmp_path, spawn, postgres):
    """iMIS, netFORUM, RAMCO, Aptify, Personify, the configurable HTTP sink (the seed vendor's webhook
    shape) and the PostgreSQL table: one sink worker each, the seed's activities in every one."""
    import asyncpg

    from sinks.providers.aptify.fake import FakeAptify
    from sinks.providers.http.fake import FakeReceiver
    from sinks.providers.imis.fake import FakeImis
    from sinks.providers.netforum.fake import FakeNetforum
    from sinks.providers.personify.fake import FakePersonify
    from sinks.providers.ramco.fake import FakeRamco

    pw = "e2e-ams-secret-5b1e"
    fakes = {"imis": await FakeImis("sync", pw).start(), "netforum": await FakeNetforum("xweb", pw).start(),
             "ramco": await FakeRamco(pw).start(), "aptify": await FakeAptify("sync", pw).start(),
             "personify": await FakePersonify("sync", pw).start(),
             "http": await FakeReceiver("headers", pw, header="X-Api-Key").start()}
    table = f"e2e_{settings.topic_prefix.strip('.')}"
    try:
        common = {"linger_ms": 20}
        endpoints = {
            "imis": {"site_url": fakes["imis"].base_url, "username": "sync", "password_env": "E2E_PW"},
            "netforum": {"url": fakes["netforum"].url, "username": "xweb", "password_env": "E2E_PW"},
            "ramco": {"url": fakes["ramco"].url, "api_key_env": "E2E_PW"},
            "aptify": {"url": fakes["aptify"].url, "username": "sync", "password_env": "E2E_PW"},
            "personify": {"url": fakes["personify"].url, "username": "sync", "password_env": "E2E_PW",
                          "fields": {"ActivityCode": "writeback_code1", "ActivitySubcode": "writeback_code2",
                                     "ActivityDate": "activity_datetime", "ActivityText": "description",
                                     "ActivityKey": "activity_key"}},
            "http": {"preset": "activity_webhook", "url": fakes["http"].url, "headers_env": "E2E_HEADERS"},
            "postgresql": {"dsn": postgres.dsn, "password_env": "E2E_PG", "table": table},
        }
        doc = {"endpoints": [{"name": name, "provider": name, "tenant": "DEMO", "settings": {**s, **common}}
                             for name, s in endpoints.items()], "subscriptions": []}
        for ep in endpoints:
            doc["subscriptions"] += [{"activity_code": c, "endpoint": ep, "description": "{ActivityDescription}",
                                      "writeback_codes": ["COMMUNITY", c[:10]]} for c in CODES]
        path = tmp_path / "ams.yaml"
        path.write_text(yaml.safe_dump(doc))
        object.__setattr__(settings, "config_path", str(path))
        await publish_config_file(settings, path)
        env = worker_env(settings, tmp_path, E2E_PW=pw, E2E_HEADERS=f"X-Api-Key: {pw}", E2E_PG=postgres.password)
        spawn(["-m", "streams.app"], env, "stream")
        for ep in endpoints:
            spawn(["-m", "sinks.worker", ep], env, f"sink-{ep}")
        seeds = seed_events()
        await produce(settings, Topics(settings.topic_prefix).raw,
                      [(None, __import__("json").dumps(e).encode()) for e in seeds])

        async def pg_keys() -> list[str]:
            c = await asyncpg.connect(postgres.dsn, password=postgres.password)
            try:
                return [r[0] for r in await c.fetch(f"SELECT activity_key FROM {table}")]
            except asyncpg.UndefinedTableError:
                return []
            finally:
                await c.close()

        def keys(name):
            f = fakes[name]
            return f.stored_keys()

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 150
        while loop.time() < deadline:
            if all(len(keys(n)) >= len(seeds) for n in fakes) and len(await pg_keys()) >= len(seeds):
                break
            await asyncio.sleep(0.5)
        stored = {n: sorted(keys(n)) for n in fakes} | {"postgresql": sorted(await pg_keys())}
    finally:
        for f in fakes.values():
            await f.stop()
    by_key = {e["ActivityKey"]: e for e in seeds}
    netforum_ids = sorted(r["cma_activity_id"] for r in fakes["netforum"].rows)
    assert stored == {n: sorted(by_key) for n in stored} and netforum_ids == sorted(by_key)
    for key, ev in by_key.items():
        customer = next(ev[k] for k in ("AuthorExternalKey", "AccessedByExternalKey", "MemberExternalKey") if k in ev)
        imis = next(r for r in fakes["imis"].rows if r["UF_7"] == key)
        assert imis["ID"] == customer and imis["ACTIVITY_TYPE"] == "COMMUNITY"
        assert imis["PRODUCT_CODE"] == ev["ActivityCode"][:10]
        nf = next(r for r in fakes["netforum"].rows if r["cma_activity_id"] == key)
        assert nf["cma_cst_key"] == customer and nf["cma_activity_code"] == "COMMUNITY" and nf["cma_eml_key"]
        hook = fakes["http"].stored[key]
        assert hook["ContributorMemberKey"] == customer and hook["ActivityCode"] == ev["ActivityCode"]
        assert hook["ActivityDescription"] == ev["ActivityDescription"]
