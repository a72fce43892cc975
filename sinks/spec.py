"""How a provider declares itself: one :class:`ProviderSpec` named ``PROVIDER`` in its package's
``__init__.py``. The registry (``activity-sync providers``, ``load-config``, the workers, the admin
API), the embedded run (which fake to start for an example config) and the bench read it; nothing
else lists providers. Imports nothing but the standard library, so declaring costs nothing.

    PROVIDER = ProviderSpec(
        "salesforce", "Salesforce: upsert through sObject Collections ...",
        settings=".settings:SalesforceSettings", sink=".sink:SalesforceSink",
        fake=FakeSpec(".fake", "fake Salesforce", "http://127.0.0.1:8086", "ACTIVITY_SYNC_SALESFORCE_SECRET"),
        extra="salesforce")

Paths starting with ``.`` are relative to the provider's package. ``example.yaml`` beside
``__init__.py`` is its example config (``activity-sync run --config salesforce``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FakeSpec:
    """The fake API a provider's tests, example config and bench run against."""

    module: str                 # its ``python -m`` module (``--port``, ``--latency-ms``), "." relative
    label: str                  # how `run` names it: "fake Salesforce"
    address: str                # its usual address, the one example configs name: "http://127.0.0.1:8086"
    secret_env: str             # the environment variable of the credential `run` makes up for both sides
    args: tuple[str, ...] = ()  # extra arguments; "{ca_file}" is the test CA's path (an HTTPS fake)
    #: environment both sides also get, made from the secret: (("NAME", "X-Api-Key: {secret}"),)
    env: tuple[tuple[str, str], ...] = ()

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1].split("/")[0])

    @property
    def scheme(self) -> str:
        return self.address.split(":", 1)[0]


@dataclass(frozen=True)
class BenchCase:
    """A variant the bench measures besides the example config's endpoint: what it shows, the
    settings it changes, and how many distinct members its records name."""

    what: str
    settings: dict = field(default_factory=dict)
    members: int = 5000
    fake_args: tuple[str, ...] = ()
    replace: bool = False     # settings replace the example's (its address kept), rather than change it


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    summary: str
    settings: str                             # "module:Class" of its EndpointSettings model
    sink: str                                 # "module:Class" of its Sink
    fake: FakeSpec | None = None
    extra: str | None = None                  # the pip extra that brings its dependencies
    provider_types: tuple[str, ...] = ("membership",)
    bench: tuple[BenchCase, ...] = (BenchCase("the example config's endpoint"),)
    package: str = ""                         # filled in by the registry: where it was declared

    def resolve(self, path: str) -> str:
        return self.package + path if path.startswith(".") else path
