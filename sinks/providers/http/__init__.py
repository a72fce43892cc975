"""The configurable HTTP sink: settings with presets, sink, and a fake receiver."""

from sinks.spec import BenchCase, FakeSpec, ProviderSpec

PROVIDER = ProviderSpec(
    "http",
    ("Configurable HTTP: URL, method, auth, JSON/XML/form body templates, one or a batch a request, answer"
     " rules; presets for Impexium, MemberSuite, Association Anywhere, UX Online, YourMembership and the "
     "seed vendor's activity webhook"),
    settings=".settings:HttpSinkSettings",
    sink=".sink:ConfigurableHttpSink",
    fake=FakeSpec(".fake", "fake receiver", "http://127.0.0.1:8093", "ACTIVITY_SYNC_HTTP_SECRET",
                  env=(("ACTIVITY_SYNC_HTTP_HEADERS", "X-Api-Key: {secret}"),)),
    bench=(BenchCase("activity_webhook preset: one POST per activity, 4 at once"),
           BenchCase("batch of 100 a POST, per-record results", replace=True, fake_args=("--auth", "none"), settings={
               "mode": "batch", "batch_size": 100, "results_path": "results", "result_key_field": "ActivityKey",
               "template": '{"ActivityKey": "{{activity_key}}", "ContributorMemberKey": "{{customer_id}}"}'})),
)
