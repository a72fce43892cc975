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
    from core.fakes import FakeServer
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


async def _sink(settings: dict, monkeypatch):
    from sinks.contract import SinkContext
    from sinks.providers.http.sink import ConfigurableHttpSink

    monkeypatch.setenv("TEST_HTTP_HEADERS", f"X-Receiver-Key: {HEADER_SECRET}")
    sink = ConfigurableHttpSink()
    await sink.start(SinkContext("crm", parse_settings("http", settings)))
    return sink


async def test_placeholders_in_the_url_and_headers_are_rendered_per_record_and_url_encoded(monkeypatch):
    """Issue 19, item 14: PUT by key, the member and the activity in the path and an idempotency header,
    each value URL-encoded; before, the braces went out literally (%7B%7Bcustomer_id%7D%7D)."""
    fake = await FakeReceiver("headers", HEADER_SECRET, header="X-Receiver-Key").start()
    sink = await _sink({"preset": "activity_webhook", "method": "PUT", "headers_env": "TEST_HTTP_HEADERS",
                        "url": fake.base_url + "/members/{{customer_id}}/activities/{{activity_key}}",
                        "headers": {"Idempotency-Key": "{{activity_key}}"}, "timeout_s": 2}, monkeypatch)
    seen = []

    async def trace(session, ctx, params):
        seen.append((str(params.url), params.headers.get("Idempotency-Key")))

    import aiohttp
    batch = sample_deliveries(3, customer=lambda i: ["m 1/a", "m2", "é&3"][i])
    tc = aiohttp.TraceConfig()
    tc.on_request_start.append(trace)
    sink.session.trace_configs.append(tc)
    tc.freeze()
    try:
        assert await sink.write(batch) == []
    finally:
        await sink.stop()
        await fake.stop()
    assert sorted(fake.stored) == sorted(d.activity_key for d in batch)
    assert {fake.stored[d.activity_key]["ContributorMemberKey"] for d in batch} == {"m 1/a", "m2", "é&3"}
    assert all("{{" not in url and "%7B" not in url for url, _ in seen)
    assert any(url.endswith(f"/members/m%201%2Fa/activities/{batch[0].activity_key}") for url, _ in seen), seen
    assert sorted(k for _, k in seen) == sorted(d.activity_key for d in batch)


def test_placeholders_are_checked_at_load_config():
    base = {"preset": "activity_webhook", "headers_env": "X", "url": "https://ams.example.org/members/{{nope}}"}
    with pytest.raises(SettingsError, match="url/headers.*nope"):
        parse_settings("http", base)
    with pytest.raises(SettingsError, match="mode one only"):
        parse_settings("http", {**base, "url": "https://ams.example.org/m/{{customer_id}}", "mode": "batch",
                                "template": BATCH_TEMPLATE})
    with pytest.raises(SettingsError, match="JSON pointer"):
        parse_settings("http", {**base, "url": "https://ams.example.org/a", "success_pointer": "success"})


async def test_a_2xx_whose_body_says_it_failed_is_not_delivered(monkeypatch):
    """Issue 19, item 13: 200 {"success": false, "error": …} was counted as delivered. With a body rule
    (success_pointer, or error_pointer) it is that record's refusal; without one, the old reading."""
    fake = await FakeReceiver("headers", HEADER_SECRET, header="X-Receiver-Key").start()
    settings = {"preset": "activity_webhook", "url": fake.url, "headers_env": "TEST_HTTP_HEADERS", "timeout_s": 2,
                "concurrency": 1}
    try:
        for rule in ({"success_pointer": "/success"}, {"error_pointer": "/error"}):
            fake.control({"body_fail": 2})
            sink = await _sink({**settings, **rule}, monkeypatch)
            batch = sample_deliveries(4)
            try:
                failures = await sink.write(batch)
            finally:
                await sink.stop()
            assert len(failures) == 2 and all(isinstance(f.error, FatalError) for f in failures), rule
            assert all("Member record is locked" in str(f.error) or "/success" in str(f.error) for f in failures)
        fake.control({"body_fail": 1})
        sink = await _sink(settings, monkeypatch)  # no rule: the status alone decides, as before
        try:
            assert await sink.write(sample_deliveries(1, endpoint="other")) == []
        finally:
            await sink.stop()
    finally:
        await fake.stop()


async def test_oauth2_client_secret_basic_extra_parameters_and_mutual_tls(tmp_path, monkeypatch):
    """Issue 19, item 15: the client secret in the Authorization header (client_secret_basic), an
    audience parameter, and a client certificate the server requires; requests-oauthlib (a standard
    OAuth 2.0 client) gets its token from the same fake the same way."""
    import asyncio

    from requests_oauthlib import OAuth2Session
    from oauthlib.oauth2 import BackendApplicationClient

    fake = await FakeReceiver("oauth2", OAUTH_SECRET, client_id="sync client").start(
        tls=True, ca_file=tmp_path / "ca.pem", client_certs_to=tmp_path)
    fake.client_auth, fake.token_params = "basic", {"audience": "https://ams.example.org"}
    monkeypatch.setenv("TEST_HTTP_OAUTH", OAUTH_SECRET)
    base = {"url": fake.url, "auth": "oauth2", "oauth_endpoint": f"{fake.base_url}/oauth/token",
            "oauth_client_id": "sync client", "oauth_client_secret_env": "TEST_HTTP_OAUTH", "timeout_s": 2,
            "template": BATCH_TEMPLATE, "ca_file": str(tmp_path / "ca.pem"),
            "client_cert_file": str(tmp_path / "client.pem"), "client_key_file": str(tmp_path / "client.key")}
    try:
        good = await _sink({**base, "oauth_client_auth": "basic", "oauth_params": {"audience": "https://ams.example.org"}},
                           monkeypatch)
        try:
            assert await good.write(sample_deliveries(2)) == []
        finally:
            await good.stop()
        assert len(fake.stored) == 2
        for wrong in ({"oauth_client_auth": "body", "oauth_params": {"audience": "https://ams.example.org"}},
                      {"oauth_client_auth": "basic"}):  # the secret in the body; no audience
            sink = await _sink({**base, **wrong}, monkeypatch)
            try:
                failures = await sink.write(sample_deliveries(1, endpoint="x"))
            finally:
                await sink.stop()
            assert failures and "token request refused" in str(failures[0].error)
        no_cert = await _sink({k: v for k, v in base.items() if not k.startswith("client_")}, monkeypatch)
        try:
            failures = await no_cert.write(sample_deliveries(1, endpoint="y"))
        finally:
            await no_cert.stop()
        assert failures and isinstance(failures[0].error, RetriableError) and len(fake.stored) == 2

        def with_requests_oauthlib():
            session = OAuth2Session(client=BackendApplicationClient(client_id="sync client"))
            session.cert = (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
            return session.fetch_token(f"{fake.base_url}/oauth/token", client_id="sync client",
                                       client_secret=OAUTH_SECRET, audience="https://ams.example.org",
                                       verify=str(tmp_path / "ca.pem"), cert=session.cert)

        token = await asyncio.to_thread(with_requests_oauthlib)
        assert token["token_type"] == "Bearer" and token["access_token"]
    finally:
        await fake.stop()
    with pytest.raises(SettingsError, match="go together"):
        parse_settings("http", {**base, "client_key_file": None})
    with pytest.raises(SettingsError, match="oauth_params.*client_secret"):
        parse_settings("http", {**base, "oauth_params": {"client_secret": "x"}})


async def test_per_record_results_of_an_xml_batch(monkeypatch):
    """Issue 19, item 13: an XML batch answered with XML per-record results fails records one by one."""
    from sinks.providers.http.settings import WEBHOOK_XML

    fake = await FakeReceiver("headers", HEADER_SECRET, header="X-Receiver-Key").start()
    sink = await _sink({"url": fake.url, "mode": "batch", "auth": "headers", "headers_env": "TEST_HTTP_HEADERS",
                        "body_format": "xml", "template": WEBHOOK_XML, "results_path": "Results.Result",
                        "result_key_field": "ActivityKey", "result_status_field": "Status",
                        "result_error_field": "Error", "timeout_s": 2}, monkeypatch)
    fake.reject_customers = {"cust-1"}
    batch = sample_deliveries(4)
    try:
        failures = await sink.write(batch)
    finally:
        await sink.stop()
        await fake.stop()
    refused = [d.activity_key for d in batch if d.customer_id == "cust-1"]
    assert [batch[f.index].activity_key for f in failures] == refused and refused
    assert all(isinstance(f.error, FatalError) and "unknown member" in str(f.error) for f in failures)
    assert sorted(fake.stored) == sorted(d.activity_key for d in batch if d.customer_id != "cust-1")
