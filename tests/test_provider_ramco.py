"""The RAMCO provider: the shared contract against the fake API, the delimiter escape, response
codes read from the body, and pyramco (the public RAMCO client) against the same fake."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from sinks.contract import FatalError, RetriableError
from sinks.providers.ramco import wire
from sinks.providers.ramco.fake import FakeRamco
from sinks.registry import SettingsError, parse_settings
from activity_sync.devtools.sink_testing import ProviderContract, opt_out, sample_deliveries

KEY = "ramco-api-key-for-tests-6a0f"
GOLDEN = Path(__file__).resolve().parent / "golden"


class TestRamcoContract(ProviderContract):
    provider = "ramco"
    secrets = (KEY,)

    async def start_fake(self):
        return await FakeRamco(KEY).start()

    def settings(self, fake, tmp_path) -> dict:
        return {"url": fake.url, "api_key_env": "TEST_RAMCO_KEY", "timeout_s": 2}

    def environ(self) -> dict:
        return {"TEST_RAMCO_KEY": KEY}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    @opt_out("RAMCO authenticates every request with its API key: there is no token to expire")
    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        await super().test_expired_token_is_refreshed_once(fake, tmp_path)

    # ------------------------------------------------------------------ RAMCO's own
    async def test_delimiter_inside_values_survives(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        d = sample_deliveries(1)[0]
        tricky = type(d)(**{**d.__dict__, "description": "Posted in #general | ~team ^ `code` ¦ done, a=b"})
        try:
            assert await sink.write([tricky]) == []
        finally:
            await sink.stop()
        rec = next(iter(fake.records.values()))
        assert rec["cobalt_Description"] == tricky.description and fake.forms[-1]["StringDelimiter"] == "#"
        assert "Iw==" in fake.forms[-1]["AttributeValues"]

    async def test_duplicate_guard_skips_only_an_activity_already_there(self, fake, tmp_path):
        """The guard's GetEntities sends Filter (not Filters, which the API ignores, answering every row):
        with other activities stored, new ones are written and only a redelivered one is skipped."""
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(8)
        try:
            assert await sink.write(batch[:2]) == []
            assert await sink.write(batch) == []
        finally:
            await sink.stop()
        keys = sorted(r["cobalt_ActivityKey"] for r in fake.records.values())
        assert keys == sorted(d.activity_key for d in batch)  # all 8, each once
        assert len(fake.lookups) == 10 and all("Filter" in f and "Filters" not in f for f in fake.lookups)

    def test_wire_round_trip_and_delimiter_choice(self):
        values = {"a": "x#y", "b": 5, "c": "plain, with comma", "d": True, "e": None}
        d = wire.choose_delimiter(values.values())
        assert d == "|" and wire.decode(wire.encode(values, d), d) == {"a": "x#y", "b": 5, "c": "plain, with comma",
                                                                        "d": True}
        assert wire.decode("name=#Iw==1#,n=2.5") == {"name": "#1", "n": 2.5}
        with pytest.raises(ValueError, match="unterminated"):
            wire.decode("name=#open")

    async def test_response_codes_in_the_body_decide(self, fake, tmp_path, monkeypatch):
        sink = await self.sink(fake, tmp_path, entity="cobalt_nosuchentity")
        try:
            failures = await sink.write(sample_deliveries(1))
        finally:
            await sink.stop()
        assert isinstance(failures[0].error, FatalError) and "RAMCO 404" in str(failures[0].error)
        assert fake.requests[-1]["status"] == 404  # as logged by the fake; the HTTP status was 200
        monkeypatch.setenv("WRONG_RAMCO", "not-the-key")
        bad = await self.sink(fake, tmp_path, api_key_env="WRONG_RAMCO")
        try:
            failures = await bad.write(sample_deliveries(1))
        finally:
            await bad.stop()
        assert isinstance(failures[0].error, RetriableError) and "RAMCO 401" in str(failures[0].error)
        assert 200 in bad.statuses and 401 not in bad.statuses

    async def test_settings_refused_with_the_field_named(self, fake, tmp_path):
        base = self.settings(fake, tmp_path)
        with pytest.raises(SettingsError, match="api_key_env or api_key_file"):
            parse_settings("ramco", {**base, "api_key_env": None})
        with pytest.raises(SettingsError, match="settings.api_key: looks like a secret"):
            parse_settings("ramco", {**base, "api_key": "abc"})

    async def test_request_matches_the_golden_file(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        try:
            await sink.write(sample_deliveries(1, customer=lambda i: "3f6b1c2e-0000-4000-8000-000000000042"))
        finally:
            await sink.stop()
        form = {k: v for k, v in fake.forms[-1].items() if k != "Key"}
        golden = GOLDEN / "ramco_create_entity.json"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(json.dumps(form, indent=2, ensure_ascii=False) + "\n")
        assert form == json.loads(golden.read_text())


async def test_pyramco_creates_and_reads_entities_on_the_fake():
    import pyramco

    fake = await FakeRamco("pyramco-key").start()
    saved = pyramco.url
    pyramco.url = fake.url
    try:
        def drive():
            created = pyramco.create_entity("cobalt_communityactivity", {
                "cobalt_ContactId": "c-1", "cobalt_ActivityDate": "2016-06-13T20:10:53Z",
                "cobalt_Description": "tagged #annual", "cobalt_ActivityKey": "k-1"}, api_key="pyramco-key")
            pyramco.create_entity("cobalt_communityactivity", {
                "cobalt_ContactId": "c-2", "cobalt_ActivityDate": "2016-06-13T20:10:53Z", "cobalt_ActivityKey": "k-2"},
                api_key="pyramco-key")
            found = pyramco.get_entities("cobalt_communityactivity", ["cobalt_ActivityKey"],
                                         filters="cobalt_ActivityKey<eq>#k-1#", api_key="pyramco-key")
            refused = pyramco.create_entity("cobalt_communityactivity", {"cobalt_Description": "x"},
                                            api_key="pyramco-key")
            wrong = pyramco.create_entity("cobalt_communityactivity", {"cobalt_ContactId": "c"}, api_key="nope")
            return created, found, refused, wrong

        created, found, refused, wrong = await asyncio.to_thread(drive)
    finally:
        pyramco.url = saved
        await fake.stop()
    assert created["ResponseCode"] == 200 and created["Data"] in fake.records
    assert fake.records[created["Data"]]["cobalt_Description"] == "tagged #annual"
    # the filter as pyramco sends it (Filter) is honoured: one row of the two
    assert found["ResponseCode"] == 200 and [r["cobalt_ActivityKey"] for r in found["Data"]] == ["k-1"]
    assert refused["ResponseCode"] == 400 and refused["DescriptionShort"] == "Bad Request"
    assert wrong["ResponseCode"] == 999  # pyramco has no text for 401 and reports it as unknown
