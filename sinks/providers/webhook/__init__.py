"""The generic HTTP webhook provider: a signed JSON batch POST (see sink.py for the wire contract)."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "webhook",
    "JSON batch POST, HMAC-signed, an idempotency key per activity",
    settings=".settings:WebhookSettings",
    sink=".sink:WebhookSink",
    fake=FakeSpec(".fake", "fake CRM", "http://127.0.0.1:8085", "ACTIVITY_SYNC_WEBHOOK_SECRET"),
    bench=(BenchCase("a signed JSON batch POST, 200 a request"),),
)
