"""The netFORUM provider: the shared contract against the fake xWeb, the rotating token, SOAP
faults classified, and zeep (a maintained SOAP client) driving the fake through its WSDL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from lxml import etree

from sinks.contract import AuthExpired, BatchRefused, FatalError, RetriableError
from sinks.providers.netforum import soap
from sinks.providers.netforum.fake import FakeNetforum, email_key
from sinks.registry import SettingsError, parse_settings
from activity_sync.devtools.sink_testing import ProviderContract, sample_deliveries

PASSWORD = "xweb-password-for-tests-3c9e"
GOLDEN = Path(__file__).resolve().parent / "golden"


class TestNetforumContract(ProviderContract):
    provider = "netforum"
    secrets = (PASSWORD,)

    async def start_fake(self):
        return await FakeNetforum("xweb-user", PASSWORD).start()

    def settings(self, fake, tmp_path) -> dict:
        return {"url": fake.url, "username": "xweb-user", "password_env": "TEST_NF_PASSWORD", "timeout_s": 2}

    def environ(self) -> dict:
        return {"TEST_NF_PASSWORD": PASSWORD}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        """xWeb answers an expired token with an InvalidTokenException fault (HTTP 500), not 401."""
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(2)
        try:
            await sink.write(batch[:1])
            before, refused = fake.token_requests, fake.stale_refused
            self.control(fake, {"expire_tokens": True})
            await self.runner(sink).deliver(self.pending(batch[1:]))
        finally:
            await sink.stop()
        assert fake.token_requests == before + 1 and fake.stale_refused == refused + 1
        assert sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch)

    # ------------------------------------------------------------------ netFORUM's own
    async def test_every_call_sends_the_token_of_the_latest_answer(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, batch_size=2)
        batch = sample_deliveries(6, customer=lambda i: f"c{i % 3}")
        try:
            await self.runner(sink, batch_size=2).deliver(self.pending(batch))
        finally:
            await sink.stop()
        # one Authenticate; 3 e-mail lookups, 3 duplicate checks and 3 inserts, each with the token the
        # answer before it gave
        assert fake.token_requests == 1 and fake.stale_refused == 0 and fake.lookups == 3
        assert fake.calls == {"Authenticate": 1, "GetCustomerByKey": 3, "GetQuery": 3, "InsertFacadeObject": 3}
        assert len(fake.rows) == 6 and fake.rows[0]["cma_eml_key"] == email_key("c0")

    async def test_a_redelivered_activity_is_looked_up_and_not_inserted_twice(self, fake, tmp_path):
        """Issue 19, item 11: netFORUM has no upsert; one GetQuery a batch finds what is there already."""
        sink = await self.sink(fake, tmp_path, batch_size=10)
        batch = sample_deliveries(6)
        try:
            assert await sink.write(batch[:4]) == []
            assert await sink.write(batch) == []  # a crash repeated four of them
        finally:
            await sink.stop()
        assert sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch) and fake.queries == 2
        off = await self.sink(fake, tmp_path, duplicate_guard=False)
        try:
            assert await off.write(batch[:1]) == []
        finally:
            await off.stop()
        assert len(fake.stored_keys()) == 7  # without the guard: the second row of the same activity

    async def test_a_fault_spends_the_token_and_the_next_call_signs_in_first(self, fake, tmp_path):
        """Issue 19, item 12: after SystemExceptionInfo the token is spent; the sink authenticates before
        its next call instead of sending the spent token (which sent the records to a retry tier)."""
        sink = await self.sink(fake, tmp_path, batch_size=5)
        batch = sample_deliveries(5)
        pub = None
        try:
            fake.control({"fail": {"status": 500, "count": 1}})
            runner = self.runner(sink, batch_size=5)
            pub = runner.publisher
            assert await runner.deliver(self.pending(batch)) is True
        finally:
            await sink.stop()
        assert fake.stale_refused == 0 and fake.token_requests == 2
        assert sorted(fake.stored_keys()) == sorted(d.activity_key for d in batch)
        assert pub.retries == [] and pub.deads == []

    async def test_a_stale_token_is_refused_and_the_sink_signs_in_again(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        try:
            await sink.write(sample_deliveries(1))
            stale = sink._tokens._token.value
            fake.tokens.discard(stale)  # as if an answer was lost: the token we hold was already spent
            with pytest.raises(AuthExpired, match="InvalidTokenException"):
                await sink.write(sample_deliveries(2)[1:])
            await sink.reauthenticate()
            assert await sink.write(sample_deliveries(2)[1:]) == []
        finally:
            await sink.stop()
        assert fake.stale_refused == 1 and len(fake.rows) == 2

    async def test_faults_are_classified(self, fake, tmp_path, monkeypatch):
        sink = await self.sink(fake, tmp_path)
        try:
            fake.control({"reject_customers": ["cust-1"]})
            with pytest.raises(BatchRefused, match="ValidationException"):
                await sink.write(sample_deliveries(2))
            fake.control({"fail": {"status": 500, "count": 1}})
            with pytest.raises(RetriableError, match="SystemExceptionInfo"):
                await sink.write(sample_deliveries(1))
        finally:
            await sink.stop()
        monkeypatch.setenv("WRONG_NF", "nope")
        bad = await self.sink(fake, tmp_path, password_env="WRONG_NF")
        try:
            for _ in range(fake.lock_after):
                with pytest.raises(RetriableError, match="InvalidCredentialsExceptionInfo"):
                    await bad.write(sample_deliveries(1))
            with pytest.raises(FatalError, match="LockedCredentialsExceptionInfo"):
                await bad.write(sample_deliveries(1))
        finally:
            await bad.stop()

    async def test_email_from_a_field_and_settings_refused(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path, email="field",
                               fields={"cma_activity_date": "activity_datetime", "cma_activity_id": "activity_key",
                                       "cma_eml_address": "detail:AuthorEmail"},
                               constants={"cma_eml_key": "5e2f6b1c-0000-4000-8000-000000000001"})
        try:
            assert await sink.write(sample_deliveries(1)) == []
        finally:
            await sink.stop()
        assert fake.lookups == 0 and fake.rows[0]["cma_eml_key"].startswith("5e2f6b1c")
        base = self.settings(fake, tmp_path)
        with pytest.raises(SettingsError, match="password_env or password_file"):
            parse_settings("netforum", {**base, "password_env": None})
        with pytest.raises(SettingsError, match="cma_cst_key"):
            parse_settings("netforum", {**base, "fields": {"cma_cst_key": "customer_id"}})
        with pytest.raises(SettingsError, match="email: field needs"):
            parse_settings("netforum", {**base, "email": "field"})

    async def test_request_matches_the_golden_file(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        try:
            await sink.write(sample_deliveries(2, customer=lambda i: f"6f1e0c1a-7d3b-4c55-9a8e-00000000000{i}"))
        finally:
            await sink.stop()
        body = soap.parse(fake.bodies[-1]).body
        got = etree.tostring(body, pretty_print=True).decode()
        golden = GOLDEN / "netforum_insert.xml"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(got)
        assert got == golden.read_text()


async def test_zeep_authenticates_and_inserts_through_the_fake_wsdl():
    """zeep reads the fake's WSDL, takes the token from the answer's header and sends it back."""
    import zeep
    from zeep.exceptions import Fault

    fake = await FakeNetforum("zeep-user", "zeep-pass").start()
    try:
        def drive():
            client = zeep.Client(f"{fake.url}?WSDL")
            auth = client.service.Authenticate(userName="zeep-user", password="zeep-pass")
            token = auth.header.AuthorizationToken.Token
            cust = client.service.GetCustomerByKey(szCstKey="9a0c",
                                                   _soapheaders={"AuthorizationToken": {"Token": token}})
            token2 = cust.header.AuthorizationToken.Token
            node = soap.rows("CustomerMessagingActivity", [{
                "cma_cst_key": "9a0c", "cma_activity_date": "2016-06-13T20:10:53", "cma_eml_key": email_key("9a0c"),
                "cma_activity_code": "COMMUNITY", "cma_activity_id": "zeep-1"}])
            inserted = client.service.InsertFacadeObject(
                szObjectName="CustomerMessagingActivity", oNode={"_value_1": node},
                _soapheaders={"AuthorizationToken": {"Token": token2}})
            with pytest.raises(Fault) as stale:  # token2 was spent by the insert
                client.service.GetCustomerByKey(szCstKey="9a0c", _soapheaders={"AuthorizationToken": {"Token": token2}})
            return token, token2, cust, inserted, stale.value

        token, token2, cust, inserted, stale = await asyncio.to_thread(drive)
    finally:
        await fake.stop()
    assert token and token2 and token != token2
    assert inserted.header.AuthorizationToken.Token not in (token, token2)
    assert fake.rows[0]["cma_activity_id"] == "zeep-1" and fake.rows[0]["cma_activity_code"] == "COMMUNITY"
    assert stale.message == "Invalid Token Value" and etree.QName(stale.detail[0]).localname == "InvalidTokenException"


async def test_the_wsdl_is_read_at_start_and_an_operation_it_lacks_is_named(tmp_path, monkeypatch):
    """Issue 19, item 10: the public xWeb 2010 WSDL has no GetCustomerByKey. The default settings work
    there (the e-mail key read with GetQuery on Customer); settings needing what the WSDL lacks are
    refused at start in one line naming the operation and the setting that avoids it."""
    from sinks.contract import SinkContext
    from sinks.providers.netforum.fake import XWEB_2010
    from sinks.providers.netforum.sink import NetforumSink

    monkeypatch.setenv("TEST_NF_PASSWORD", PASSWORD)
    old = await FakeNetforum("xweb-user", PASSWORD, operations=XWEB_2010).start()
    bare = await FakeNetforum("xweb-user", PASSWORD, operations=("Authenticate", "InsertFacadeObject")).start()
    try:
        def settings(fake, **kw):
            return parse_settings("netforum", {"url": fake.url, "username": "xweb-user",
                                               "password_env": "TEST_NF_PASSWORD", **kw})

        sink = NetforumSink()
        await sink.start(SinkContext("crm", settings(old)))
        try:
            assert await sink.write(sample_deliveries(3, customer=lambda i: f"c{i}")) == []
        finally:
            await sink.stop()
        assert len(old.rows) == 3 and old.rows[0]["cma_eml_key"] == email_key("c0")
        assert "GetCustomerByKey" not in old.calls and old.lookups == 3
        refused = NetforumSink()
        with pytest.raises(LookupError, match="offers no GetQuery.*duplicate_guard: false.*email: field"):
            await refused.start(SinkContext("crm", settings(bare)))
        await refused.stop()
    finally:
        await old.stop()
        await bare.stop()
