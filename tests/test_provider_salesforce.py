"""The Salesforce provider: the shared contract against its fake org, what is its own, and
simple-salesforce (a maintained client nobody here wrote) against the same fake over TLS."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sinks.contract import FatalError, RetriableError, Throttled
from sinks.metrics import API_USAGE
from sinks.providers.salesforce.fake import FakeSalesforce
from sinks.providers.salesforce.sink import parse_limit_info
from sinks.registry import SettingsError, parse_settings
from activity_sync.devtools.sink_testing import ProviderContract, sample_deliveries

SECRET = "sf-consumer-secret-for-tests-51b2"
GOLDEN = Path(__file__).resolve().parent / "golden"


def rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


class TestSalesforceContract(ProviderContract):
    provider = "salesforce"
    secrets = (SECRET,)

    async def start_fake(self):
        # the contract's members (cust-0 … cust-16) are Contacts known by their member number
        return await FakeSalesforce("test-consumer-key", SECRET,
                                    contact_keys={"Member_Number__c": [f"cust-{i}" for i in range(17)]}).start()

    def settings(self, fake, tmp_path) -> dict:
        return {"login_url": fake.base_url, "client_id": "test-consumer-key",
                "client_secret_env": "TEST_SF_SECRET", "timeout_s": 2, "limit_backoff_s": 1,
                "contact_match": "external_id", "contact_external_id_field": "Member_Number__c"}

    def environ(self) -> dict:
        return {"TEST_SF_SECRET": SECRET}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    # ------------------------------------------------------------------ Salesforce's own
    async def test_task_fields_as_documented_and_redelivery_updates(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, contact_match="id")
        batch = sample_deliveries(2, customer=lambda i: f"003000000000{i:03d}AAA")
        try:
            assert await sink.write(batch) == []
            assert await sink.write(batch) == []
        finally:
            await sink.stop()
        assert fake.updates == 2 and len(fake.records) == 2
        task = fake.records[("Task", batch[0].activity_key)]
        d = batch[0]
        assert task["WhoId"] == d.customer_id and task["ActivityDate"] == d.activity_date_iso[:10]
        assert task["Subject"] == d.description[:255] and task["Type"] == d.writeback_code1
        assert task["Writeback_Code_2__c"] == d.writeback_code2 and task["Activity_Link__c"] == d.link_url
        assert task["Status"] == "Completed" and "Body: " in task["Description"]
        body = fake.bodies[0]
        assert body["allOrNone"] is False and all("Id" not in r for r in body["records"])

    async def test_the_same_activity_twice_in_one_take_lands_once(self, fake, tmp_path):
        """Salesforce answers DUPLICATE_VALUE for both records of one external ID in a call (the fake
        too); the runner leaves the repeat out before the sink sees it, so the activity lands."""
        from activity_sync.devtools.sink_testing import Recorder
        from sinks.runner import DeliveryRunner, Pending, RetryPolicy

        sink = await self.sink(fake, tmp_path, contact_match="id")
        batch = sample_deliveries(3, customer=lambda i: f"003000000000{i:03d}AAA")
        try:
            failures = await sink.write([batch[0], batch[0], batch[1]])  # what a provider would be sent
            assert sorted(f.index for f in failures) == [0, 1]
            assert all("DUPLICATE_VALUE" in str(f.error) for f in failures)
            pub = Recorder()
            runner = DeliveryRunner("crm", sink, pub, RetryPolicy(inline_attempts=1, inline_backoff_s=0))
            repeated = [Pending(d, b"k", b"v", ("t", 0, i)) for i, d in enumerate([*batch, batch[2], batch[0]])]
            assert await runner.deliver(repeated) is True
        finally:
            await sink.stop()
        assert pub.deads == [] and pub.retries == []
        assert sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch)
        assert [len(b["records"]) for b in fake.bodies[-1:]] == [3]

    async def test_per_record_errors_use_status_code_and_are_classified(self, fake, tmp_path):
        # a limit declared longer than the org's field: Salesforce's own STRING_TOO_LONG is that record's
        sink = await self.sink(fake, tmp_path, fields={"WhoId": "customer_id", "Subject": "details_xml"},
                               field_limits={"Subject": 100_000})
        batch = sample_deliveries(3)
        fake.control({"lock_rows": 1})
        try:
            failures = await sink.write(batch)
        finally:
            await sink.stop()
        by = {f.index: f.error for f in failures}
        assert isinstance(by[0], RetriableError) and "UNABLE_TO_LOCK_ROW" in str(by[0])
        assert isinstance(by[1], FatalError) and "STRING_TOO_LONG" in str(by[1]) and "Subject" in str(by[1])

    async def test_required_field_missing_on_the_nimble_object(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, preset="nimble_ams", schedule="realtime", contact_match="id",
                               fields={"Type__c": "writeback_code1"})
        try:
            failures = await sink.write(sample_deliveries(2))
        finally:
            await sink.stop()
        assert [f.index for f in failures] == [0, 1]
        assert all("REQUIRED_FIELD_MISSING" in str(f.error) and "WhoId__c" in str(f.error) for f in failures)

    async def test_over_the_allocation_is_403_request_limit_exceeded_held_back_by_the_setting(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, limit_backoff_s=42)
        fake.control({"api_limit": 10, "api_used": 10})
        try:
            with pytest.raises(Throttled) as err:
                await sink.write(sample_deliveries(1))
        finally:
            await sink.stop()
        assert err.value.status == 403 and err.value.retry_after == 42 and "REQUEST_LIMIT_EXCEEDED" in str(err.value)

    async def test_usage_is_exported_and_the_endpoint_slows_down_near_the_allocation(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, limit_backoff_s=0.4, slow_down_at=0.8)
        fake.control({"api_limit": 100_000, "api_used": 10})
        batch = sample_deliveries(6)
        try:
            await sink.write(batch[:1])
            assert sink.pacing_s() == 0
            assert API_USAGE.labels("crm", "used")._value.get() == 11
            assert API_USAGE.labels("crm", "limit")._value.get() == 100_000
            fake.control({"api_used": 99_000})  # 99%: 1,000 requests left for the day
            await sink.write(batch[1:2])
            assert sink.pacing_s() == pytest.approx(0.4)  # 86.4 s a request, capped by limit_backoff_s
            t0 = time.monotonic()
            await self.runner(sink, batch_size=1).deliver(self.pending(batch[2:5]))
            took = time.monotonic() - t0
        finally:
            await sink.stop()
        assert took >= 0.8, took  # three requests, two waits of 0.4 s between them
        assert len(fake.stored_keys()) == 5

    async def test_jwt_bearer_flow(self, fake, tmp_path, monkeypatch):
        private, public = rsa_pair()
        key = tmp_path / "sf-key.pem"
        key.write_bytes(private)
        fake.public_key_pem, fake.username = public, "integration@example.org"
        sink = await self.sink(fake, tmp_path, auth="jwt_bearer", client_secret_env=None, private_key_file=str(key),
                               username="integration@example.org", audience=fake.base_url)
        try:
            assert await sink.write(sample_deliveries(1)) == []
        finally:
            await sink.stop()
        other, _ = rsa_pair()
        (tmp_path / "wrong.pem").write_bytes(other)
        bad = await self.sink(fake, tmp_path, auth="jwt_bearer", client_secret_env=None,
                              private_key_file=str(tmp_path / "wrong.pem"), username="integration@example.org",
                              audience=fake.base_url)
        try:
            with pytest.raises(RetriableError, match="invalid_grant"):
                await bad.write(sample_deliveries(2)[1:])
        finally:
            await bad.stop()
        assert len(fake.stored_keys()) == 1

    async def test_client_credentials_with_http_basic_and_a_wrong_secret(self, fake, tmp_path, monkeypatch):
        sink = await self.sink(fake, tmp_path, client_auth="basic")
        try:
            assert await sink.write(sample_deliveries(1)) == []
        finally:
            await sink.stop()
        monkeypatch.setenv("WRONG_SF", "not-it")
        bad = await self.sink(fake, tmp_path, client_secret_env="WRONG_SF")
        try:
            with pytest.raises(RetriableError, match="invalid_client"):
                await bad.write(sample_deliveries(1))
        finally:
            await bad.stop()

    async def test_presets(self, fake, tmp_path):
        nimble = parse_settings("salesforce", {**self.settings(fake, tmp_path), "preset": "nimble_ams"})
        assert nimble.sobject == "Community_Activity__c" and nimble.interval_s == 1800 and nimble.batch_size == 200
        fonteva = parse_settings("salesforce", {**self.settings(fake, tmp_path), "preset": "fonteva"})
        assert fonteva.sobject == "Task" and fonteva.fields["WhoId"] == "customer_id"
        sink = await self.sink(fake, tmp_path, preset="nimble_ams", schedule="realtime")
        batch = sample_deliveries(3)
        try:
            assert await sink.write(batch) == []
        finally:
            await sink.stop()
        rec = fake.records[("Community_Activity__c", batch[0].activity_key)]
        # the member's number resolved to the Contact's Id through the WhoId__r relationship
        assert rec["WhoId__c"] == fake.contact_keys[("Member_Number__c", batch[0].customer_id)]
        assert rec["ActivityDate__c"].endswith("Z")
        assert rec["Type__c"] == batch[0].writeback_code1 and rec["Description__c"] == batch[0].description

    async def test_settings_refused_with_the_field_named(self, fake, tmp_path):
        base = self.settings(fake, tmp_path)
        with pytest.raises(SettingsError, match="batch_size.*200"):
            parse_settings("salesforce", {**base, "batch_size": 500})
        with pytest.raises(SettingsError, match="fields.*unknown source 'nope'"):
            parse_settings("salesforce", {**base, "fields": {"WhoId": "nope"}})
        with pytest.raises(SettingsError, match="client_secret"):
            parse_settings("salesforce", {**base, "client_secret_env": None})
        with pytest.raises(SettingsError, match="client_secret.*looks like a secret"):
            parse_settings("salesforce", {**base, "client_secret": "abc"})
        with pytest.raises(SettingsError, match="api_version.*45.0 is too old.*46.0"):
            parse_settings("salesforce", {**base, "api_version": "45.0"})
        with pytest.raises(SettingsError, match="login_url.*https"):
            parse_settings("salesforce", {**base, "login_url": "http://acme.my.salesforce.com"})
        assert parse_settings("salesforce", {**base, "login_url": "http://127.0.0.1:9/"}).login_url == "http://127.0.0.1:9"

    async def test_the_seeds_members_land_by_external_id_and_are_refused_as_ids(self, fake, tmp_path):
        """The seed's five activities with its external keys (aquill, clindqvist, …): in Id mode Salesforce
        refuses all but the one key shaped like an Id (MALFORMED_ID); looked up by the Contact's external
        ID they all land, and a key no Contact holds is refused with Salesforce's own message."""
        seed_keys = ["aquill", "aquill", "0037yHT1MAAW", "clindqvist", "0037000000uwuhgAAA"]
        for key in set(seed_keys):
            fake.add_contact("Member_Number__c", key)
        fake.contacts = None
        batch = sample_deliveries(5, customer=lambda i: seed_keys[i])
        by_id = await self.sink(fake, tmp_path, contact_match="id")
        try:
            failures = await by_id.write(batch)
        finally:
            await by_id.stop()
        assert sorted(f.index for f in failures) == [0, 1, 2, 3]
        assert all(isinstance(f.error, FatalError) and "MALFORMED_ID" in str(f.error) for f in failures)
        assert fake.stored_keys() == [batch[4].activity_key]
        by_key = await self.sink(fake, tmp_path)
        try:
            assert await by_key.write(batch) == []
            unknown = await by_key.write(sample_deliveries(1, customer=lambda i: "nobody-42"))
        finally:
            await by_key.stop()
        assert sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch)
        sent = fake.bodies[-2]["records"][0]
        assert "WhoId" not in sent and sent["Who"] == {"attributes": {"type": "Contact"}, "Member_Number__c": "aquill"}
        assert fake.records[("Task", batch[0].activity_key)]["WhoId"] == fake.contact_keys[("Member_Number__c", "aquill")]
        assert len(unknown) == 1 and "INVALID_FIELD" in str(unknown[0].error)
        assert "Foreign key external ID: nobody-42 not found for field Member_Number__c" in str(unknown[0].error)

    def test_external_id_mode_needs_its_field(self, fake, tmp_path):
        base = {**self.settings(fake, tmp_path)}
        with pytest.raises(SettingsError, match="contact_external_id_field"):
            parse_settings("salesforce", {**base, "contact_external_id_field": None})
        nimble = parse_settings("salesforce", {**base, "preset": "nimble_ams"})
        assert nimble.contact_lookup == "WhoId__c"

    def test_the_jwt_audience_follows_a_sandbox_login_url(self):
        jwt = {"client_id": "c", "auth": "jwt_bearer", "private_key_env": "K", "username": "u@example.org"}
        aud = {url: parse_settings("salesforce", {**jwt, "login_url": url}).jwt_audience
               for url in ("https://test.salesforce.com", "https://acme--uat.sandbox.my.salesforce.com",
                           "https://acme.my.salesforce.com", "https://login.salesforce.com")}
        assert list(aud.values()) == ["https://test.salesforce.com"] * 2 + ["https://login.salesforce.com"] * 2
        explicit = parse_settings("salesforce", {**jwt, "login_url": "https://test.salesforce.com",
                                                 "audience": "https://login.salesforce.com"})
        assert explicit.jwt_audience == "https://login.salesforce.com"

    async def test_request_matches_the_golden_file(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, contact_match="id")
        try:
            await sink.write(sample_deliveries(5, customer=lambda i: f"0035e00000ABCD{i}AAA"))
        finally:
            await sink.stop()
        golden = GOLDEN / "salesforce_upsert.json"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(json.dumps(fake.bodies[-1], indent=2, ensure_ascii=False) + "\n")
        assert fake.bodies[-1] == json.loads(golden.read_text())


def test_limit_info_header():
    assert parse_limit_info("api-usage=18/15000") == (18, 15000)
    assert parse_limit_info("api-usage=5/100, per-app-api-usage=2/50(appName=x)") == (5, 100)
    assert parse_limit_info(None) is None


# ---------------------------------------------------------------------------- simple-salesforce

async def test_simple_salesforce_restful_upsert_against_the_fake_over_tls(tmp_path):
    """simple-salesforce always speaks https; the fake serves TLS from a CA made here."""
    import requests
    from simple_salesforce import Salesforce
    from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceRefusedRequest

    fake = await FakeSalesforce("cli-key", "cli-secret").start(tls=True, ca_file=tmp_path / "ca.pem")
    try:
        def drive():
            http = requests.Session()
            http.verify = fake.ca_file
            http.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment overrides verify
            tok = http.post(f"{fake.base_url}/services/oauth2/token",
                            auth=("cli-key", "cli-secret"), data={"grant_type": "client_credentials"}).json()
            assert tok["token_type"] == "Bearer" and "expires_in" not in tok
            sf = Salesforce(instance_url=tok["instance_url"], session_id=tok["access_token"], session=http,
                            version="62.0")
            body = {"allOrNone": False, "records": [
                {"attributes": {"type": "Task"}, "Activity_Key__c": "k-1", "Subject": "Posted",
                 "WhoId": "003000000000001AAA"},
                {"attributes": {"type": "Task"}, "Activity_Key__c": "k-2", "Subject": "x" * 300,
                 "WhoId": "003000000000002AAA"}]}
            first = sf.restful("composite/sobjects/Task/Activity_Key__c", method="PATCH", data=json.dumps(body))
            again = sf.restful("composite/sobjects/Task/Activity_Key__c", method="PATCH", data=json.dumps(body))
            usage = sf.api_usage["api-usage"]
            fake.control({"api_limit": 2, "api_used": 2})
            with pytest.raises(SalesforceRefusedRequest) as refused:
                sf.restful("composite/sobjects/Task/Activity_Key__c", method="PATCH", data=json.dumps(body))
            fake.control({"expire_tokens": True})
            with pytest.raises(SalesforceExpiredSession):
                sf.restful("composite/sobjects/Task/Activity_Key__c", method="PATCH", data=json.dumps(body))
            return first, again, usage, refused.value.content

        first, again, usage, refused = await asyncio.to_thread(drive)
    finally:
        await fake.stop()
    assert first[0]["success"] and first[0]["created"] is True and first[0]["id"].startswith("00T")
    assert first[1] == {"success": False, "errors": [{"statusCode": "STRING_TOO_LONG", "fields": ["Subject"],
                                                      "message": first[1]["errors"][0]["message"]}]}
    assert again[0]["created"] is False and again[0]["id"] == first[0]["id"]
    assert usage.used == 2 and usage.total == 100_000
    assert refused[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


async def test_a_description_longer_than_the_field_is_cut_with_a_marker_not_dead_lettered(tmp_path, monkeypatch):
    """Task.Description is a 32,000-character Long Text Area: Salesforce refuses more (STRING_TOO_LONG,
    the fake too); the sink cuts it to the field's length, ending with a visible marker."""
    from sinks.mapping import CUT_MARKER
    from sinks.registry import parse_settings as parse
    from sinks.contract import SinkContext
    from sinks.providers.salesforce.sink import SalesforceSink

    monkeypatch.setenv("TEST_SF_SECRET", SECRET)
    fake = await FakeSalesforce("test-consumer-key", SECRET).start()
    settings = parse("salesforce", {"login_url": fake.base_url, "client_id": "test-consumer-key",
                                    "client_secret_env": "TEST_SF_SECRET", "timeout_s": 2,
                                    "fields": {"WhoId": "customer_id", "Subject": "description",
                                               "Description": "description"}})
    sink = SalesforceSink()
    await sink.start(SinkContext("crm", settings))
    d = sample_deliveries(1, customer=lambda i: "003000000000001AAA")[0]
    long = type(d)(**{**d.__dict__, "description": "x" * 40_000})
    try:
        assert await sink.write([long]) == []
    finally:
        await sink.stop()
        await fake.stop()
    task = fake.records[("Task", d.activity_key)]
    assert len(task["Description"]) == 32_000 and task["Description"].endswith(CUT_MARKER)
    assert len(task["Subject"]) == 255 and task["Subject"].endswith(CUT_MARKER)
