"""Thrive Marketing Professional (Informz): community list changes written to target groups through the
partner API (the push direction of the Online Community Connection)."""

from sinks.spec import FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "informz",
    "Thrive Marketing Professional (Informz): list members to target groups (partner API: Subscribe, BulkUpload)",
    settings=".settings:InformzSettings",
    sink=".sink:InformzSink",
    fake=FakeSpec(".fake", "fake Thrive Marketing Professional", "http://127.0.0.1:8099/aapi/InformzService.svc",
                  "ACTIVITY_SYNC_INFORMZ_PASSWORD"),
)
