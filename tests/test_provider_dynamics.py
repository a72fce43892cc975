"""The Dynamics 365 / Dataverse provider: the shared contract against its fake (both write modes),
what is its own, and msal + Microsoft's PowerPlatform-Dataverse-Client against the same fake."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp
import pytest

from sinks.contract import RetriableError, Throttled
from sinks.providers.dynamics.fake import FakeDataverse
from sinks.registry import SettingsError, parse_settings
from activity_sync.devtools.sink_testing import ProviderContract, Recorder, sample_deliveries

SECRET = "dv-client-secret-for-tests-93c1"
GOLDEN = Path(__file__).resolve().parent / "golden"
TENANT = "tenant-under-test"


class TestDynamicsContract(ProviderContract):
    provider = "dynamics"
    secrets = (SECRET,)
    write_mode = "upsert_multiple"

    async def start_fake(self):
        return await FakeDataverse(TENANT, "app-under-test", SECRET).start(tls=True)

    def settings(self, fake, tmp_path) -> dict:
        return {"url": fake.base_url, "authority_host": fake.base_url, "tenant_id": TENANT,
                "client_id": "app-under-test", "client_secret_env": "TEST_DV_SECRET", "ca_file": fake.ca_file,
                "contact_bind": "/contacts(new_customerid='{customer_id}')", "timeout_s": 2,
                "write_mode": self.write_mode}

    def environ(self) -> dict:
        return {"TEST_DV_SECRET": SECRET}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    # ------------------------------------------------------------------ Dataverse's own
    async def test_columns_key_and_contact_as_documented_and_redelivery_updates(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(3)
        try:
            assert await sink.write(batch) == []
            assert await sink.write(batch) == []
        finally:
            await sink.stop()
        assert len(fake.records) == 3 and fake.updates == 3
        d = batch[0]
        rec = fake.records[("tasks", d.activity_key)]
        assert rec["new_activitykey"] == d.activity_key and rec["_regardingobjectid_value"] == d.customer_id
        assert rec["subject"] == d.description[:200] and rec["category"] == d.writeback_code1
        assert rec["subcategory"] == d.writeback_code2 and rec["new_activitylink"] == d.link_url
        assert rec["actualend"] == d.activity_date_iso[:19] + "Z" and len(rec["description"]) <= 2000

    async def test_payload_too_large_splits_the_batch(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(16)
        fake.control({"max_body_bytes": 12_000})  # a few records a request
        pub = Recorder()
        try:
            await self.runner(sink, pub, batch_size=16).deliver(self.pending(batch))
        finally:
            await sink.stop()
        assert pub.deads == [] and pub.retries == []
        assert 413 in sink.statuses and sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch)

    async def test_the_request_budget_keeps_the_fake_from_ever_answering_429(self, fake, tmp_path):
        fake.control({"limit_requests": 10, "limit_window_s": 1.0})
        sink = await self.sink(fake, tmp_path, rate_window={"requests": 10, "seconds": 1.0}, batch_size=2)
        batch = sample_deliveries(50)
        t0 = time.monotonic()
        try:
            await self.runner(sink).deliver(self.pending(batch))
        finally:
            await sink.stop()
        took = time.monotonic() - t0
        assert fake.throttled == 0 and 429 not in sink.statuses
        per_request = 2 if self.write_mode == "batch" else 1
        assert took >= (25 * per_request / 10) - 1.2, took  # 25 requests at most 10 a second
        assert sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch)

    async def test_429_retry_after_is_honoured(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, rate_window=None)
        fake.control({"limit_requests": 2, "limit_window_s": 2.0})
        try:
            await sink.write(sample_deliveries(1))
            await sink.write(sample_deliveries(2)[1:])
            with pytest.raises(Throttled) as err:
                await sink.write(sample_deliveries(3)[2:])
        finally:
            await sink.stop()
        assert err.value.retry_after in (1, 2) and "0x80072322" in str(err.value)

    async def test_token_is_renewed_before_it_expires(self, fake, tmp_path):
        fake.control({"token_lifetime_s": 302})  # MSAL renews a token within 5 minutes of its end
        sink = await self.sink(fake, tmp_path)
        try:
            await sink.write(sample_deliveries(1))
            first = fake.token_requests
            await asyncio.sleep(2.5)
            await sink.write(sample_deliveries(2)[1:])
        finally:
            await sink.stop()
        assert first == 1 and fake.token_requests == 2 and 401 not in sink.statuses

    async def test_a_wrong_secret_is_retriable_and_named(self, fake, tmp_path, monkeypatch):
        monkeypatch.setenv("WRONG_DV", "nope")
        sink = await self.sink(fake, tmp_path, client_secret_env="WRONG_DV")
        try:
            with pytest.raises(RetriableError, match="invalid_client.*AADSTS7000215"):
                await sink.write(sample_deliveries(1))
        finally:
            await sink.stop()

    async def test_settings_and_the_cobalt_preset(self, fake, tmp_path):
        base = self.settings(fake, tmp_path)
        with pytest.raises(SettingsError, match="url: .*https"):
            parse_settings("dynamics", {**base, "url": "http://org.crm.dynamics.com"})
        with pytest.raises(SettingsError, match="batch_size.*1000"):
            parse_settings("dynamics", {**base, "batch_size": 1001})
        with pytest.raises(SettingsError, match="client_secret"):
            parse_settings("dynamics", {**base, "client_secret_env": None})
        cobalt = parse_settings("dynamics", {k: v for k, v in base.items() if k != "contact_bind"} | {"preset": "cobalt"})
        assert cobalt.alternate_key == "cobalt_activitykey" and "cobalt_customerid" in cobalt.contact_bind
        assert cobalt.rate_window.requests == 5800 and cobalt.rate_window.seconds == 300
        sink = await self.sink(fake, tmp_path, preset="cobalt", contact_bind="/contacts(cobalt_customerid='{customer_id}')")
        batch = sample_deliveries(2)
        try:
            assert await sink.write(batch) == []
        finally:
            await sink.stop()
        rec = fake.records[("tasks", batch[0].activity_key)]
        assert rec["cobalt_activitykey"] == batch[0].activity_key and rec["cobalt_activitylink"] == batch[0].link_url

    async def test_request_matches_the_golden_file(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        try:
            await sink.write(sample_deliveries(3, customer=lambda i: f"AMS-{1000 + i}"))
        finally:
            await sink.stop()
        name = f"dynamics_{self.write_mode}.json"
        if self.write_mode == "batch":  # the part request lines and their bodies
            got = {"parts": [{"request": line, "body": json.loads(b)}
                             for line, (_, _, b) in zip(fake.batch_lines[-3:], fake.bodies[-3:])]}
        else:
            method, path, body = fake.bodies[-1]
            got = {"method": method, "path": path, "body": json.loads(body)}
        golden = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(json.dumps(got, indent=2, ensure_ascii=False).replace(str(fake.port), "PORT") + "\n")
        assert json.loads(json.dumps(got).replace(str(fake.port), "PORT")) == json.loads(golden.read_text())


class TestDynamicsBatchModeContract(TestDynamicsContract):
    """The same contract with ``write_mode: batch`` ($batch of alternate-key PATCHes, continue-on-error)."""

    write_mode = "batch"

    async def test_per_part_results_and_both_url_forms(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, fields={"subject": "details"})  # too long for subject: per record
        batch = sample_deliveries(3, customer=lambda i: f"c{i}")
        try:
            failures = await sink.write(batch)
        finally:
            await sink.stop()
        assert [f.index for f in failures] == [0, 1, 2] or failures  # the seed's details exceed 200 characters
        assert all("0x80044331" in str(f.error) for f in failures)
        assert any(line.startswith("PATCH https://") for line in fake.batch_lines)  # our sink: absolute URLs


async def test_fake_batch_accepts_relative_urls_and_stops_at_the_first_failure_without_continue_on_error():
    fake = await FakeDataverse("t", "a", "s").start(tls=True)
    try:
        import ssl

        ctx = ssl.create_default_context(cafile=fake.ca_file)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            async with http.post(f"{fake.base_url}/t/oauth2/v2.0/token", data={
                    "grant_type": "client_credentials", "client_id": "a", "client_secret": "s",
                    "scope": f"{fake.base_url}/.default"}) as r:
                token = (await r.json())["access_token"]
            b = "batch_abc"
            parts = [("PATCH", "/api/data/v9.2/tasks(new_activitykey='k1')", {"subject": "ok"}),
                     ("PATCH", "tasks(new_activitykey='k2')", {"subject": "x" * 300}),
                     ("PATCH", "tasks(new_activitykey='k3')", {"subject": "ok"})]
            from sinks.providers.dynamics import odata

            body = "".join(odata.request_part(b, m, u, json.dumps(j)) for m, u, j in parts) + f"--{b}--\r\n"
            headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/mixed; boundary={b}"}
            async with http.post(f"{fake.api}/$batch", data=body, headers=headers) as r:
                status, text, ctype = r.status, await r.text(), r.headers["Content-Type"]
    finally:
        await fake.stop()
    assert status == 400 and fake.stored_keys() == ["k1"]  # stopped at k2: k3 never ran
    answered = odata.parse_multipart(text, odata.boundary_of(ctype))
    assert len(answered) == 1 and odata.status_of(answered[0]) == 400
    assert json.loads(answered[0].body)["error"]["code"] == "0x80044331"


# ---------------------------------------------------------------------------- Microsoft's own clients

async def test_msal_and_the_dataverse_client_against_the_fake(monkeypatch):
    """msal gets a token from the fake Entra ID; PowerPlatform-Dataverse-Client (Microsoft's) creates,
    upserts by alternate key (one PATCH, then UpsertMultiple) and runs a $batch with continue-on-error."""
    import msal
    from azure.core.credentials import AccessToken
    from PowerPlatform.Dataverse.client import DataverseClient
    from PowerPlatform.Dataverse.models.upsert import UpsertItem

    fake = await FakeDataverse("contoso", "cli-app", "cli-secret").start(tls=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.ca_file)  # both libraries use requests

    class MsalCredential:
        def __init__(self):
            self.app = msal.ConfidentialClientApplication(
                "cli-app", client_credential="cli-secret", authority=f"{fake.base_url}/contoso",
                instance_discovery=False)

        def get_token(self, *scopes, **kwargs):
            r = self.app.acquire_token_for_client(scopes=list(scopes))
            assert "access_token" in r, r
            return AccessToken(r["access_token"], int(time.time()) + int(r["expires_in"]))

    def drive():
        cred = MsalCredential()
        first = cred.app.acquire_token_for_client(scopes=[f"{fake.base_url}/.default"])
        assert first.get("token_source") == "identity_provider", first
        again = cred.app.acquire_token_for_client(scopes=[f"{fake.base_url}/.default"])
        with DataverseClient(fake.base_url, cred) as client:
            rid = client.records.create("task", {"subject": "created by the Dataverse client",
                                                 "new_activitykey": "dv-1"})
            client.records.upsert("task", [UpsertItem(alternate_key={"new_activitykey": "dv-2"},
                                                      record={"subject": "one upsert"})])
            client.records.upsert("task", [UpsertItem(alternate_key={"new_activitykey": "dv-2"},
                                                      record={"subject": "upserted again"}),
                                           UpsertItem(alternate_key={"new_activitykey": "dv-3"},
                                                      record={"subject": "upsert multiple"})])
            batch = client.batch.new()
            batch.records.upsert("task", [UpsertItem(alternate_key={"new_activitykey": "dv-4"},
                                                     record={"subject": "in a batch"})])
            batch.records.upsert("task", [UpsertItem(alternate_key={"new_activitykey": "dv-5"},
                                                     record={"subject": "y" * 300})])
            batch.records.upsert("task", [UpsertItem(alternate_key={"new_activitykey": "dv-6"},
                                                     record={"subject": "after the failure"})])
            result = batch.execute(continue_on_error=True)
        return rid, again, result

    try:
        rid, again, result = await asyncio.to_thread(drive)
    finally:
        await fake.stop()
    assert again.get("token_source") == "cache" and fake.token_requests == 1
    assert fake.records[("tasks", "dv-1")]["activityid"] == rid
    assert fake.records[("tasks", "dv-2")]["subject"] == "upserted again" and ("tasks", "dv-3") in fake.records
    assert [r.status_code for r in result.responses] == [204, 400, 204]
    assert result.responses[1].error_code == "0x80044331"
    assert ("tasks", "dv-6") in fake.records and ("tasks", "dv-5") not in fake.records
    assert any(line.startswith("PATCH https://127.0.0.1") for line in fake.batch_lines)  # absolute URLs


async def test_a_custom_table_names_its_contact_lookup_and_without_upsert_multiple_goes_by_batch(tmp_path, monkeypatch,
                                                                                                 caplog):
    """Items 7 and 8 of issue 19: a custom (non-activity) table whose Contact lookup is new_Contact, and
    an org whose table has no UpsertMultiple: the first answer says so, the endpoint switches to $batch
    with one log line, and everything lands linked to its contact."""
    import logging

    from sinks.contract import SinkContext
    from sinks.providers.dynamics.sink import DynamicsSink

    monkeypatch.setenv("TEST_DV_SECRET", SECRET)
    caplog.set_level(logging.WARNING)
    fake = await FakeDataverse(TENANT, "app-under-test", SECRET).start(tls=True)
    settings = parse_settings("dynamics", {
        "url": fake.base_url, "authority_host": fake.base_url, "tenant_id": TENANT, "client_id": "app-under-test",
        "client_secret_env": "TEST_DV_SECRET", "ca_file": fake.ca_file, "timeout_s": 2,
        "entity": "new_communityactivity", "entity_set": "new_communityactivities", "alternate_key": "new_activitykey",
        "contact_lookup": "new_Contact", "contact_bind": "/contacts(new_customerid='{customer_id}')",
        "fields": {"new_name": "description:200", "new_activitydate": "activity_datetime", "new_code": "writeback_code1"}})
    sink = DynamicsSink()
    await sink.start(SinkContext("crm", settings))
    batch = sample_deliveries(6)
    try:
        assert await sink.write(batch[:3]) == []
        assert await sink.write(batch[3:]) == []
    finally:
        await sink.stop()
        await fake.stop()
    assert sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch)
    rec = fake.records[("new_communityactivities", batch[0].activity_key)]
    assert rec["_new_contact_value"] and rec["new_code"] == batch[0].writeback_code1
    assert caplog.text.count("has no UpsertMultiple") == 1  # learnt once, then $batch directly
    assert sum(1 for m, path, _ in fake.bodies if path.endswith("UpsertMultiple")) == 1
    with pytest.raises(SettingsError, match="contact_lookup"):
        parse_settings("dynamics", {**settings.model_dump(), "contact_lookup": "bad name!"})
