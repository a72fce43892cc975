"""The iMIS provider: the shared contract against its fake site, the generic-entity body, the
duplicate guard, and imis-projectweekend (a public iMIS client nobody here wrote) against the fake."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from sinks.contract import FatalError
from sinks.providers.imis.fake import FakeImis
from sinks.registry import SettingsError, parse_settings
from activity_sync.devtools.sink_testing import ProviderContract, sample_deliveries

PASSWORD = "imis-password-for-tests-8d21"
GOLDEN = Path(__file__).resolve().parent / "golden"


class TestImisContract(ProviderContract):
    provider = "imis"
    secrets = (PASSWORD,)

    async def start_fake(self):
        return await FakeImis("sync-user", PASSWORD).start()

    def settings(self, fake, tmp_path) -> dict:
        return {"site_url": fake.base_url, "username": "sync-user", "password_env": "TEST_IMIS_PASSWORD",
                "timeout_s": 2}

    def environ(self) -> dict:
        return {"TEST_IMIS_PASSWORD": PASSWORD}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    # ------------------------------------------------------------------ iMIS's own
    async def test_activity_row_as_documented(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        d = sample_deliveries(1, customer=lambda i: "23145")[0]
        try:
            assert await sink.write([d]) == []
        finally:
            await sink.stop()
        row = fake.rows[0]
        assert row["ID"] == "23145" and row["ACTIVITY_TYPE"] == d.writeback_code1
        assert row["PRODUCT_CODE"] == d.writeback_code2 and row["UF_7"] == d.activity_key
        assert row["TRANSACTION_DATE"] == d.activity_date_iso[:19] and row["DESCRIPTION"] == d.description[:255]
        body = fake.bodies[0]
        assert body["EntityTypeName"] == "Activity" and body["Properties"]["$values"][0]["Name"] == "ID"
        date = next(p for p in body["Properties"]["$values"] if p["Name"] == "TRANSACTION_DATE")
        assert date["Value"]["$type"] == "System.DateTime"

    async def test_duplicate_guard_skips_an_activity_already_written(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(3)
        try:
            assert await sink.write(batch) == []
            fake.control({"fail": {"status": 503, "count": 0}})
            assert await sink.write(batch) == []
        finally:
            await sink.stop()
        assert len(fake.rows) == 3 and fake.queries == 6 and len(fake.requests) == 3
        off = await self.sink(fake, tmp_path, duplicate_guard=False)
        try:
            assert await off.write(batch[:1]) == []
        finally:
            await off.stop()
        assert len(fake.rows) == 4  # iMIS itself has no upsert: without the guard a redelivery is a new row

    async def test_party_id_member_and_refresh_token_grant(self, fake, tmp_path, monkeypatch):
        fake.refresh_tokens.add("refresh-0a1b2c")
        monkeypatch.setenv("TEST_IMIS_REFRESH", "refresh-0a1b2c")
        sink = await self.sink(fake, tmp_path, grant="refresh_token", username=None, password_env=None,
                               refresh_token_env="TEST_IMIS_REFRESH", member_id_property="PartyId",
                               send_entity_type_name=False)
        try:
            assert await sink.write(sample_deliveries(1, customer=lambda i: "101")) == []
        finally:
            await sink.stop()
        body = fake.bodies[0]
        assert "EntityTypeName" not in body and body["PrimaryParentIdentity"]["IdentityElements"]["$values"] == ["101"]
        assert fake.rows[0]["ID"] == "101"

    async def test_a_refused_record_and_a_code_too_long(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, constants={"CATEGORY": "COMMUNITY"})
        batch = sample_deliveries(2)
        batch[1] = type(batch[1])(**{**batch[1].__dict__, "writeback_code1": "X" * 11})
        try:
            failures = await sink.write(batch)
        finally:
            await sink.stop()
        assert [f.index for f in failures] == [1] and isinstance(failures[0].error, FatalError)
        assert "ACTIVITY_TYPE is longer than 10" in str(failures[0].error)
        assert fake.rows[0]["CATEGORY"] == "COMMUNITY"

    async def test_settings_refused_with_the_field_named(self, fake, tmp_path):
        base = self.settings(fake, tmp_path)
        with pytest.raises(SettingsError, match="password_env or password_file"):
            parse_settings("imis", {**base, "password_env": None})
        with pytest.raises(SettingsError, match="fields.ID"):
            parse_settings("imis", {**base, "fields": {"ID": "customer_id"}})
        with pytest.raises(SettingsError, match="settings.password: looks like a secret"):
            parse_settings("imis", {**base, "password": "hunter2"})
        with pytest.raises(SettingsError, match="batch_size.*100"):
            parse_settings("imis", {**base, "batch_size": 500})

    async def test_request_matches_the_golden_file(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        try:
            await sink.write(sample_deliveries(1, customer=lambda i: "23145"))
        finally:
            await sink.stop()
        golden = GOLDEN / "imis_activity.json"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(json.dumps(fake.bodies[-1], indent=2, ensure_ascii=False) + "\n")
        assert fake.bodies[-1] == json.loads(golden.read_text())


async def test_imis_projectweekend_client_creates_an_activity_on_the_fake():
    """imis-projectweekend signs in at /token and posts an Activity without EntityTypeName."""
    import imis.api
    import requests

    fake = await FakeImis("client-user", "client-pass").start()
    try:
        def drive():
            client = imis.api.Client(fake.base_url, "client-user", "client-pass")
            created = client.create_activity({"ID": "4412", "ACTIVITY_TYPE": "COMMUNITY", "UNITS": 2.0})
            with pytest.raises(imis.api.AuthError):
                imis.api.Client(fake.base_url, "client-user", "wrong")
            with pytest.raises(requests.HTTPError):
                client.create_activity({"ID": "4412"})  # no ACTIVITY_TYPE
            return created

        created = await asyncio.to_thread(drive)
    finally:
        await fake.stop()
    assert created["ID"] == "4412" and created["ACTIVITY_TYPE"] == "COMMUNITY" and created["SEQN"] == 1001
    assert fake.rows == [{"ID": "4412", "ACTIVITY_TYPE": "COMMUNITY", "UNITS": 2.0, "SEQN": 1001}]
