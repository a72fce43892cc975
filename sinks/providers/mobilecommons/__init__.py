"""Upland Mobile Commons: the Action Network ↔ Mobile Commons sync's writes to Mobile Commons."""

from sinks.spec import FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "mobilecommons",
    "Upland Mobile Commons: the sync's profile_update (subscribe through an opt-in path), XML answers",
    settings=".settings:MobileCommonsSettings",
    sink=".sink:MobileCommonsSink",
    fake=FakeSpec(".fake", "fake Mobile Commons", "http://127.0.0.1:8098", "ACTIVITY_SYNC_MOBILECOMMONS_TOKEN",
                  args=("--seed", "3")),
)
