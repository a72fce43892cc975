"""The Aptify and Personify360 providers: the shared contract against their fakes, and what is
their own (Aptify's 404 for an expired token; Personify's Create template then Save)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sinks.contract import FatalError, MappingError, RetriableError
from sinks.providers.aptify.fake import FakeAptify
from sinks.providers.personify.fake import FakePersonify
from sinks.providers.personify.settings import ACTIVITY_FIELDS as PERSONIFY_FIELDS
from sinks.registry import SettingsError, parse_settings
from activity_sync.devtools.sink_testing import ProviderContract, opt_out, sample_deliveries

APTIFY_PASSWORD = "aptify-password-for-tests-b71c"
PERSONIFY_PASSWORD = "pds-password-for-tests-19fe"
GOLDEN = Path(__file__).resolve().parent / "golden"


def golden(name: str, body) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    assert body == json.loads(path.read_text())


class TestAptifyContract(ProviderContract):
    provider = "aptify"
    secrets = (APTIFY_PASSWORD,)

    async def start_fake(self):
        return await FakeAptify("sync", APTIFY_PASSWORD).start()

    def settings(self, fake, tmp_path) -> dict:
        return {"url": fake.url, "username": "sync", "password_env": "TEST_APTIFY_PASSWORD", "timeout_s": 2}

    def environ(self) -> dict:
        return {"TEST_APTIFY_PASSWORD": APTIFY_PASSWORD}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        """Aptify answers an invalid or expired token with 404, not 401 (as documented)."""
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(2)
        try:
            await sink.write(batch[:1])
            before = fake.token_requests
            fake.control({"expire_tokens": True})
            pub = await self._deliver(sink, batch[1:])
        finally:
            await sink.stop()
        assert fake.token_requests == before + 1 and 404 in sink.statuses and pub.retries == []
        assert sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch)

    async def _deliver(self, sink, batch):
        from activity_sync.devtools.sink_testing import Recorder
        pub = Recorder()
        await self.runner(sink, pub).deliver(self.pending(batch))
        return pub

    @opt_out("Aptify's GenericEntity service has no upsert: a redelivery adds a second record")
    async def test_same_activity_twice_is_stored_once(self, fake, tmp_path):
        await super().test_same_activity_twice_is_stored_once(fake, tmp_path)

    async def test_entity_data_as_documented(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, constants={"Source": "Community"})
        batch = sample_deliveries(1, customer=lambda i: "24417")
        try:
            assert await sink.write(batch) == []
        finally:
            await sink.stop()
        body = fake.bodies[-1]
        assert body["ID"] == -1 and body["EntityName"] == "CommunityActivities"
        assert {"Field": "PersonID", "Value": "24417"} in body["EntityData"]
        assert {"Field": "Source", "Value": "Community"} in body["EntityData"]
        golden("aptify_add_data.json", body)

    async def test_the_password_in_the_sign_in_url_never_shows(self, fake, tmp_path, caplog):
        """Aptify takes the password in the sign-in URL's query string: a client error naming that URL
        (a redirect loop here), a refused sign-in and a dead server show neither the password nor the query."""
        import logging

        from aiohttp import web

        async def loop_forever(request):
            raise web.HTTPFound(str(request.url))  # the same URL, query and all, again

        app = web.Application()
        app.router.add_get("/services/Authentication/Login/{provider}", loop_forever)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        caplog.set_level(logging.DEBUG)
        texts = []
        try:
            for url in (f"http://127.0.0.1:{port}", "http://127.0.0.1:9"):  # redirects forever; nobody listening
                sink = await self.sink(fake, tmp_path, url=url)
                try:
                    failures = await sink.write(sample_deliveries(1))
                finally:
                    await sink.stop()
                texts += [str(f.error) for f in failures]
        finally:
            await runner.cleanup()
        assert any("TooManyRedirects" in t for t in texts), texts
        assert all(APTIFY_PASSWORD not in t and "Password=" not in t for t in texts), texts
        ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.access"))
        assert APTIFY_PASSWORD not in ours and "Password=" not in ours  # (the test server's access log aside)

    async def test_wrong_password_and_unknown_field(self, fake, tmp_path, monkeypatch):
        monkeypatch.setenv("WRONG_APTIFY", "nope")
        bad = await self.sink(fake, tmp_path, password_env="WRONG_APTIFY")
        try:
            failures = await bad.write(sample_deliveries(1))
        finally:
            await bad.stop()
        assert isinstance(failures[0].error, RetriableError) and "sign-in refused (HTTP 401)" in str(failures[0].error)
        assert "nope" not in str(failures[0].error)
        sink = await self.sink(fake, tmp_path, constants={"NoSuchField": 1})
        try:
            failures = await sink.write(sample_deliveries(1))
        finally:
            await sink.stop()
        assert isinstance(failures[0].error, FatalError) and "has no field 'NoSuchField'" in str(failures[0].error)
        with pytest.raises(SettingsError, match="customer_id"):
            parse_settings("aptify", {**self.settings(fake, tmp_path), "fields": {"ActivityDate": "activity_date"}})


class TestPersonifyContract(ProviderContract):
    provider = "personify"
    secrets = (PERSONIFY_PASSWORD,)

    async def start_fake(self):
        return await FakePersonify("pds-user", PERSONIFY_PASSWORD).start()

    def settings(self, fake, tmp_path) -> dict:
        return {"url": fake.url, "username": "pds-user", "password_env": "TEST_PDS_PASSWORD", "timeout_s": 2,
                "fields": {**PERSONIFY_FIELDS, "ActivityKey": "activity_key"}}

    def environ(self) -> dict:
        return {"TEST_PDS_PASSWORD": PERSONIFY_PASSWORD}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    @opt_out("Personify Data Services authenticate every request with HTTP Basic: no token to expire")
    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        await super().test_expired_token_is_refreshed_once(fake, tmp_path)

    @opt_out("Personify's Save has no upsert by an external key: a redelivery adds a second row")
    async def test_same_activity_twice_is_stored_once(self, fake, tmp_path):
        await super().test_same_activity_twice_is_stored_once(fake, tmp_path)

    async def test_create_template_then_save_with_master_and_sub_customer(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(3, customer=lambda i: ["000000123-1", "000000456", "000000789-x"][i])
        try:
            failures = await sink.write(batch)
        finally:
            await sink.stop()
        assert [f.index for f in failures] == [2] and isinstance(failures[0].error, MappingError)
        assert fake.templates == 1 and len(fake.records) == 2
        recs = sorted(fake.records.values(), key=lambda r: r["MasterCustomerId"])
        assert (recs[0]["MasterCustomerId"], recs[0]["SubCustomerId"]) == ("000000123", 1)
        assert (recs[1]["MasterCustomerId"], recs[1]["SubCustomerId"]) == ("000000456", 0)
        assert recs[0]["ActivityCode"] == batch[0].writeback_code1 and recs[0]["Priority"] == "MEDIUM"
        golden("personify_save.json", fake.bodies[0])

    async def test_odata_errors_are_read(self, fake, tmp_path, monkeypatch):
        sink = await self.sink(fake, tmp_path, constants={"Nope": "x"})
        try:
            failures = await sink.write(sample_deliveries(1))
        finally:
            await sink.stop()
        assert isinstance(failures[0].error, FatalError) and "does not exist on type 'CusActivity'" in \
            str(failures[0].error)
        monkeypatch.setenv("WRONG_PDS", "nope")
        bad = await self.sink(fake, tmp_path, password_env="WRONG_PDS")
        try:
            failures = await bad.write(sample_deliveries(1))
        finally:
            await bad.stop()
        assert isinstance(failures[0].error, RetriableError) and failures[0].error.status == 401
