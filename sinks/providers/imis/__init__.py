"""iMIS (ASI REST API): settings, sink and fake."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "imis",
    ("iMIS (ASI REST API): one Activity generic entity per request, bounded concurrency, a duplicate guard"
     " by ActivityKey; password or refresh-token grant"),
    settings=".settings:ImisSettings",
    sink=".sink:ImisSink",
    fake=FakeSpec(".fake", "fake iMIS", "http://127.0.0.1:8088", "ACTIVITY_SYNC_IMIS_PASSWORD"),
    bench=(BenchCase("one Activity per request, 4 at once, duplicate guard (GET then POST)"),
           BenchCase("the same without the duplicate guard", {"duplicate_guard": False})),
)
