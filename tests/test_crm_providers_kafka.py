"""The seed's example activities reach the Salesforce and Dataverse fakes end to end through the
real broker: the stream worker enriches them, one sink worker per endpoint writes them, and each
fake holds them with the fields the README documents."""

from __future__ import annotations

import asyncio

import yaml
from conftest import produce, publish_config_file, seed_events, worker_env

from sinks.providers.dynamics.fake import FakeDataverse
from sinks.providers.salesforce.fake import FakeSalesforce
from streams.topics import Topics

SF_SECRET, DV_SECRET = "e2e-sf-secret-77a1", "e2e-dv-secret-0c4d"
CODES = sorted({e["ActivityCode"] for e in seed_events()})


async def test_seed_activities_reach_salesforce_and_dataverse_through_the_broker(settings, tmp_path, spawn):
    sf = await FakeSalesforce("e2e-app", SF_SECRET).start()
    dv = await FakeDataverse("e2e-tenant", "e2e-app", DV_SECRET).start(tls=True, ca_file=tmp_path / "ca.pem")
    try:
        doc = {"endpoints": [
            {"name": "fonteva", "provider": "salesforce", "tenant": "DEMO", "settings": {
                "preset": "fonteva", "login_url": sf.base_url, "client_id": "e2e-app",
                "client_secret_env": "E2E_SF_SECRET", "linger_ms": 20}},
            {"name": "nimble", "provider": "salesforce", "tenant": "DEMO", "settings": {
                "preset": "nimble_ams", "schedule": "realtime", "login_url": sf.base_url, "client_id": "e2e-app",
                "client_secret_env": "E2E_SF_SECRET", "linger_ms": 20}},
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
        assert task["WhoId"] == customer and task["Type"] == "COMMUNITY"
        assert task["Writeback_Code_2__c"] == ev["ActivityCode"] and task["Status"] == "Completed"
        assert task["Subject"] == ev["ActivityDescription"][:255] and task["ActivityDate"] == "2016-06-13"
        nimble = sf.records[("Community_Activity__c", key)]
        assert nimble["WhoId__c"] == customer and nimble["ActivityDate__c"].startswith("2016-06-13T")
        assert nimble["Type__c"] == "COMMUNITY" and nimble["Description__c"] == ev["ActivityDescription"]
        dtask = dv.records[("tasks", key)]
        assert dtask["_regardingobjectid_value"] == customer and dtask["subcategory"] == ev["ActivityCode"]
        assert dtask["subject"] == ev["ActivityDescription"][:200] and dtask["actualend"].startswith("2016-06-13T")
        assert dtask["cobalt_activitykey"] == key
