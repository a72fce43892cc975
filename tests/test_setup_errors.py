"""A whole-request setup error (a column that does not exist, no privilege on the table, a wrong path)
pauses the endpoint with its reason: nothing is dead-lettered or sent to a retry tier, the take
waits, and a fixed config (or, for a fix made in the CRM, the next try) delivers it (issue 19)."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import REGISTRY
from test_endpoint_delivery import messages

from activity_sync.devtools.sink_testing import Recorder
from activity_sync.tools import seed_lines
from core.catalog import load_catalog
from core.config import Subscription
from core.avro import SingleObjectCodec
from core.routing import Routing
from sinks.delivery import EndpointDelivery
from sinks.providers.dynamics.fake import FakeDataverse
from sinks.providers.http.fake import FakeReceiver
from sinks.providers.salesforce.fake import FakeSalesforce

SECRET = "setup-error-secret-3c1d"
SEED_KEYS = ["aquill", "0037yHT1MAAW", "clindqvist", "0037000000uwuhgAAA"]


async def salesforce():
    fake = await FakeSalesforce("app", SECRET, contact_keys={"Member_Number__c": SEED_KEYS}).start()
    good = {"login_url": fake.base_url, "client_id": "app", "client_secret_env": "T_SETUP_SECRET",
            "contact_match": "external_id", "contact_external_id_field": "Member_Number__c", "linger_ms": 5}
    fields = {"WhoId": "customer_id", "Subject": "subject", "ActivityDate": "activity_date", "Bogus__c": "description"}
    return fake, dict(good, fields=fields), good, "INVALID_FIELD", lambda: fake.stored_keys()


async def dynamics():
    fake = await FakeDataverse("tenant-x", "app", SECRET).start(tls=True)
    good = {"url": fake.base_url, "authority_host": fake.base_url, "tenant_id": "tenant-x", "client_id": "app",
            "client_secret_env": "T_SETUP_SECRET", "ca_file": fake.ca_file, "linger_ms": 5,
            "contact_bind": "/contacts(new_customerid='{customer_id}')"}
    bad = dict(good, fields={"subject": "subject", "new_nosuchcolumn": "description"})
    return fake, bad, good, "0x80060888", lambda: fake.stored_keys()


async def http():
    fake = await FakeReceiver("headers", SECRET, header="X-Key").start()
    good = {"preset": "activity_webhook", "url": fake.url, "headers_env": "T_SETUP_HEADERS", "linger_ms": 5}
    return fake, dict(good, url=fake.base_url + "/no/such/path"), good, "HTTP 404", lambda: fake.stored_keys()


def endpoint(provider: str, settings: dict) -> bytes:
    return json.dumps({"name": "crm", "provider": provider, "tenant": "DEMO", "settings": settings}).encode()


def paused_gauge() -> float:
    return REGISTRY.get_sample_value("activity_sync_endpoint_paused", {"endpoint": "crm"}) or 0.0


@pytest.mark.parametrize("provider, make", [("salesforce", salesforce), ("dynamics", dynamics), ("http", http)])
async def test_a_setup_error_pauses_the_endpoint_and_a_fixed_config_delivers(provider, make, monkeypatch):
    monkeypatch.setenv("T_SETUP_SECRET", SECRET)
    monkeypatch.setenv("T_SETUP_HEADERS", f"X-Key: {SECRET}")
    fake, bad, good, code, stored = await make()
    routing = Routing(load_catalog())
    routing.apply_record("endpoint:crm", endpoint(provider, bad))
    for c in {json.loads(x)["ActivityCode"] for x in seed_lines()}:
        routing.put_subscription(Subscription(c, "crm", "{ActivityCode} in {ParentName}", True, "W1", "W2"))
    pub = Recorder()
    d = EndpointDelivery("crm", routing, pub, SingleObjectCodec().decode, on_deleted=lambda: None, poll_s=0.05)
    batch = messages(routing, 0, 10)
    try:
        task = asyncio.ensure_future(d.deliver(batch))
        for _ in range(100):
            if d.paused and "setup error" in d.paused:
                break
            await asyncio.sleep(0.05)
        requests = fake.stats()["requests"]
        await asyncio.sleep(0.5)
        assert not task.done(), "the take did not wait"
        assert "setup error" in d.paused and code in d.paused, d.paused
        assert pub.deads == [] and pub.retries == [] and stored() == []
        assert paused_gauge() == 1
        assert fake.stats()["requests"] == requests, "it kept sending while paused"
        assert requests <= 2, f"{requests} requests: a setup error is one answer, not one per record"
        routing.apply_record("endpoint:crm", endpoint(provider, good))  # the fix
        assert await asyncio.wait_for(task, 15) is True
    finally:
        await d.stop()
        await fake.stop()
    assert sorted(stored()) == sorted(f"act-{i:06d}" for i in range(10))
    assert pub.deads == [] and pub.retries == [] and not d.paused and paused_gauge() == 0


async def test_a_fix_made_in_the_crm_is_found_by_the_next_try(monkeypatch):
    """A 403 (the app's role lacks the privilege): nothing in the config to change; the endpoint tries
    again after ACTIVITY_SYNC_SETUP_RETRY_S and delivers once the role is fixed."""
    monkeypatch.setenv("T_SETUP_SECRET", SECRET)
    monkeypatch.setenv("ACTIVITY_SYNC_SETUP_RETRY_S", "1")
    fake, _, good, _, stored = await dynamics()
    fake.control({"forbid_tables": ["task"]})
    routing = Routing(load_catalog())
    routing.apply_record("endpoint:crm", endpoint("dynamics", good))
    for c in {json.loads(x)["ActivityCode"] for x in seed_lines()}:
        routing.put_subscription(Subscription(c, "crm", "{ActivityCode}", True, "W1", "W2"))
    pub = Recorder()
    d = EndpointDelivery("crm", routing, pub, SingleObjectCodec().decode, on_deleted=lambda: None, poll_s=0.05)
    try:
        task = asyncio.ensure_future(d.deliver(messages(routing, 0, 5)))
        for _ in range(100):
            if d.paused and "prvWrite" in d.paused:
                break
            await asyncio.sleep(0.05)
        assert "HTTP 403" in d.paused and stored() == []
        await asyncio.sleep(1.5)
        assert not task.done() and pub.deads == [] and pub.retries == []  # tried again, still refused
        fake.control({"forbid_tables": []})  # the admin gives the role its privilege
        assert await asyncio.wait_for(task, 10) is True
    finally:
        await d.stop()
        await fake.stop()
    assert len(stored()) == 5 and pub.deads == []
