"""Settings of the Salesforce provider, with the Fonteva and Nimble AMS presets.

A preset fills every setting the endpoint leaves out; what the endpoint sets wins. Presets:

- ``task`` (the default): a ``Task`` per activity, on the member's Contact (``WhoId``).
- ``fonteva``: Fonteva is a Salesforce managed package whose members are Contacts; activities
  are Tasks on the Contact, as with ``task``.
- ``nimble_ams``: Nimble AMS; a custom object (``Community_Activity__c`` by default) with
  who, date/time, type and description fields, delivered every 30 minutes, 200 a call, as the
  seed vendor's own activity sync into Nimble AMS does.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from sinks.mapping import check_fields
from sinks.settings import HttpSettings, secret_ref

TASK_FIELDS = {
    "WhoId": "customer_id",
    "ActivityDate": "activity_date",
    "Subject": "subject",
    "Description": "details",
    "Type": "writeback_code1",
    "Writeback_Code_2__c": "writeback_code2",
    "Activity_Link__c": "link_url",
}

PRESETS: dict[str, dict[str, Any]] = {
    "task": {"sobject": "Task", "external_id_field": "Activity_Key__c", "fields": TASK_FIELDS,
             "constants": {"Status": "Completed"}},
    "fonteva": {"sobject": "Task", "external_id_field": "Activity_Key__c", "fields": TASK_FIELDS,
                "constants": {"Status": "Completed"}},
    "nimble_ams": {"sobject": "Community_Activity__c", "external_id_field": "Activity_Key__c",
                   "fields": {"WhoId__c": "customer_id", "ActivityDate__c": "activity_datetime",
                              "Type__c": "writeback_code1", "Description__c": "description"},
                   "constants": {}, "schedule": {"every": "30m"}, "batch_size": 200},
}

#: field lengths of the objects the presets write (Salesforce Field Reference: Task.Subject 255,
#: Task.Description a 32,000-character Long Text Area; the Nimble AMS object's as its admin creates it)
FIELD_LIMITS = {
    "Task": {"Subject": 255, "Description": 32_000, "Type": 255, "Writeback_Code_2__c": 255,
             "Activity_Link__c": 1024},
    "Community_Activity__c": {"Type__c": 255, "Description__c": 131_072, "Name": 80},
}

LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1"))
MIN_API_VERSION = 46.0
API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")


def relationship_of(lookup: str) -> str | None:
    """The relationship name of a lookup field: ``WhoId`` -> ``Who``, ``Contact__c`` -> ``Contact__r``."""
    if lookup.endswith("__c"):
        return lookup[:-3] + "__r"
    if lookup.endswith("Id") and len(lookup) > 2:
        return lookup[:-2]
    return None


class SalesforceSettings(HttpSettings):
    max_batch: ClassVar[int] = 200  # sObject Collections take at most 200 records a call

    preset: Literal["task", "fonteva", "nimble_ams"] = Field(
        "task", description="defaults for object, fields and schedule: task, fonteva or nimble_ams")
    login_url: str = Field(description="the org's My Domain URL (https://acme.my.salesforce.com); the token "
                                       "endpoint is {login_url}/services/oauth2/token", max_length=2048)
    api_version: str = Field("62.0", pattern=r"^\d{2,3}\.\d$",
                             description="REST API version, 46.0 or later (the upsert by external ID "
                                         "through sObject Collections came with 46.0)")
    auth: Literal["client_credentials", "jwt_bearer"] = Field(
        "client_credentials", description="OAuth 2.0 flow: client_credentials or jwt_bearer")
    client_id: str = Field(description="the connected app's consumer key", min_length=1, max_length=512)
    client_secret_env: str | None = secret_ref("env", "the connected app's consumer secret (client_credentials)")
    client_secret_file: str | None = secret_ref("file", "the connected app's consumer secret (client_credentials)")
    client_auth: Literal["body", "basic"] = Field(
        "body", description="how client_credentials sends id and secret: in the form body or HTTP Basic")
    private_key_env: str | None = secret_ref("env", "the PEM private key that signs the JWT (jwt_bearer)")
    private_key_file: str | None = secret_ref("file", "the PEM private key that signs the JWT (jwt_bearer)")
    username: str | None = Field(None, max_length=255, description="the integration user (jwt_bearer's sub)")
    audience: str | None = Field(None, max_length=2048,
                                 description="jwt_bearer's aud; by default https://test.salesforce.com for a "
                                             "sandbox login_url (test.salesforce.com, *.sandbox.my.salesforce.com), "
                                             "else https://login.salesforce.com")
    sobject: str = Field("Task", description="the object each activity becomes")
    external_id_field: str = Field("Activity_Key__c",
                                   description="an External ID field of the object, holding the ActivityKey")
    fields: dict[str, str] = Field(default_factory=lambda: dict(TASK_FIELDS),
                                   description="object field: source (activity_key, customer_id, activity_date, "
                                               "activity_datetime, subject, description, details, link_url, "
                                               "writeback_code1, writeback_code2, …)")
    contact_match: Literal["id", "external_id"] = Field(
        "id", description="how the member's customer ID names the Contact: id (a Salesforce Contact Id) or "
                          "external_id (the value of contact_external_id_field, e.g. a member number)")
    contact_external_id_field: str | None = Field(
        None, description="external_id: the Contact's External ID field holding the customer ID "
                          "(e.g. Member_Number__c)")
    contact_object: str = Field("Contact", description="external_id: the object the lookup points at")
    field_limits: dict[str, int] | None = Field(
        None, description="field: its length in characters; longer text is cut to it, ending with ' […cut]' "
                          "(default: the lengths of Task and Community_Activity__c fields the presets write)")
    constants: dict[str, str | int | float | bool | None] = Field(
        default_factory=lambda: {"Status": "Completed"}, description="object field: a fixed value")
    limit_backoff_s: float = Field(300, gt=0, le=86_400,
                                   description="seconds to hold the endpoint back after 403 REQUEST_LIMIT_EXCEEDED "
                                               "(Salesforce sends no Retry-After)")
    slow_down_at: float = Field(0.8, gt=0, le=1, description="share of the org's daily API allocation (from "
                                                             "Sforce-Limit-Info) from which requests are spread "
                                                             "over the rest of the day")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict):
            preset = PRESETS.get(data.get("preset", "task"), {})
            data = {**preset, **data}
        return data

    @field_validator("login_url", "audience")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme == "http" and (parts.hostname or "") in LOOPBACK:
            return v.rstrip("/")  # a fake on this machine (the bundled ones)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("an https:// URL (http:// only for a loopback host such as 127.0.0.1)")
        return v.rstrip("/")

    @field_validator("api_version")
    @classmethod
    def _version(cls, v: str) -> str:
        if float(v) < MIN_API_VERSION:
            raise ValueError(f"{v} is too old: the upsert by external ID in sObject Collections needs "
                             f"{MIN_API_VERSION:.1f} or later")
        return v

    @property
    def jwt_audience(self) -> str:
        """The JWT's aud: the setting, else the login server the login_url belongs to."""
        if self.audience:
            return self.audience
        host = (urlsplit(self.login_url).hostname or "").lower()
        sandbox = host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com")
        return "https://test.salesforce.com" if sandbox else "https://login.salesforce.com"

    @field_validator("sobject", "external_id_field", "contact_external_id_field", "contact_object")
    @classmethod
    def _api_name(cls, v: str | None) -> str | None:
        if v is not None and not API_NAME.match(v):
            raise ValueError(f"{v!r} is not a Salesforce API name")
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict) -> dict:
        for name in v:
            if not API_NAME.match(name):
                raise ValueError(f"{name!r} is not a Salesforce field API name")
        return check_fields(v)

    @model_validator(mode="after")
    def _auth(self):
        if self.auth == "client_credentials" and not (self.client_secret_env or self.client_secret_file):
            raise ValueError("client_credentials needs client_secret_env or client_secret_file")
        if self.auth == "jwt_bearer" and not ((self.private_key_env or self.private_key_file) and self.username):
            raise ValueError("jwt_bearer needs private_key_file (or private_key_env) and username")
        if self.external_id_field in self.fields:
            raise ValueError(f"fields.{self.external_id_field}: the external ID field always holds the ActivityKey")
        if self.contact_match == "external_id":
            if not self.contact_external_id_field:
                raise ValueError("contact_match external_id needs contact_external_id_field (the Contact's "
                                 "External ID field holding the customer ID, e.g. Member_Number__c)")
            if self.contact_lookup is None:
                raise ValueError("contact_match external_id: no field maps customer_id (e.g. WhoId: customer_id)")
            if relationship_of(self.contact_lookup) is None:
                raise ValueError(f"fields.{self.contact_lookup}: not a lookup field (WhoId, WhatId, or a custom "
                                 "X__c) whose relationship could be named")
        return self

    @property
    def limits(self) -> dict[str, int]:
        """The field lengths the sink cuts text to: the object's known fields, then the setting."""
        return {**FIELD_LIMITS.get(self.sobject, {}), **(self.field_limits or {})}

    @property
    def contact_lookup(self) -> str | None:
        """The lookup field the customer ID goes to (``WhoId`` for a Task)."""
        return next((f for f, src in self.fields.items() if src == "customer_id"), None)
