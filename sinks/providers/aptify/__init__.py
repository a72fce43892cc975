"""Aptify (Services API): settings, sink and fake."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "aptify",
    ("Aptify (Services API): GenericEntity AddData, one record per request, AptifyAuthorization token from"
     " the Login endpoint"),
    settings=".settings:AptifySettings",
    sink=".sink:AptifySink",
    fake=FakeSpec(".fake", "fake Aptify", "http://127.0.0.1:8091", "ACTIVITY_SYNC_APTIFY_PASSWORD"),
    bench=(BenchCase("one AddData per request, 4 at once"),),
)
