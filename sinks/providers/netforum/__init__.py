"""netFORUM Enterprise (xWeb SOAP 1.1): settings, sink and fake."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "netforum",
    ("netFORUM Enterprise (xWeb SOAP 1.1): InsertFacadeObject of CustomerMessagingActivity rows, the "
     "rotating token of every answer, SOAP faults classified"),
    settings=".settings:NetforumSettings",
    sink=".sink:NetforumSink",
    fake=FakeSpec(".fake", "fake netFORUM", "http://127.0.0.1:8089", "ACTIVITY_SYNC_NETFORUM_PASSWORD"),
    extra="netforum",
    bench=(BenchCase("InsertFacadeObject, 25 rows a call, every member new (a lookup each)"),
           BenchCase("the same, 100 members (their e-mail keys cached after the first)", members=100)),
)
