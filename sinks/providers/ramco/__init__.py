"""RAMCO AMS (API v2): settings, sink and fake."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "ramco",
    "RAMCO AMS (API v2): CreateEntity form posts, the string delimiter escaped, ResponseCode read from the body",
    settings=".settings:RamcoSettings",
    sink=".sink:RamcoSink",
    fake=FakeSpec(".fake", "fake RAMCO", "http://127.0.0.1:8090", "ACTIVITY_SYNC_RAMCO_KEY"),
    bench=(BenchCase("one CreateEntity per request, 4 at once, duplicate guard"),),
)
