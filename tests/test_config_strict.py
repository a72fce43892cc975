"""`load-config --check` against hostile files: each refused with exit 2 and one line naming the file,
the place and the field; a wrong type is never coerced (the one strict parser, core.config)."""

from __future__ import annotations

import pytest

from activity_sync.cli import main

EP = '{name: crm, provider: webhook, tenant: DEMO, settings: {url: "http://127.0.0.1:1/x"}}'
SUB = '{activity_code: LibraryEntryView, endpoint: crm, description: "{ParentName}"}'


def doc(endpoint: str = EP, sub: str = SUB) -> str:
    return f"endpoints:\n  - {endpoint}\nsubscriptions:\n  - {sub}\n"


HOSTILE = [
    # a string is not a boolean: the subscription meant to be off would deliver
    ("sub-enabled-false", doc(sub=SUB[:-1] + ', enabled: "false"}'), "enabled must be true or false"),
    ("sub-enabled-no", doc(sub=SUB[:-1] + ', enabled: "no"}'), "enabled must be true or false"),
    ("sub-enabled-number", doc(sub=SUB[:-1] + ', enabled: 0}'), "enabled must be true or false"),
    ("ep-enabled-false", doc(endpoint=EP[:-1] + ', enabled: "false"}'), "enabled must be true or false"),
    # a string is not a list: COMMUNITY is not the codes C and O
    ("writeback-string", doc(sub=SUB[:-1] + ", writeback_codes: COMMUNITY}"), "writeback_codes must be a list"),
    ("writeback-three", doc(sub=SUB[:-1] + ", writeback_codes: [A, B, C]}"), "at most two codes"),
    ("writeback-number", doc(sub=SUB[:-1] + ", writeback_codes: [1, B]}"), "must be text"),
    # a boolean is not a number, a string is not a number
    ("batch-true", doc(endpoint=EP.replace("}}", ", batch_size: true}}")), "settings.batch_size"),
    ("batch-string", doc(endpoint=EP.replace("}}", ', batch_size: "100"}}')), "settings.batch_size"),
    ("timeout-string", doc(endpoint=EP.replace("}}", ', timeout_s: "10"}}')), "settings.timeout_s"),
    ("batch-huge", doc(endpoint=EP.replace("}}", ", batch_size: " + "9" * 5000 + "}}")), "too large"),
    ("batch-big", doc(endpoint=EP.replace("}}", ", batch_size: " + "9" * 30 + "}}")), "batch_size"),
    # shapes that ended in Python errors
    ("subs-all", "endpoints:\n  - " + EP + "\nsubscriptions: all\n", "subscriptions must be a list"),
    ("endpoints-map", "endpoints: {crm: 1}\n", "endpoints must be a list"),
    ("sub-string", "endpoints:\n  - " + EP + "\nsubscriptions:\n  - LibraryEntryView\n", "must be a mapping"),
    ("deep", "endpoints:\n  - " + EP + "\nx: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper"),
    ("deep-map", "endpoints: " + "{a: " * 200 + "1" + "}" * 200 + "\n", "nested deeper"),
    ("settings-list", doc(endpoint='{name: crm, provider: webhook, tenant: DEMO, settings: [1]}'),
     "settings must be a mapping"),
    ("tenant-number", doc(endpoint='{name: crm, provider: webhook, tenant: 7, settings: {url: "http://x"}}'),
     "tenant must be"),
    ("name-number", doc(endpoint='{name: 12, provider: webhook, tenant: DEMO, settings: {url: "http://x"}}'),
     "endpoint name"),
    ("unknown-top", doc() + "endpoint: []\n", "unknown field(s) endpoint"),
    ("catalog-list", doc() + "catalog: [1]\n", "catalog must be a mapping"),
    # nothing to load is not a valid config
    ("empty", "", "is empty"),
    ("null", "null\n", "is empty"),
    ("comment-only", "# nothing\n", "is empty"),
    ("no-entries", "endpoints: []\nsubscriptions: []\n", "holds no endpoints and no subscriptions"),
    # a credential in a template is refused like one in settings
    ("bearer-template", doc(sub='{activity_code: LibraryEntryView, endpoint: crm, '
                                'description: "Bearer abcdef0123456789xyz {ParentName}"}'), "looks like an Authorization"),
    ("jwt-template", doc(sub='{activity_code: LibraryEntryView, endpoint: crm, description: '
                             '"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.x"}'), "looks like a JWT"),
]


@pytest.mark.parametrize("name, text, fragment", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_config_is_refused_in_one_line(tmp_path, capsys, name, text, fragment):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    code = main(["load-config", "--check", str(path)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert str(path) in lines[0] and fragment in lines[0], lines[0]


@pytest.mark.parametrize("field, where", [("enabled", "sub-enabled-false"), ("writeback_codes", "writeback-string"),
                                          ("settings.batch_size", "batch-true"), ("description", "bearer-template")])
def test_the_refusal_names_the_field(tmp_path, capsys, field, where):
    path = tmp_path / "c.yaml"
    path.write_text(next(h[1] for h in HOSTILE if h[0] == where))
    assert main(["load-config", "--check", str(path)]) == 2
    assert field in capsys.readouterr().err


def test_a_valid_config_still_passes(tmp_path, capsys):
    path = tmp_path / "ok.yaml"
    path.write_text(doc(endpoint=EP.replace("}}", ", batch_size: 100, timeout_s: 2.5, schedule: {every: 30m}}}"),
                        sub=SUB[:-1] + ", enabled: false, writeback_codes: [LIBRARY, null]}"))
    assert main(["load-config", "--check", str(path)]) == 0, capsys.readouterr().err
    assert "config is valid" in capsys.readouterr().out
