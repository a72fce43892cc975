"""The audit trail's changes: field by field, before -> after, with credentials masked."""

from __future__ import annotations

from activity_sync.admin.state import MASKED, audit_changes


def test_changed_fields_are_listed_by_dotted_path_and_unchanged_ones_are_not():
    before = {"name": "crm", "enabled": True, "settings": {"url": "https://crm.example.org/a", "batch_size": 100}}
    after = {"name": "crm", "enabled": False, "settings": {"url": "https://crm.example.org/a", "batch_size": 200,
                                                            "timeout_s": 5}}
    assert audit_changes(before, after) == [
        {"field": "enabled", "before": True, "after": False},
        {"field": "settings.batch_size", "before": 100, "after": 200},
        {"field": "settings.timeout_s", "before": None, "after": 5}]
    assert audit_changes(before, before) == []
    created = audit_changes(None, {"name": "x", "settings": {"url": "https://x.example.org"}})
    assert {c["field"] for c in created} == {"name", "settings.url"} and all(c["before"] is None for c in created)


def test_credentials_are_masked_and_secret_references_shown():
    before = {"settings": {"hmac_secret_env": "OLD_SECRET", "password": "hunter2-old",
                           "url": "https://crm.example.org/hook"}}
    after = {"settings": {"hmac_secret_env": "NEW_SECRET", "password": "hunter2-new",
                          "url": "https://crm.example.org/hook?token=abcdef123456"}}
    changes = {c["field"]: c for c in audit_changes(before, after)}
    assert changes["settings.hmac_secret_env"] == {"field": "settings.hmac_secret_env", "before": "OLD_SECRET",
                                                   "after": "NEW_SECRET"}  # a reference names where, not what
    assert changes["settings.password"]["before"] == changes["settings.password"]["after"] == MASKED
    assert changes["settings.url"] == {"field": "settings.url", "before": "https://crm.example.org/hook",
                                       "after": MASKED}
    assert "hunter2" not in repr(audit_changes(before, after))
