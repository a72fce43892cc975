import pytest
from conftest import FIXTURES

from core.catalog import load_catalog
from core.config import ConfigError, parse_config, read_config_file
from core.routing import Routing


def test_fixture_and_bundled_configs_are_valid():
    from activity_sync.tools import bundled

    for path in (FIXTURES / "config.yaml", bundled("embedded.yaml")):
        cfg = parse_config(read_config_file(path), load_catalog())
        assert cfg.endpoints and cfg.subscriptions


@pytest.mark.parametrize("doc, fragment", [
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": "*", "provider_type": "crm"}]}, "provider_type must be one of"),
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": "*", "settings": {"client_secret": "hunter2"}}]},
     "looks like a secret"),
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": "*"}], "subscriptions": [
        {"activity_code": "LibraryEntryView", "endpoint": "b", "description": "x"}]}, "unknown endpoint"),
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": "*"}], "subscriptions": [
        {"activity_code": "LibraryEntryView", "endpoint": "a", "description": "{Subject}"}]}, r"\{Subject\}"),
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": "*"}, {"name": "a", "provider": "webhook", "tenant": "*"}]}, "unique"),
    ({"endpoints": [{"name": "a"}]}, "endpoint a: provider is required"),
    ({"endpoints": [{"name": "a", "provider": "webhook"}]}, "endpoint a: tenant is required"),
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": []}]}, "endpoint a: tenant must be"),
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": ["*", "HUG"]}]}, "stands alone"),
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": "*", "enabled": "yes"}]}, "enabled must be true or false"),
    ({"endpoints": [{"name": "a", "provider": "webhook", "tenant": "*", "sink": "webhook"}]}, r"unknown field\(s\) sink"),
    ({"endpoints": ["a"]}, "must be a mapping"),
])
def test_bad_config_refused_with_reason(doc, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_config(doc, load_catalog())


def test_secret_references_are_allowed():
    parse_config({"endpoints": [{"name": "a", "provider": "webhook", "tenant": "*",
                                 "settings": {"client_secret_env": "X", "api_key_file": "/f"}}]}, load_catalog())


def test_a_config_of_an_older_version_names_its_provider_in_settings_sink():
    cfg = parse_config({"endpoints": [{"name": "a", "tenant": "*", "settings": {"sink": "webhook", "url": "http://x"}},
                                      {"name": "h", "tenant": "*", "provider_type": "activity-history"}]},
                       load_catalog())
    assert [(e.provider, e.settings) for e in cfg.endpoints] == [("webhook", {"url": "http://x"}),
                                                                ("activity-history", {})]


@pytest.mark.parametrize("text, fragment", [
    ("a: &x [1, 2]\nb: *x\n", "anchors"),
    ("endpoints: !!python/object:os.system []\n", "tags"),
    ("endpoints: !!str x\n", "tags"),
    ("- 1\n- 2\n", "must be a mapping"),
    ("endpoints: [\n", "not valid YAML"),
    ("a: 1\na: 2\n", "duplicate key 'a'"),
])
def test_config_files_must_be_plain_yaml_data(tmp_path, text, fragment):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=fragment) as err:
        read_config_file(p)
    assert str(p) in str(err.value)


def test_a_billion_laughs_is_refused_before_it_expands(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="anchors"):
        read_config_file(p)


def test_oversized_config_files_are_refused(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("x: '" + "a" * (5 * 1024 * 1024) + "'\n")
    with pytest.raises(ConfigError, match="larger than"):
        read_config_file(p)


def test_tombstones_and_updates_change_routes():
    cat = load_catalog()
    r = Routing(cat)
    for k, v in parse_config(read_config_file(FIXTURES / "config.yaml"), cat).records():
        r.apply_record(k, v)
    assert [x.endpoint for x in r.routes("DiscussionMessageCreate")] == ["crm", "history"]
    r.apply_record("endpoint:history", None)
    assert [x.endpoint for x in r.routes("DiscussionMessageCreate")] == ["crm"]
    r.apply_record("subscription:DiscussionMessageCreate:crm", None)
    assert r.routes("DiscussionMessageCreate") == ()


def test_routes_only_to_endpoints_of_the_activitys_tenant():
    cfg = parse_config({"endpoints": [{"name": "hug", "provider": "webhook", "tenant": "HUG"},
                                      {"name": "two", "provider": "webhook", "tenant": ["ACME", "HUG"]},
                                      {"name": "acme", "provider": "webhook", "tenant": "ACME"},
                                      {"name": "all", "provider": "webhook", "tenant": "*"}],
                        "subscriptions": [{"activity_code": "LibraryEntryView", "endpoint": e, "description": "x"}
                                          for e in ("hug", "two", "acme", "all")]}, load_catalog())
    r = Routing(load_catalog())
    for k, v in cfg.records():
        r.apply_record(k, v)
    assert [x.endpoint for x in r.routes("LibraryEntryView", "HUG")] == ["all", "hug", "two"]
    assert [x.endpoint for x in r.routes("LibraryEntryView", "ACME")] == ["acme", "all", "two"]
    assert [x.endpoint for x in r.routes("LibraryEntryView", "OTHER")] == ["all"]
    assert r.endpoints["two"].tenants == ("ACME", "HUG")


def test_metric_labels_from_input_stay_bounded():
    """A producer sending ever new TenantCodes adds no series: only the tenants endpoints name count by name."""
    from prometheus_client import REGISTRY

    from core.config import Endpoint
    from streams import metrics

    routing = Routing(load_catalog())
    routing.put_endpoint(Endpoint("a", tenants=("HUG", "ACME")))
    routing.put_endpoint(Endpoint("b", tenants=("*",)))
    assert routing.tenants() == {"HUG", "ACME"}
    for i in range(500):
        metrics.unrouted(f"tenant-{i}", routing.tenants())
    metrics.unrouted("HUG", routing.tenants())
    series = {s.labels["tenant"] for m in REGISTRY.collect() if m.name == "activity_sync_unrouted_activities"
              for s in m.samples if s.name.endswith("_total")}
    assert series == {"_other", "HUG"}
    for i in range(1000):
        metrics.unknown_code(f"NoSuchCode{i}")
    codes = {s.labels["code"] for m in REGISTRY.collect() if m.name == "activity_sync_unknown_activity_codes"
             for s in m.samples if s.name.endswith("_total")}
    assert len(codes) <= 201 and "_other" in codes
