import pytest
from conftest import FIXTURES

from streams.catalog import load_catalog
from streams.routing import ConfigError, Routing, parse_config, read_config_file


def test_fixture_and_bundled_configs_are_valid():
    from streams.tools import bundled

    for path in (FIXTURES / "config.yaml", bundled("embedded.yaml")):
        cfg = parse_config(read_config_file(path), load_catalog())
        assert cfg.endpoints and cfg.subscriptions


@pytest.mark.parametrize("doc, fragment", [
    ({"endpoints": [{"name": "a", "provider_type": "crm"}]}, "provider_type must be one of"),
    ({"endpoints": [{"name": "a", "settings": {"client_secret": "hunter2"}}]}, "looks like a secret"),
    ({"endpoints": [{"name": "a"}], "subscriptions": [{"activity_code": "LibraryEntryView", "endpoint": "b",
                                                        "description": "x"}]}, "unknown endpoint"),
    ({"endpoints": [{"name": "a"}], "subscriptions": [{"activity_code": "LibraryEntryView", "endpoint": "a",
                                                        "description": "{Subject}"}]}, r"\{Subject\}"),
    ({"endpoints": [{"name": "a"}, {"name": "a"}]}, "unique"),
])
def test_bad_config_refused_with_reason(doc, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_config(doc, load_catalog())


def test_secret_references_are_allowed():
    parse_config({"endpoints": [{"name": "a", "settings": {"client_secret_env": "X", "api_key_file": "/f"}}]},
                 load_catalog())


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
