"""Settings of the configurable HTTP sink, and its presets.

For AMSs with no public write API (Impexium, MemberSuite, Association Anywhere, UX Online,
YourMembership) the vendor or the association's IT exposes an endpoint of its own; this sink is
told how to talk to it: URL and method, authentication, the body (a JSON or XML template over the
delivery's fields, or form fields), one activity per request or a batch, and how to read the
answer. A preset fills what a system usually wants; the operator completes URL, credentials and
the field names their endpoint uses (what the endpoint sets wins over the preset).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sinks.mapping import check_fields
from sinks.settings import HttpSettings, SecretHeaders, http_url, secret_ref

from . import template as T

WEBHOOK_JSON = json.dumps({
    "ActivityKey": "{{activity_key}}", "ActivityCode": "{{activity_code}}", "ActivityDate": "{{activity_datetime}}",
    "ActivityDescription": "{{description}}", "ContributorMemberKey": "{{customer_id}}",
    "ContributorKey": "{{contact_key}}", "LinkUrl": "{{link_url}}", "WritebackCode1": "{{writeback_code1}}",
    "WritebackCode2": "{{writeback_code2}}"})
WEBHOOK_XML = ("<Activity><ActivityKey>{{activity_key}}</ActivityKey><ActivityCode>{{activity_code}}</ActivityCode>"
               "<ActivityDate>{{activity_datetime}}</ActivityDate><ActivityDescription>{{description}}"
               "</ActivityDescription><ContributorMemberKey>{{customer_id}}</ContributorMemberKey>"
               "<ContributorKey>{{contact_key}}</ContributorKey><LinkUrl>{{link_url}}</LinkUrl></Activity>")

PRESETS: dict[str, dict[str, Any]] = {
    # the seed vendor's own outbound activity webhook: one activity per POST, JSON or XML, fixed headers
    "activity_webhook": {"mode": "one", "auth": "headers", "body_format": "json", "template": WEBHOOK_JSON},
    "impexium": {"mode": "one", "auth": "headers", "body_format": "json", "template": json.dumps({
        "customerId": "{{customer_id}}", "activityType": "{{writeback_code1}}", "activitySubType": "{{writeback_code2}}",
        "activityDate": "{{activity_datetime}}", "description": "{{description}}", "externalId": "{{activity_key}}",
        "url": "{{link_url}}"})},
    "membersuite": {"mode": "one", "auth": "bearer", "body_format": "json", "template": json.dumps({
        "ClassType": "CommunityActivity", "Owner": "{{customer_id}}", "Type": "{{writeback_code1}}",
        "SubType": "{{writeback_code2}}", "Date": "{{activity_datetime}}", "Description": "{{description}}",
        "ExternalKey": "{{activity_key}}"})},
    "association_anywhere": {"mode": "one", "auth": "basic", "body_format": "xml", "template": (
        "<Activity><CustomerId>{{customer_id}}</CustomerId><ActivityCode>{{writeback_code1}}</ActivityCode>"
        "<ActivitySubCode>{{writeback_code2}}</ActivitySubCode><ActivityDate>{{activity_datetime}}</ActivityDate>"
        "<Description>{{description}}</Description><ExternalKey>{{activity_key}}</ExternalKey></Activity>")},
    "ux_online": {"mode": "batch", "auth": "oauth2", "body_format": "json", "batch_size": 100,
                  "batch_wrapper": '{"activities": "{{items}}"}', "results_path": "results",
                  "result_key_field": "externalId", "template": json.dumps({
                      "memberId": "{{customer_id}}", "code": "{{writeback_code1}}", "subCode": "{{writeback_code2}}",
                      "date": "{{activity_datetime}}", "description": "{{description}}",
                      "externalId": "{{activity_key}}"})},
    "yourmembership": {"mode": "one", "auth": "headers", "body_format": "json", "template": json.dumps({
        "MemberID": "{{customer_id}}", "ActivityType": "{{writeback_code1}}", "ActivityDate": "{{activity_datetime}}",
        "Description": "{{description}}", "ExternalID": "{{activity_key}}"})},
}


class HttpSinkSettings(SecretHeaders, HttpSettings):
    max_batch: ClassVar[int] = 1000

    preset: Literal["custom", "activity_webhook", "impexium", "membersuite", "association_anywhere", "ux_online",
                    "yourmembership"] = Field("custom", description="defaults for a known system; what the endpoint "
                                                                    "sets wins")
    url: str = Field(description="where the requests go: an http:// or https:// URL", max_length=2048)
    method: Literal["POST", "PUT", "PATCH"] = Field("POST", description="the HTTP method")
    mode: Literal["one", "batch"] = Field("one", description="one activity per request, or a batch per request")
    batch_size: int = Field(100, ge=1, description="activities per request (batch mode) or per write (one mode)")
    concurrency: int = Field(4, ge=1, le=64, description="requests in flight at once (one mode)")
    # ---- authentication
    auth: Literal["none", "headers", "basic", "bearer", "oauth2"] = Field(
        "none", description="none; headers (fixed headers, secret ones from headers_env/_file); basic; bearer "
                            "(a static token); oauth2 (client credentials)")
    headers: dict[str, str] = Field(default_factory=dict, description="request headers that are not secret")
    headers_env: str | None = secret_ref("env", "secret request headers, one 'Name: value' per line")
    headers_file: str | None = secret_ref("file", "secret request headers, one 'Name: value' per line")
    username: str | None = Field(None, max_length=255, description="HTTP Basic user (auth: basic)")
    password_env: str | None = secret_ref("env", "the HTTP Basic password")
    password_file: str | None = secret_ref("file", "the HTTP Basic password")
    bearer_token_env: str | None = secret_ref("env", "the static bearer token (auth: bearer)")
    bearer_token_file: str | None = secret_ref("file", "the static bearer token (auth: bearer)")
    oauth_endpoint: str | None = Field(None, max_length=2048, description="the OAuth 2.0 token endpoint (auth: oauth2)")
    oauth_client_id: str | None = Field(None, max_length=512, description="the OAuth 2.0 client id")
    oauth_client_secret_env: str | None = secret_ref("env", "the OAuth 2.0 client secret")
    oauth_client_secret_file: str | None = secret_ref("file", "the OAuth 2.0 client secret")
    oauth_client_auth: Literal["body", "basic"] = Field(
        "body", description="how the client id and secret go to the token endpoint: in the form body "
                            "(client_secret_post) or HTTP Basic (client_secret_basic, RFC 6749 2.3.1)")
    oauth_params: dict[str, str] = Field(default_factory=dict,
                                         description="extra token request parameters, e.g. {audience: …} or "
                                                     "{resource: …}")
    oauth_scope: str | None = Field(None, max_length=1024, description="the scope to ask for, if the server wants one")
    # ---- body
    body_format: Literal["json", "xml", "form"] = Field("json", description="json, xml or form")
    template: str | None = Field(None, max_length=65_536,
                                 description="one activity's body: JSON or XML with {{source}} placeholders "
                                             "(activity_key, customer_id, description:200, detail:Name, …)")
    batch_wrapper: str | None = Field(None, max_length=65_536,
                                      description="batch mode: the body around the items, {{items}} where they go "
                                                  "(JSON default: the bare array; XML default: <Activities>…)")
    form_fields: dict[str, str] = Field(default_factory=dict, description="form mode: field: source")
    # ---- the answer
    success_statuses: list[int] = Field(default_factory=list,
                                        description="statuses that mean success (default: any 2xx)")
    setup_statuses: list[int] = Field(default_factory=lambda: [403, 404, 405],
                                      description="statuses that say the endpoint's setup is wrong (no permission, "
                                                  "no such path, method not allowed): the endpoint pauses with the "
                                                  "reason, nothing is dead-lettered; take 404 out where the API "
                                                  "answers it for one unknown record")
    success_pointer: str | None = Field(
        None, max_length=200, description="a JSON pointer into a 2xx answer (e.g. /success): the request "
                                          "succeeded only if the value there is success_value")
    success_value: str | int | bool | None = Field(True, description="what success_pointer must find")
    error_pointer: str | None = Field(
        None, max_length=200, description="a JSON pointer into a 2xx answer (e.g. /error): a non-empty value "
                                          "there means the request failed, with that message")
    duplicate_statuses: list[int] = Field(default_factory=lambda: [409],
                                          description="statuses that mean 'already have it' (success)")
    results_path: str | None = Field(None, max_length=200,
                                     description="batch mode: dotted path to the per-record results (JSON: keys "
                                                 "and indexes, e.g. results; XML: element names from the root, "
                                                 "e.g. Results.Result)")
    result_key_field: str | None = Field(None, max_length=200, description="the result's field holding the "
                                                                           "activity key (else results are in order)")
    result_status_field: str = Field("status", max_length=200,
                                     description="the result's status: an HTTP status, or true/false")
    result_error_field: str = Field("error", max_length=200, description="the result's error message")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict) and data.get("preset") in PRESETS:
            preset = dict(PRESETS[data["preset"]])
            if data["preset"] == "activity_webhook" and data.get("body_format") == "xml" and "template" not in data:
                preset["template"] = WEBHOOK_XML
            data = {**preset, **data}
        return data

    @field_validator("url", "oauth_endpoint")
    @classmethod
    def _url(cls, v):
        return http_url(v, strip=False)

    @field_validator("form_fields")
    @classmethod
    def _form(cls, v):
        return check_fields(v)

    @model_validator(mode="after")
    def _check(self):
        need = {"basic": ("username", "password"), "bearer": ("bearer_token",),
                "oauth2": ("oauth_endpoint", "oauth_client_id", "oauth_client_secret")}
        for name in need.get(self.auth, ()):
            if hasattr(self, name) and not getattr(self, name):
                raise ValueError(f"auth {self.auth} needs {name}")
            if not hasattr(self, name) and not (getattr(self, f"{name}_env") or getattr(self, f"{name}_file")):
                raise ValueError(f"auth {self.auth} needs {name}_env or {name}_file")
        if self.body_format == "form":
            if not self.form_fields:
                raise ValueError("form_fields: form bodies need at least one field")
            if self.mode == "batch":
                raise ValueError("mode: form bodies carry one activity a request (mode: one)")
        elif not self.template:
            raise ValueError("template: a JSON or XML body template is required (or choose a preset)")
        else:
            check = T.parse_json_template if self.body_format == "json" else T.check_xml_template
            for name in ("template", "batch_wrapper"):
                if getattr(self, name):
                    try:
                        check(getattr(self, name), allow_items=name == "batch_wrapper")
                    except ValueError as exc:
                        raise ValueError(f"{name}: {exc}") from None
        per_record = sorted({src for text in (self.url, *self.headers.values()) for src in T.sources_in(text)})
        if per_record:
            if self.mode == "batch":
                raise ValueError(f"url/headers: placeholders ({', '.join(per_record)}) are rendered per record: "
                                 "mode one only")
            for text in (self.url, *self.headers.values()):
                try:
                    T.check_sources(text)
                except ValueError as exc:
                    raise ValueError(f"url/headers: {exc}") from None
        reserved = {"grant_type", "client_id", "client_secret", "scope"} & set(self.oauth_params)
        if reserved:
            raise ValueError(f"oauth_params: {', '.join(sorted(reserved))} are set by the sink (scope: oauth_scope)")
        for name in ("success_pointer", "error_pointer"):
            v = getattr(self, name)
            if v is not None and not v.startswith("/"):
                raise ValueError(f"{name}: a JSON pointer such as /success (RFC 6901)")
        return self

    def json_template(self):
        return json.loads(self.template)

    def json_wrapper(self):
        return json.loads(self.batch_wrapper) if self.batch_wrapper else "{{items}}"

    def xml_wrapper(self) -> str:
        return self.batch_wrapper or "<Activities>{{items}}</Activities>"
