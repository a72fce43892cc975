"""The configurable HTTP sink: the shared contract in batch mode with OAuth 2.0 and in the seed
vendor's webhook shape (one activity per POST, fixed headers), plus templates, presets and
answer rules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree

import pytest

from sinks.contract import FatalError, RetriableError
from sinks.providers.http import template as T
from sinks.providers.http.fake import FakeReceiver
from sinks.registry import SettingsError, parse_settings
from activity_sync.devtools.sink_testing import ProviderContract, opt_out, sample_deliveries

OAUTH_SECRET = "http-oauth-secret-for-tests-5d0b"
HEADER_SECRET = "http-header-secret-for-tests-a7e3"
GOLDEN = Path(__file__).resolve().parent / "golden"
BATCH_TEMPLATE = json.dumps({"ActivityKey": "{{activity_key}}", "ContributorMemberKey": "{{customer_id}}",
                             "ActivityCode": "{{activity_code}}", "Date": "{{activity_datetime}}",
                             "Text": "{{description}}", "Subject": "{{detail:Subject}}"})


class TestHttpBatchOAuthContract(ProviderContract):
    provider = "http"
    secrets = (OAUTH_SECRET,)

    async def start_fake(self):
        return await FakeReceiver("oauth2", OAUTH_SECRET, client_id="sync-client").start()

    def settings(self, fake, tmp_path) -> dict:
        return {"url": fake.url, "mode": "batch", "auth": "oauth2", "oauth_endpoint": f"{fake.base_url}/oauth/token",
                "oauth_client_id": "sync-client", "oauth_client_secret_env": "TEST_HTTP_OAUTH", "timeout_s": 2,
                "template": BATCH_TEMPLATE, "batch_wrapper": '{"activities": "{{items}}"}',
                "results_path": "results", "result_key_field": "ActivityKey"}

    def environ(self) -> dict:
        return {"TEST_HTTP_OAUTH": OAUTH_SECRET}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    async def test_body_and_types_from_the_template(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(2, customer=lambda i: f"M-{i}")
        try:
            assert await sink.write(batch) == []
        finally:
            await sink.stop()
        doc = json.loads(fake.bodies[-1][1])
        assert list(doc) == ["activities"] and doc["activities"][0]["ContributorMemberKey"] == "M-0"
        assert doc["activities"][0]["Subject"] == "Annual Conference"
        golden = GOLDEN / "http_batch.json"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        assert doc == json.loads(golden.read_text())


class TestHttpActivityWebhookContract(ProviderContract):
    """The seed vendor's own outbound webhook: one activity per POST, JSON, fixed headers."""

    provider = "http"
    secrets = (HEADER_SECRET,)

    async def start_fake(self):
        return await FakeReceiver("headers", HEADER_SECRET, header="X-Receiver-Key").start()

    def settings(self, fake, tmp_path) -> dict:
        return {"preset": "activity_webhook", "url": fake.url, "headers_env": "TEST_HTTP_HEADERS", "timeout_s": 2}

    def environ(self) -> dict:
        return {"TEST_HTTP_HEADERS": f"X-Receiver-Key: {HEADER_SECRET}"}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    @opt_out("fixed headers authenticate every request: there is no token to expire")
    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        await super().test_expired_token_is_refreshed_once(fake, tmp_path)

    async def test_webhook_fields_json_and_xml(self, fake, tmp_path):
        d = sample_deliveries(1, customer=lambda i: "MK-7")[0]
        sink = await self.sink(fake, tmp_path)
        xml = await self.sink(fake, tmp_path, body_format="xml")
        try:
            assert await sink.write([d]) == []
            other = sample_deliveries(2, customer=lambda i: "MK-8")[1]
            assert await xml.write([other]) == []
        finally:
            await sink.stop()
            await xml.stop()
        (ctype, body), (xtype, xbody) = fake.bodies[-2:]
        doc = json.loads(body)
        assert ctype == "application/json" and doc["ActivityCode"] == d.activity_code
        assert doc["ContributorMemberKey"] == "MK-7" and doc["ActivityDescription"] == d.description
        assert doc["LinkUrl"] == d.link_url and doc["ActivityDate"] == d.activity_date_iso[:19] + "Z"
        root = ElementTree.fromstring(xbody)
        assert xtype == "application/xml" and root.tag == "Activity" and root.findtext("ContributorMemberKey") == "MK-8"
        assert root.findtext("LinkUrl") == other.link_url  # the & in the URL escaped and read back


async def test_basic_auth_form_body_and_answer_rules(tmp_path, monkeypatch):
    fake = await FakeReceiver("basic", "pw-basic-1", username="ams").start()
    monkeypatch.setenv("T_BASIC", "pw-basic-1")
    from sinks.contract import SinkContext
    from sinks.registry import sink_class
    try:
        s = parse_settings("http", {"url": fake.url, "auth": "basic", "username": "ams", "password_env": "T_BASIC",
                                    "body_format": "form", "form_fields": {"ActivityKey": "activity_key",
                                                                           "ContributorMemberKey": "customer_id",
                                                                           "Text": "description:20"}})
        sink = sink_class("http")()
        await sink.start(SinkContext("crm", s))
        batch = sample_deliveries(3, customer=lambda i: "bad" if i == 1 else f"m{i}")
        fake.control({"reject_customers": ["bad"]})
        try:
            failures = await sink.write(batch)
            again = await sink.write([batch[0]])  # 409: the receiver already has it, which is success
        finally:
            await sink.stop()
    finally:
        await fake.stop()
    assert [f.index for f in failures] == [1] and isinstance(failures[0].error, FatalError)
    assert again == [] and fake.duplicates == 1 and len(fake.stored) == 2
    assert fake.stored[batch[0].activity_key]["Text"] == batch[0].description[:20]


def test_templates_escape_and_refuse():
    d = sample_deliveries(1)[0]
    hostile = type(d)(**{**d.__dict__, "description": '"}], "x": 1, {"<b>&\x01'})
    doc = T.render_json(T.parse_json_template('{"a": "{{description}}", "b": "see {{description}}", '
                                              '"c": "{{writeback_code2}}", "n": "{{link_url}}"}'), hostile)
    assert doc["a"] == hostile.description and doc["b"] == "see " + hostile.description
    xml = T.render_xml("<A><B>{{description}}</B></A>", hostile)
    assert ElementTree.fromstring(xml).findtext("B") == '"}], "x": 1, {"<b>&\ufffd'
    with pytest.raises(SettingsError, match="template: .*unknown source 'nope'"):
        parse_settings("http", {"url": "https://x.example", "template": '{"a": "{{nope}}"}'})
    with pytest.raises(SettingsError, match="not JSON"):
        parse_settings("http", {"url": "https://x.example", "template": '{"a": {{customer_id}}}'})
    with pytest.raises(SettingsError, match="not well-formed XML"):
        parse_settings("http", {"url": "https://x.example", "body_format": "xml", "template": "<a>{{customer_id}}"})
    with pytest.raises(SettingsError, match="auth oauth2 needs oauth_endpoint"):
        parse_settings("http", {"url": "https://x.example", "preset": "ux_online"})
    with pytest.raises(SettingsError, match="headers.Authorization"):
        parse_settings("http", {"url": "https://x.example", "preset": "impexium", "headers": {"Authorization": "x"}})
    with pytest.raises(SettingsError, match="url"):
        parse_settings("http", {"preset": "yourmembership"})


def test_every_preset_parses_once_completed():
    extra = {"headers": {}, "basic": {"username": "u", "password_env": "P"}, "bearer": {"bearer_token_env": "B"},
             "oauth2": {"oauth_endpoint": "https://x.example/token", "oauth_client_id": "c",
                        "oauth_client_secret_env": "S"}}
    from sinks.providers.http.settings import PRESETS
    for name, preset in PRESETS.items():
        s = parse_settings("http", {"preset": name, "url": "https://ams.example.org/activities",
                                    **extra.get(preset["auth"], {})})
        assert s.mode == preset["mode"] and s.template


async def test_a_non_json_answer_in_batch_mode_is_retried_not_lost(tmp_path, monkeypatch):
    from aiohttp import web

    from sinks.contract import SinkContext
    from sinks.fakes import FakeServer
    from sinks.registry import sink_class

    class Odd(FakeServer):
        async def ok(self, request):
            return web.Response(text="<html>ok</html>", content_type="text/html")

        def app(self):
            app = web.Application()
            app.router.add_post("/", self.ok)
            return app

    odd = await Odd().start()
    try:
        s = parse_settings("http", {"url": odd.url, "mode": "batch", "template": BATCH_TEMPLATE,
                                    "results_path": "results"})
        sink = sink_class("http")()
        await sink.start(SinkContext("crm", s))
        try:
            with pytest.raises(RetriableError, match="no list at 'results'"):
                await sink.write(sample_deliveries(2))
        finally:
            await sink.stop()
    finally:
        await odd.stop()
