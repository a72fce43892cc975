"""The admin API's OpenAPI 3.0 document (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

STR_OR_NULL = {"type": "string", "nullable": True}
NUM_OR_NULL = {"type": "number", "nullable": True}
ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "field": {"type": "string"}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {"400": _json(_ref("Error"), "malformed request"), "401": _json(_ref("Error"), "no or wrong API key"),
          "403": _json(_ref("Error"), "the key may not do this"), "404": _json(_ref("Error"), "not found"),
          "409": _json(_ref("Error"), "conflict"), "422": _json(_ref("Error"), "invalid: the field is named"),
          "503": _json(_ref("Error"), "Kafka did not confirm in time")}


def _errors(*codes: str) -> dict:
    return {c: ERRORS[c] for c in ("401", *codes)}


NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
CODE_PARAM = {"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}
EP_PARAM = {"name": "endpoint", "in": "path", "required": True, "schema": {"type": "string"}}

SCHEMAS = {
    "Error": ERROR,
    "IngestKey": {"type": "object", "required": ["id", "tenant", "created_at"], "properties": {
        "id": {"type": "string"}, "tenant": {"type": "string"}, "origin": STR_OR_NULL, "created_at": {"type": "integer"}}},
    "Endpoint": {"type": "object", "required": ["name", "enabled", "provider_type", "provider", "tenants", "settings",
                                                "subscriptions"],
                 "properties": {"name": {"type": "string"}, "enabled": {"type": "boolean"},
                                "provider_type": {"type": "string", "enum": ["membership", "activity-history"]},
                                "provider": {"type": "string"}, "tenants": {"type": "array", "items": {"type": "string"}},
                                "settings": {"type": "object"},
                                "subscriptions": {"type": "object", "required": ["active", "inactive"],
                                                  "properties": {"active": {"type": "integer"},
                                                                 "inactive": {"type": "integer"}}},
                                "subscribed_codes": {"type": "array", "items": {"type": "string"}}}},
    "EndpointInput": {"type": "object", "properties": {
        "name": {"type": "string"}, "enabled": {"type": "boolean"},
        "provider_type": {"type": "string", "enum": ["membership", "activity-history"]},
        "provider": {"type": "string"}, "tenant": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "settings": {"type": "object"}, "subscriptions": {"type": "array", "items": {"type": "string"}}}},
    "SubscriptionRow": {"type": "object", "required": ["activity_code", "category", "endpoints"], "properties": {
        "activity_code": {"type": "string"}, "category": {"type": "string"},
        "merge_variables": {"type": "array", "items": {"type": "string"}},
        "default_description": {"type": "string"},
        "endpoints": {"type": "array", "items": {"type": "object", "properties": {
            "endpoint": {"type": "string"}, "enabled": {"type": "boolean"}, "endpoint_enabled": {"type": "boolean"},
            "description": {"type": "string"}, "writeback_code1": STR_OR_NULL, "writeback_code2": STR_OR_NULL}}}}},
    "SubscriptionInput": {"type": "object", "properties": {
        "enabled": {"type": "boolean"}, "description": {"type": "string"},
        "writeback_code1": STR_OR_NULL, "writeback_code2": STR_OR_NULL}},
    "Subscription": {"type": "object", "required": ["activity_code", "endpoint", "description", "enabled"],
                     "properties": {"activity_code": {"type": "string"}, "endpoint": {"type": "string"},
                                    "description": {"type": "string"}, "enabled": {"type": "boolean"},
                                    "writeback_codes": {"type": "array", "items": STR_OR_NULL}}},
    "Status": {"type": "object", "required": ["endpoint", "delivered", "dead", "retrying"], "properties": {
        "endpoint": {"type": "string"}, "enabled": {"type": "boolean"}, "workers": {"type": "integer"},
        "delivered": {"type": "integer"}, "retried": {"type": "integer"}, "dead": {"type": "integer"},
        "retrying": {"type": "object", "additionalProperties": {"type": "integer"}},
        "lag": {"type": "integer", "nullable": True}, "last_success_at": NUM_OR_NULL,
        "last_error": STR_OR_NULL, "last_error_class": STR_OR_NULL, "last_error_at": NUM_OR_NULL,
        "paused": STR_OR_NULL,
        "held_back": {"type": "object", "nullable": True, "properties": {"reason": {"type": "string"},
                                                                         "until": {"type": "number"}}}}},
    "DeadLetter": {"type": "object", "required": ["activity_key", "reason"], "properties": {
        "endpoint": STR_OR_NULL, "activity_key": {"type": "string"}, "tenant": STR_OR_NULL,
        "reason": {"type": "string"}, "last_error": {"type": "string"}, "attempts": {"type": "integer"},
        "first_failure_at": NUM_OR_NULL, "dead_at": NUM_OR_NULL, "replay_count": {"type": "integer"},
        "replayed": {"type": "boolean"}, "marker": {"type": "string"}}},
    "ReplayInput": {"type": "object", "properties": {
        "endpoint": {"type": "string"}, "keys": {"type": "array", "items": {"type": "string"}},
        "rows": {"type": "array", "description": "exactly these dead letters, of any endpoints (then no endpoint)",
                 "items": {"type": "object", "required": ["endpoint", "activity_key"],
                           "properties": {"endpoint": {"type": "string"}, "activity_key": {"type": "string"}}}},
        "dry_run": {"type": "boolean", "default": True}, "max_replays": {"type": "integer", "minimum": 0, "maximum": 1000}}},
    "ReplayResult": {"type": "object", "required": ["dry_run", "would_replay", "replayed", "not_replayed", "items"],
                     "properties": {"dry_run": {"type": "boolean"}, "would_replay": {"type": "integer"},
                                    "replayed": {"type": "integer"}, "not_replayed": {"type": "integer"},
                                    "items": {"type": "array", "items": {"type": "object"}}}},
    "AuditEntry": {"type": "object", "required": ["at", "key_id", "action", "target"], "properties": {
        "at": {"type": "number"}, "key_id": {"type": "string"}, "role": {"type": "string"},
        "key_tenants": {"type": "array", "items": {"type": "string"}},
        "tenants": {"type": "array", "items": {"type": "string"}}, "action": {"type": "string"},
        "target": {"type": "string"}, "before": {"nullable": True}, "after": {"nullable": True}}},
    "Preview": {"type": "object", "required": ["activity_code", "rendered"], "properties": {
        "activity_code": {"type": "string"}, "rendered": STR_OR_NULL, "activity_key": STR_OR_NULL,
        "note": STR_OR_NULL}},
}


def document() -> dict:
    arr = lambda name: {"type": "array", "items": _ref(name)}  # noqa: E731
    return {
        "openapi": "3.0.3",
        "info": {"title": "activity-sync admin API", "version": "1",
                 "description": "Endpoints, subscriptions, delivery status, dead letters and the audit trail. "
                                "Every call needs an API key: Authorization: Bearer <key> (or X-API-Key)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "paths": {
            "/api/v1/providers": {"get": {"summary": "providers and their settings' JSON Schema",
                                          "responses": {"200": _json({"type": "array", "items": {"type": "object"}}),
                                                        **_errors()}}},
            "/api/v1/activities": {"get": {"summary": "the activity catalog: code, category, merge variables, default text",
                                           "responses": {"200": _json({"type": "array", "items": {"type": "object"}}),
                                                         **_errors()}}},
            "/api/v1/whoami": {"get": {"summary": "the key in use: its id, role and tenants",
                                       "responses": {"200": _json({"type": "object"}), **_errors()}}},
            "/api/v1/categories": {"get": {"summary": "the catalog's activity categories",
                                           "responses": {"200": _json({"type": "array", "items": {"type": "string"}}),
                                                         **_errors()}}},
            "/api/v1/activities/{code}": {
                "parameters": [CODE_PARAM],
                "put": {"summary": "add or change an activity code (a key of every tenant): category, who it is "
                                   "about (customer_key), properties, default description; stored in activity.config",
                        "requestBody": {"required": True, "content": {"application/json": {"schema": {
                            "type": "object", "required": ["category"], "additionalProperties": False,
                            "properties": {"category": {"type": "string"},
                                           "customer_key": {"type": "array", "items": {"type": "string"}},
                                           "properties": {"type": "array", "items": {"type": "string"}},
                                           "object": {"type": "string"},
                                           "description": {"type": "string"}}}}}},
                        "responses": {"200": _json({"type": "object"}), **_errors("400", "403", "422", "503")}},
                "delete": {"summary": "retire an activity code added on the page (a changed bundled code goes back "
                                      "to its bundled definition); refused while subscriptions use it",
                           "responses": {"200": _json({"type": "object"}), **_errors("403", "404", "409", "503")}}},
            "/api/v1/endpoints": {
                "get": {"summary": "endpoints, alphabetically", "responses": {"200": _json(arr("Endpoint")), **_errors()}},
                "post": {"summary": "create an endpoint",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("EndpointInput")}}},
                         "responses": {"201": _json(_ref("Endpoint"), "created"),
                                       **_errors("400", "403", "409", "422", "503")}}},
            "/api/v1/endpoints/{name}": {
                "parameters": [NAME_PARAM],
                "get": {"summary": "one endpoint", "responses": {"200": _json(_ref("Endpoint")), **_errors("404")}},
                "put": {"summary": "edit an endpoint (name, enabled, provider, settings, tenant, subscriptions)",
                        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("EndpointInput")}}},
                        "responses": {"200": _json(_ref("Endpoint")), **_errors("400", "403", "404", "409", "422", "503")}},
                "patch": {"summary": "change some fields (e.g. {\"enabled\": false})",
                          "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("EndpointInput")}}},
                          "responses": {"200": _json(_ref("Endpoint")), **_errors("400", "403", "404", "409", "422", "503")}},
                "delete": {"summary": "delete an endpoint and its subscriptions (dry_run=true: say how many)",
                           "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}],
                           "responses": {"200": _json({"type": "object", "required": ["endpoint", "subscriptions"],
                                                       "properties": {"endpoint": {"type": "string"},
                                                                      "subscriptions": {"type": "integer"},
                                                                      "dry_run": {"type": "boolean"}}}),
                                         **_errors("403", "404", "422", "503")}}},
            "/api/v1/subscriptions": {"get": {
                "summary": "every activity with its category and endpoints",
                "parameters": [{"name": "name", "in": "query", "schema": {"type": "string"}},
                               {"name": "endpoint", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
                                "style": "form", "explode": True},
                               {"name": "category", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
                                "style": "form", "explode": True},
                               {"name": "subscribed", "in": "query",
                                "schema": {"type": "string", "enum": ["all", "subscribed", "unsubscribed"]}}],
                "responses": {"200": _json(arr("SubscriptionRow")), **_errors("422")}}},
            "/api/v1/subscriptions/{code}/{endpoint}": {
                "parameters": [CODE_PARAM, EP_PARAM],
                "put": {"summary": "subscribe or edit: enabled, description template, write-back codes",
                        "requestBody": {"required": True,
                                        "content": {"application/json": {"schema": _ref("SubscriptionInput")}}},
                        "responses": {"200": _json(_ref("Subscription")), **_errors("400", "403", "404", "422", "503")}},
                "delete": {"summary": "unsubscribe", "responses": {"200": _json({"type": "object"}),
                                                                   **_errors("403", "404", "503")}}},
            "/api/v1/preview": {"post": {
                "summary": "render a description template against the newest activity of that code",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["activity_code", "description"],
                    "properties": {"activity_code": {"type": "string"}, "description": {"type": "string"}}}}}},
                "responses": {"200": _json(_ref("Preview")), **_errors("400", "404", "422")}}},
            "/api/v1/status": {"get": {"summary": "delivery status per endpoint",
                                       "responses": {"200": _json(arr("Status")), **_errors()}}},
            "/api/v1/scores": {"get": {
                "summary": "the tenants with engagement scores this key may see, their models and member counts",
                "responses": {"200": _json({"type": "array", "items": {"type": "object"}}), **_errors()}}},
            "/api/v1/scores/report": {"get": {
                "summary": "a tenant's engagement report card for a month, quarter or year (JSON, CSV or printable HTML)",
                "parameters": [{"name": "tenant", "in": "query", "required": True, "schema": {"type": "string"}},
                               {"name": "period", "in": "query", "schema": {"type": "string"}},
                               {"name": "format", "in": "query", "schema": {"type": "string",
                                                                           "enum": ["json", "csv", "html"]}}],
                "responses": {"200": {"description": "the report card", "content": {
                    "application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}}}}, **_errors("404", "422")}}},
            "/api/v1/scores/models/{tenant}": {"put": {
                "summary": "create or change a tenant's scoring model (new activities score under it; "
                           "`activity-sync scores rebuild` re-scores the past)",
                "parameters": [{"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": {"200": _json({"type": "object"}), **_errors("400", "403", "422")}}},
            "/api/v1/scores/members/{member}": {"get": {
                "summary": "a member's score over time, rank, totals and activity timeline",
                "parameters": [{"name": "member", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "tenant", "in": "query", "required": True, "schema": {"type": "string"}},
                               {"name": "category", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object"}), **_errors("404", "422")}}},
            "/api/v1/lists": {"get": {
                "summary": "the community lists this key may see: definition, target group, count, a sample of members",
                "parameters": [{"name": "tenant", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "array", "items": {"type": "object"}}), **_errors()}}},
            "/api/v1/lists/preview": {"post": {
                "summary": "how many members of a tenant match criteria now (and a sample), while a list is edited",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["tenant", "criteria"],
                    "properties": {"tenant": {"type": "string"}, "criteria": {"type": "object"}}}}}},
                "responses": {"200": _json({"type": "object"}), **_errors("400", "404", "422")}}},
            "/api/v1/lists/{tenant}/{id}": {
                "parameters": [{"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "put": {"summary": "create or change a list (super admins)",
                        "requestBody": {"required": True, "content": {"application/json": {"schema": {
                            "type": "object", "required": ["name", "criteria"], "properties": {
                                "name": {"type": "string"}, "criteria": {"type": "object"},
                                "description": {"type": "string"}, "enabled": {"type": "boolean"},
                                "push": {"type": "boolean"}}}}}},
                        "responses": {"200": _json({"type": "object"}), **_errors("400", "403", "404", "422", "503")}},
                "delete": {"summary": "delete a list (super admins)",
                           "responses": {"200": _json({"type": "object"}), **_errors("403", "404", "503")}}},
            "/api/v1/lists/{tenant}/{id}/reconciliation": {"get": {
                "summary": "the list's count beside its target group's in the marketing platform, the difference explained",
                "parameters": [{"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}},
                               {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object"}), **_errors("404")}}},
            "/api/v1/list-connections/{tenant}": {
                "parameters": [{"name": "tenant", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {"summary": "the tenant's Online Community Connection (IAMKey, Active; never the password)",
                        "responses": {"200": _json({"type": "object"}), **_errors("404")}},
                "post": {"summary": "issue a new IAMKey and password (shown once, stored hashed; super admins)",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "properties": {"active": {"type": "boolean"}}}}}},
                         "responses": {"200": _json({"type": "object"}), **_errors("400", "403", "404", "422", "503")}}},
            "/api/v1/anmc/report": {"get": {
                "summary": "the Action Network <-> Mobile Commons syncs' synchronization report: runs, newest first",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                          "maximum": 1000}}],
                "responses": {"200": _json({"type": "array", "items": {"type": "object", "properties": {
                    "run": {"type": "string"}, "sync": STR_OR_NULL, "tenant": {"type": "string"},
                    "side": STR_OR_NULL, "read": {"type": "integer", "nullable": True},
                    "changes": {"type": "integer", "nullable": True}, "at": {"type": "integer", "nullable": True},
                    "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "profiles": {"type": "array", "items": {"type": "object"}}}}}), **_errors("422")}}},
            "/api/v1/sources/status": {"get": {
                "summary": "each polling source's position (lastUpdateDate / id) and how far behind it is",
                "responses": {"200": _json({"type": "array", "items": {"type": "object", "properties": {
                    "source": {"type": "string"}, "kind": {"type": "string"}, "tenant": {"type": "string"},
                    "enabled": {"type": "boolean"}, "cursor": STR_OR_NULL,
                    "cursor_id": STR_OR_NULL, "records": {"type": "integer"},
                    "activities": {"type": "integer"}, "lag_s": NUM_OR_NULL,
                    "last_caught_up": NUM_OR_NULL,
                    "committed_at": NUM_OR_NULL}}}), **_errors()}}},
            "/api/v1/dead-letters": {"get": {
                "summary": "dead letters of the delivery stage",
                "parameters": [{"name": "endpoint", "in": "query", "schema": {"type": "string"}},
                               {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                          "maximum": 10000}}],
                "responses": {"200": _json(arr("DeadLetter")), **_errors("404", "422")}}},
            "/api/v1/replay": {"post": {
                "summary": "replay dead letters (dry_run, the default, says how many would go)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ReplayInput")}}},
                "responses": {"200": _json(_ref("ReplayResult")), **_errors("400", "403", "404", "422")}}},
            "/api/v1/audit": {"get": {
                "summary": "the audit trail, newest first",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                          "maximum": 10000}}],
                "responses": {"200": _json(arr("AuditEntry")), **_errors("422")}}},
            "/api/v1/contacts": {"get": {
                "summary": "the Push API member directory: contacts of the key's tenants (every criterion must match)",
                "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}}
                               for n in ("tenant", "contact_id", "email", "phone", "name")]
                + [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}],
                "responses": {"200": _json({"type": "object", "required": ["contacts", "count", "total"], "properties": {
                    "contacts": {"type": "array", "items": {"type": "object"}}, "count": {"type": "integer"},
                    "total": {"type": "integer"}}}), **_errors("404", "422")}}},
            "/api/v1/ingest-keys": {
                "get": {"summary": "Push API keys of the key's tenants (never their secrets)",
                        "responses": {"200": _json({"type": "array", "items": _ref("IngestKey")}), **_errors()}},
                "post": {"summary": "issue a Push API key; the answer's `key` is shown only this once",
                         "requestBody": {"required": True, "content": {"application/json": {"schema": {
                             "type": "object", "required": ["id", "tenant"], "properties": {
                                 "id": {"type": "string"}, "tenant": {"type": "string"},
                                 "origin": {"type": "string", "nullable": True}}}}}},
                         "responses": {"201": _json({"allOf": [_ref("IngestKey"), {"type": "object", "properties": {
                             "key": {"type": "string"}}}]}), **_errors("400", "403", "409", "422", "503")}}},
            "/api/v1/ingest-keys/{id}": {"delete": {
                "summary": "revoke a Push API key",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json({"type": "object", "properties": {"revoked": {"type": "string"}}}),
                              **_errors("403", "404", "503")}}},
        },
    }
