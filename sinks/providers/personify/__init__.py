"""Personify360 (Personify Data Services): settings, sink and fake."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "personify",
    "Personify360 (Personify Data Services, OData): Create template then Save of the activity entity, HTTP Basic",
    settings=".settings:PersonifySettings",
    sink=".sink:PersonifySink",
    fake=FakeSpec(".fake", "fake Personify", "http://127.0.0.1:8092", "ACTIVITY_SYNC_PERSONIFY_PASSWORD"),
    bench=(BenchCase("one Save per request, 4 at once"),),
)
