"""Settings of the Dynamics 365 / Dataverse provider, with the Cobalt preset.

Presets fill what the endpoint leaves out (what it sets wins):

- ``task`` (the default): a ``task`` activity per community activity, regarding the member's
  contact, idempotent by an alternate key on the custom column ``new_activitykey``.
- ``cobalt``: Cobalt (an AMS built on Dynamics 365, custom columns prefixed ``cobalt_``): the same
  task, keyed by ``cobalt_activitykey``, regarding the contact found by its ``cobalt_customerid``
  alternate key (the AMS customer ID the community knows the member by).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sinks.mapping import check_fields
from sinks.settings import HttpSettings, RateWindow, secret_ref

TASK_FIELDS = {
    "subject": "description:200",
    "description": "details:2000",
    "actualend": "activity_datetime",
    "category": "writeback_code1:250",
    "subcategory": "writeback_code2:250",
    "new_activitylink": "link_url",
}

PRESETS: dict[str, dict[str, Any]] = {
    "task": {"entity": "task", "entity_set": "tasks", "alternate_key": "new_activitykey",
             "contact_bind": "/contacts({customer_id})", "fields": TASK_FIELDS},
    "cobalt": {"entity": "task", "entity_set": "tasks", "alternate_key": "cobalt_activitykey",
               "contact_bind": "/contacts(cobalt_customerid='{customer_id}')",
               "fields": {**{k: v for k, v in TASK_FIELDS.items() if k != "new_activitylink"},
                          "cobalt_activitylink": "link_url"}},
}
NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}$")


class DynamicsSettings(HttpSettings):
    max_batch: ClassVar[int] = 1000  # a $batch takes at most 1000 requests; UpsertMultiple ~1000 is the advice

    preset: Literal["task", "cobalt"] = Field("task", description="defaults for table, key and fields: task or cobalt")
    url: str = Field(description="the environment's URL, e.g. https://contoso.crm.dynamics.com", max_length=2048)
    api_version: str = Field("9.2", pattern=r"^\d\.\d$", description="Web API version")
    tenant_id: str = Field(description="the Microsoft Entra tenant (ID or domain)", min_length=1, max_length=255)
    authority_host: str = Field("https://login.microsoftonline.com", max_length=2048,
                                description="Entra ID's host (another cloud's, e.g. https://login.microsoftonline.us)")
    client_id: str = Field(description="the app registration's application (client) ID", min_length=1, max_length=255)
    client_secret_env: str | None = secret_ref("env", "the app registration's client secret")
    client_secret_file: str | None = secret_ref("file", "the app registration's client secret")
    scope: str | None = Field(None, max_length=2048, description="token scope (default: {url}/.default)")
    entity: str = Field("task", description="the table's logical name (an activity table)")
    entity_set: str = Field("tasks", description="the table's entity set name (plural)")
    alternate_key: str = Field("new_activitykey",
                               description="the column of the table's alternate key that holds the ActivityKey")
    contact_bind: str | None = Field("/contacts({customer_id})",
                                     description="the contact the activity is regarding: /contacts({customer_id}) "
                                                 "for a contact GUID, or /contacts(key='{customer_id}') for an "
                                                 "alternate key; empty: not linked")
    contact_lookup: str | None = Field(
        None, max_length=100, description="the navigation property of the table's lookup to Contact (e.g. "
                                          "new_Contact on a custom table); default: the activity's "
                                          "regardingobjectid_contact_<entity>")
    fields: dict[str, str] = Field(default_factory=lambda: dict(TASK_FIELDS),
                                   description="column: source, optionally cut (description:200, details:2000, "
                                               "activity_datetime, writeback_code1, link_url, …)")
    constants: dict[str, str | int | float | bool | None] = Field(default_factory=dict,
                                                                  description="column: a fixed value")
    write_mode: Literal["upsert_multiple", "batch"] = Field(
        "upsert_multiple", description="upsert_multiple: one UpsertMultiple request a batch (all or nothing, "
                                       "split to find a bad record); batch: a $batch of alternate-key PATCHes "
                                       "with continue-on-error (each part counts against the request budget)")
    rate_window: RateWindow | None = Field(
        RateWindow(requests=5800, seconds=300),
        description="client-side request budget; Dataverse allows 6,000 requests per 300 s per user and "
                    "answers 429 beyond; kept per sink worker: with N workers give each 1/N")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict):
            data = {**PRESETS.get(data.get("preset", "task"), {}), **data}
        return data

    @field_validator("url", "authority_host")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith("https://"):
            raise ValueError("an https:// URL (Dataverse and Entra ID are HTTPS-only)")
        return v.rstrip("/")

    @field_validator("entity", "entity_set", "alternate_key")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError(f"{v!r} is not a Dataverse logical name (lower case)")
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict) -> dict:
        for name in v:
            if not NAME.match(name):
                raise ValueError(f"{name!r} is not a Dataverse column logical name (lower case)")
        return check_fields(v)

    @field_validator("contact_bind")
    @classmethod
    def _bind(cls, v):
        if v and (not v.startswith("/") or "{customer_id}" not in v):
            raise ValueError("a path such as /contacts({customer_id}) naming {customer_id}")
        return v or None

    @model_validator(mode="after")
    def _check(self):
        if not (self.client_secret_env or self.client_secret_file):
            raise ValueError("client_secret_env or client_secret_file is required")
        if self.alternate_key in self.fields:
            raise ValueError(f"fields.{self.alternate_key}: the alternate key column always holds the ActivityKey")
        return self

    @property
    def api(self) -> str:
        return f"{self.url}/api/data/v{self.api_version}"

    @field_validator("contact_lookup")
    @classmethod
    def _lookup(cls, v):
        if v is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$", v):
            raise ValueError(f"{v!r} is not a navigation property name")
        return v

    @property
    def bind_property(self) -> str:
        return f"{self.contact_lookup or f'regardingobjectid_contact_{self.entity}'}@odata.bind"
