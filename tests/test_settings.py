"""Provider settings declared as data, parsed by one path; load-config refuses what a worker could not use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from sinks.registry import SettingsError, parse_settings
from core.secrets import find_inline_secrets


def webhook(**kw) -> dict:
    return {"url": "https://crm.example.org/hooks", **kw}


@pytest.mark.parametrize("settings, fragment", [
    (webhook(batch_size="lots"), "settings.batch_size: Input should be a valid integer"),
    (webhook(batch_size=5000), "settings.batch_size: 5000 is over this provider's limit of 1000"),
    (webhook(retry_delays_s="1 2 3 4"), "settings.retry_delays_s: a list of four numbers"),
    (webhook(retry_delays_s=[1, 2, 3]), "settings.retry_delays_s"),
    (webhook(rate_limit_per_s=-1), "settings.rate_limit_per_s: Input should be greater than or equal to 0"),
    (webhook(timeout_s=0), "settings.timeout_s"),
    (webhook(schedule="hourly"), "settings.schedule"),
    (webhook(schedule={"every": "30x"}), "not a duration"),
    (webhook(details_format="csv"), "settings.details_format"),
    (webhook(surprise=1), "settings.surprise: Extra inputs are not permitted"),
    ({"url": "ftp://x"}, "settings.url: an http:// or https:// URL"),
    ({}, "settings.url: Field required"),
    (webhook(url="https://user:hunter2@crm.example.org/x"), "settings.url: looks like a URL with a user name"),
    (webhook(url="https://crm.example.org/x?api_key=abc123"), "credential in its query string"),
    (webhook(headers={"Authorization": "Bearer abcdefgh12345"}), "settings.headers.Authorization"),
    (webhook(headers={"X-Note": "Bearer abcdefgh12345"}), "settings.headers.X-Note: looks like an Authorization"),
    (webhook(hmac_secret="hunter2"), "settings.hmac_secret: looks like a secret setting"),
    (webhook(headers={"X-Key": "sk_live_abcdef0123456789"}), "an API key"),
    (webhook(hmac_secret_env="not a variable name"), "settings.hmac_secret_env"),
])
def test_bad_settings_are_refused_naming_the_field(settings, fragment):
    with pytest.raises(SettingsError) as err:
        parse_settings("webhook", settings)
    assert fragment in str(err.value)
    assert "hunter2" not in str(err.value)


def test_defaults_and_types_come_from_the_declaration():
    s = parse_settings("webhook", webhook(schedule={"every": "30m"}, retry_delays_s=[1, 2, 3, 4]))
    assert (s.batch_size, s.linger_ms, s.timeout_s, s.details_format) == (200, 50, 10, "xml")
    assert s.interval_s == 1800 and s.retry_delays_s == (1, 2, 3, 4)
    assert parse_settings("webhook", webhook(schedule="every 90s")).interval_s == 90
    assert parse_settings("activity-history", {}, "activity-history").path == "var/activity-history.db"
    with pytest.raises(SettingsError, match="unknown provider 'nope'"):
        parse_settings("nope", {})
    with pytest.raises(SettingsError, match="provider_type activity-history"):
        parse_settings("activity-history", {}, "membership")


def test_ordinary_values_are_not_mistaken_for_secrets():
    assert find_inline_secrets(webhook(headers={"X-Tenant": "HUG", "Accept": "application/json"},
                                       details_format="xml", hmac_secret_env="CRM_SECRET",
                                       path="/var/lib/token-store/db")) == []


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "activity_sync.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)


def test_load_config_refuses_with_file_endpoint_and_field_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"endpoints": [{"name": "crm", "provider": "webhook", "tenant": "DEMO",
                                                  "settings": webhook(batch_size="lots")}]}))
    out = run_cli("load-config", "--check", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{bad}: endpoint crm: settings.batch_size: Input should be a valid integer" in out.stderr
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text('endpoints:\n  - name: crm\n    provider: webhook\n    tenant: DEMO\n    settings:\n'
                    '      url: https://x.org\n      headers: &h {a: b}\n      more: *h\n')
    out = run_cli("load-config", "--check", str(bomb))
    assert out.returncode == 2 and "anchors (&h) are not allowed" in out.stderr and "Traceback" not in out.stderr


def test_providers_lists_settings_and_prints_json_schema():
    out = run_cli("providers")
    assert out.returncode == 0 and "webhook:" in out.stdout and "activity-history:" in out.stdout
    assert "hmac_secret_env" in out.stdout and "[where a secret is]" in out.stdout
    schema = json.loads(run_cli("providers", "--schema").stdout)
    wh = schema["webhook"]
    assert wh["required"] == ["url"] and wh["properties"]["batch_size"]["maximum"] == 1000
    assert wh["properties"]["hmac_secret_env"]["x-secret-ref"] == "env"
    assert wh["additionalProperties"] is False


def test_load_config_refuses_an_endpoint_without_a_tenant(tmp_path):
    bad = tmp_path / "no-tenant.yaml"
    bad.write_text(yaml.safe_dump({"endpoints": [{"name": "crm", "provider": "webhook", "settings": webhook()}]}))
    out = run_cli("load-config", "--check", str(bad))
    assert out.returncode == 2 and f"{bad}: endpoint crm: tenant is required" in out.stderr
    assert '"*" for every tenant' in out.stderr and "Traceback" not in out.stderr
