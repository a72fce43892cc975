"""Action Network (OSDI): the Action Network ↔ Mobile Commons sync's writes to Action Network."""

from sinks.spec import FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "actionnetwork",
    "Action Network (OSDI): the sync's person signup helper and person updates (anmc: in the config)",
    settings=".settings:ActionNetworkSettings",
    sink=".sink:ActionNetworkSink",
    fake=FakeSpec(".fake", "fake Action Network", "http://127.0.0.1:8097", "ACTIVITY_SYNC_ACTIONNETWORK_KEY",
                  args=("--seed", "12")),
)
