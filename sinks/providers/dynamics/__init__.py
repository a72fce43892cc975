"""Microsoft Dynamics 365 / Dataverse (and Cobalt): activities upserted by alternate key."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "dynamics",
    ("Microsoft Dynamics 365 / Dataverse (Cobalt): upsert by alternate key, UpsertMultiple or $batch, "
     "Entra ID client credentials (msal)"),
    settings=".settings:DynamicsSettings",
    sink=".sink:DynamicsSink",
    fake=FakeSpec(".fake", "fake Dataverse", "https://127.0.0.1:8087", "ACTIVITY_SYNC_DYNAMICS_SECRET",
                  ("--ca-file", "{ca_file}")),
    extra="dynamics",
    bench=(BenchCase("UpsertMultiple, 200 a call", fake_args=("--limit-requests", "100000000")),),
)
