"""The webhook provider: the shared contract against its fake CRM, plus what is its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sinks.contract import AuthExpired, FatalError, RetriableError, Throttled
from sinks.providers.webhook.fake import FakeCRM
from activity_sync.devtools.sink_testing import ProviderContract, opt_out, sample_deliveries

SECRET = "s3cr3t-for-tests-only-7f1d"
HEADER_SECRET = "hdr-secret-value-91ac"
GOLDEN = Path(__file__).resolve().parent / "golden"


class TestWebhookContract(ProviderContract):
    provider = "webhook"
    secrets = (SECRET, HEADER_SECRET)

    async def start_fake(self):
        return await FakeCRM(secret=SECRET.encode()).start()

    def settings(self, fake, tmp_path) -> dict:
        return {"url": fake.url, "hmac_secret_env": "TEST_WEBHOOK_SECRET", "timeout_s": 2,
                "headers_env": "TEST_WEBHOOK_HEADERS"}

    def environ(self) -> dict:
        return {"TEST_WEBHOOK_SECRET": SECRET, "TEST_WEBHOOK_HEADERS": f"X-Receiver-Key: {HEADER_SECRET}"}

    def stored_keys(self, fake, tmp_path) -> list[str]:
        return fake.stored_keys()

    @opt_out("a webhook has no token: the HMAC secret signs every request, nothing expires")
    async def test_expired_token_is_refreshed_once(self, fake, tmp_path):
        await super().test_expired_token_is_refreshed_once(fake, tmp_path)

    # ------------------------------------------------------------------ the webhook's own
    async def test_signs_and_sends_secret_headers_and_a_bad_secret_is_refused(self, fake, tmp_path, monkeypatch):
        sink = await self.sink(fake, tmp_path)
        await sink.write(sample_deliveries(1))
        await sink.stop()
        assert fake.stats()["stored"] == 1  # the fake verified the signature
        monkeypatch.setenv("WRONG", "not-the-secret")
        bad = await self.sink(fake, tmp_path, hmac_secret_env="WRONG")
        with pytest.raises(AuthExpired, match="401"):
            await bad.write(sample_deliveries(2)[1:])
        await bad.stop()

    async def test_a_missing_secret_stops_the_sink_from_starting(self, fake, tmp_path):
        with pytest.raises(LookupError, match="NOT_SET_ANYWHERE"):
            await self.sink(fake, tmp_path, hmac_secret_env="NOT_SET_ANYWHERE")

    async def test_429_carries_retry_after(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        fake.control({"throttle": {"retry_after": 7, "count": 1}})
        with pytest.raises(Throttled) as err:
            await sink.write(sample_deliveries(1))
        assert err.value.retry_after == 7 and err.value.retriable
        assert sink.statuses == [429]
        await sink.stop()

    async def test_5xx_is_retriable(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        fake.control({"fail": {"status": 503, "count": 1}})
        with pytest.raises(RetriableError, match="503"):
            await sink.write(sample_deliveries(1))
        await sink.stop()

    async def test_unknown_customer_is_the_receivers_400(self, fake, tmp_path):
        sink = await self.sink(fake, tmp_path)
        batch = sample_deliveries(3, customer=lambda i: "cust-bad" if i == 1 else f"c{i}")
        fake.control({"reject_customers": ["cust-bad"]})
        failures = await sink.write(batch)
        await sink.stop()
        assert isinstance(failures[0].error, FatalError) and failures[0].error.status == 400
        assert "unknown customer" in str(failures[0].error)

    async def test_request_matches_the_golden_file(self, fake, tmp_path):
        """The outbound request a receiver builds against; regenerate with UPDATE_GOLDEN=1 after a deliberate change."""
        sink = await self.sink(fake, tmp_path)
        await sink.write(sample_deliveries(5, customer=lambda i: f"member-{i}"))
        await sink.stop()
        body = json.loads(fake.bodies[-1])
        assert body["endpoint"] == "crm" and isinstance(body["sent_at"], int)
        golden = GOLDEN / "webhook_activities.json"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(json.dumps(body["activities"], indent=2, ensure_ascii=False) + "\n")
        assert body["activities"] == json.loads(golden.read_text())
