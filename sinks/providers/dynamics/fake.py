"""A fake Microsoft Entra ID + Dataverse environment, for tests, the demo and the benchmark.

It implements what Microsoft documents, not what our sink happens to send:

- Entra ID (Microsoft identity platform, "OAuth 2.0 client credentials flow" and "OpenID Connect
  discovery document"): ``GET /{tenant}/v2.0/.well-known/openid-configuration``; ``POST
  /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, ``client_id``,
  ``client_secret`` (form or HTTP Basic) and ``scope={resource}/.default``; answers
  ``{token_type: "Bearer", expires_in, ext_expires_in, access_token}``; refusals are 400/401
  ``{"error", "error_description": "AADSTS…", "error_codes"}``. Tokens expire after
  ``token_lifetime_s``.
- Dataverse Web API v9.x (learn.microsoft.com/power-apps/developer/data-platform/webapi/):
  create (``POST {set}`` → 204 + ``OData-EntityId``), upsert by alternate key (``PATCH
  {set}(key='v')`` → 204; ``If-Match: *`` update only, 404 if missing; ``If-None-Match: *``
  create only, 412 if it exists), ``CreateMultiple`` (200 ``{"Ids"}``) and ``UpsertMultiple``
  (204, all or nothing: one invalid target refuses the whole request and stores none),
  ``$batch`` (``multipart/mixed``, part request lines with absolute or relative URLs, changesets
  all or nothing, at most 1000 requests; without ``Prefer: odata.continue-on-error`` it stops at
  the first failure and answers 400 with that failure only; with it, 200 and a status per part),
  ``EntityDefinitions`` metadata (entity set name, primary id, picklists) that client libraries
  ask for, and errors as ``{"error": {"code", "message"}}``: an unknown column, a value over
  its length (``0x80044331``), a contact that does not exist (404 ``0x80040217``).
- Service protection API limits (api-limits): a sliding window of ``limit_requests`` (6,000)
  requests per ``limit_window_s`` (300 s) per user, each part of a ``$batch`` counted, and
  ``limit_concurrent`` (52) requests at once; beyond, 429 with ``Retry-After`` in seconds and
  code ``0x80072322`` (requests) or ``0x80072326`` (concurrency). Every 429 is counted
  (``throttled``), so a benchmark can show a client that never earned one.
- Payload size: over ``max_body_bytes`` a request answers 413.

Dataverse and Entra ID are HTTPS-only for their clients (MSAL refuses an http authority), so the
fake serves TLS with a certificate from a CA made at start; clients trust ``ca_file``.

    python -m sinks.providers.dynamics.fake [--port 8087] [--ca-file var/fake-ca.pem]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import math
import os
import re
import secrets
import time
import uuid
from collections import deque
from urllib.parse import unquote

from aiohttp import web

from core.fakes import FaultyFake

from . import odata

TEXT, DATETIME, INT, GUID_T = "text", "datetime", "int", "guid"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TASK = {
    "activityid": (GUID_T, None), "subject": (TEXT, 200), "description": (TEXT, 2000),
    "actualstart": (DATETIME, None), "actualend": (DATETIME, None), "scheduledstart": (DATETIME, None),
    "scheduledend": (DATETIME, None), "category": (TEXT, 250), "subcategory": (TEXT, 250),
    "prioritycode": (INT, None), "statecode": (INT, None), "statuscode": (INT, None),
    # custom columns an admin creates for activity-sync (the task and cobalt presets)
    "new_activitykey": (TEXT, 100), "new_activitylink": (TEXT, 1000),
    "cobalt_activitykey": (TEXT, 100), "cobalt_activitylink": (TEXT, 1000),
}
#: a custom (non-activity) table an admin may create instead: a lookup to Contact named new_Contact
COMMUNITY_ACTIVITY = {
    "new_communityactivityid": (GUID_T, None), "new_name": (TEXT, 200), "new_description": (TEXT, 4000),
    "new_activitydate": (DATETIME, None), "new_code": (TEXT, 100), "new_activitykey": (TEXT, 100),
}
TABLES = {  # logical name -> (entity set, primary id, columns, alternate keys)
    "task": ("tasks", "activityid", TASK, {"new_activitykey", "cobalt_activitykey"}),
    "new_communityactivity": ("new_communityactivities", "new_communityactivityid", COMMUNITY_ACTIVITY,
                              {"new_activitykey"}),
}
#: per table, its lookups to contact: navigation property -> the lookup's value column
CONTACT_LOOKUPS = {"task": {"regardingobjectid_contact_task": "_regardingobjectid_value"},
                   "new_communityactivity": {"new_Contact": "_new_contact_value"}}
#: tables the org's UpsertMultiple does not serve (it depends on the org and the table; the custom one here)
NO_UPSERT_MULTIPLE = {"new_communityactivity"}
CONTACT_KEYS = {"new_customerid", "cobalt_customerid"}
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 412: "Precondition Failed", 413: "Payload Too Large", 429: "Too Many Requests",
           500: "Internal Server Error", 503: "Service Unavailable"}


class Answer(Exception):
    """An error answer: status, Dataverse error code and message."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> str:
        return json.dumps({"error": {"code": self.code, "message": self.message}})


def _error(status, code, message, headers=None) -> web.Response:
    return web.Response(status=status, text=Answer(status, code, message).body(), headers=headers,
                        content_type="application/json")


class FakeDataverse(FaultyFake):
    path = "/api/data/v9.2"

    def __init__(self, tenant: str = "contoso-tenant", client_id: str = "test-app", client_secret: str | None = None,
                 token_lifetime_s: float = 3599, limit_requests: int = 6000, limit_window_s: float = 300,
                 limit_concurrent: int = 52, contacts: set[str] | None = None,
                 max_body_bytes: int = 64 * 1024 * 1024) -> None:
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.token_lifetime_s = token_lifetime_s
        self.limit_requests, self.limit_window_s, self.limit_concurrent = limit_requests, limit_window_s, limit_concurrent
        self.contacts = contacts
        self.max_body_bytes = max_body_bytes
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.records: dict[tuple[str, str], dict] = {}   # (entity set, activity key) -> record
        self.by_id: dict[str, tuple[str, str]] = {}
        self.order: list[tuple[str, str]] = []
        self.updates = 0
        self.rejected = 0
        self.throttled = 0
        self.window: deque[float] = deque()
        self.inflight = 0
        self.forbidden_tables: set[str] = set()  # tables the app's security role may not write (403)
        self.token_expiry: dict[str, float] = {}
        self.bodies: list[tuple[str, str, str]] = []   # (method, path, body) of writes, the last 50
        self.batch_lines: list[str] = []               # request lines seen inside $batch parts

    def control(self, spec: dict) -> None:
        super().control(spec)
        if "forbid_tables" in spec:
            self.forbidden_tables = set(spec["forbid_tables"] or ())
        for k in ("limit_requests", "limit_window_s", "limit_concurrent", "max_body_bytes", "token_lifetime_s"):
            if k in spec:
                setattr(self, k, type(getattr(self, k))(spec[k]))

    def token_valid(self, token) -> bool:
        return super().token_valid(token) and time.time() < self.token_expiry.get(token, 0)

    def stored_keys(self) -> list[str]:
        return [k for _, k in self.order]

    def received(self) -> list[dict]:
        return [self.records[k] for k in self.order]

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.records), "duplicates": self.updates, "updates": self.updates,
                "rejected": self.rejected, "throttled": self.throttled}

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/data/v9.2"

    # ------------------------------------------------------------------ faults as Dataverse answers them
    def fault_response(self, status: int) -> web.Response:
        return _error(status, "0x80040216", "An unexpected error occurred.")

    def throttle_response(self, retry_after: float) -> web.Response:
        self.throttled += 1
        return _error(429, "0x80072322", "Number of requests exceeded the limit of 6000 over time window of "
                                         "300 seconds.", {"Retry-After": str(math.ceil(retry_after))})

    # ------------------------------------------------------------------ Entra ID
    async def handle_discovery(self, request: web.Request) -> web.Response:
        t = request.match_info["tenant"]
        if t != self.tenant:
            return web.json_response({"error": "invalid_tenant", "error_description":
                                      f"AADSTS90002: Tenant '{t}' not found."}, status=400)
        base = f"{self.base_url}/{t}"
        return web.json_response({
            "token_endpoint": f"{base}/oauth2/v2.0/token", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0", "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"], "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com"})

    async def handle_token(self, request: web.Request) -> web.Response:
        if request.match_info["tenant"] != self.tenant:
            return web.json_response({"error": "invalid_request", "error_description":
                                      f"AADSTS90002: Tenant '{request.match_info['tenant']}' not found.",
                                      "error_codes": [90002]}, status=400)
        form = await request.post()
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type", "error_description":
                                      "AADSTS70003: The app requested an unsupported grant type.",
                                      "error_codes": [70003]}, status=400)
        if cid != self.client_id:
            return web.json_response({"error": "unauthorized_client", "error_description":
                                      f"AADSTS700016: Application with identifier '{cid}' was not found in the "
                                      f"directory.", "error_codes": [700016]}, status=400)
        if self.client_secret is None or not secrets.compare_digest(str(secret or ""), self.client_secret):
            return web.json_response({"error": "invalid_client", "error_description":
                                      "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]},
                                     status=401)
        if form.get("scope") != f"{self.base_url}/.default":
            return web.json_response({"error": "invalid_scope", "error_description":
                                      f"AADSTS70011: The provided value for the input parameter 'scope' is not "
                                      f"valid. The scope {form.get('scope')} is not valid.", "error_codes": [70011]},
                                     status=400)
        token = self.issue_token()
        self.token_expiry[token] = time.time() + self.token_lifetime_s
        life = int(self.token_lifetime_s)
        return web.json_response({"token_type": "Bearer", "expires_in": life, "ext_expires_in": life,
                                  "access_token": token})

    # ------------------------------------------------------------------ Web API
    async def handle_api(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not (auth.startswith("Bearer ") and self.token_valid(auth[7:])):
            self.log(401)
            return web.Response(status=401, headers={"WWW-Authenticate": f'Bearer error="invalid_token", '
                                                     f'authorization_uri="{self.base_url}/{self.tenant}/oauth2/authorize"'})
        self.inflight += 1
        try:
            response, n = await self._api(request)
        finally:
            self.inflight -= 1
        self.log(response.status, n)
        return response

    def _budget(self, cost: int) -> web.Response | None:
        now = time.time()
        while self.window and self.window[0] <= now - self.limit_window_s:
            self.window.popleft()
        if self.inflight > self.limit_concurrent:
            self.throttled += 1
            return _error(429, "0x80072326", f"Number of concurrent requests exceeded the limit of "
                                             f"{self.limit_concurrent}.", {"Retry-After": "1"})
        if len(self.window) + cost > self.limit_requests:
            if cost > self.limit_requests or not self.window:
                raise_after = self.limit_window_s
                self.throttled += 1
                return _error(429, "0x80072322", f"Number of requests exceeded the limit of {self.limit_requests}.",
                              {"Retry-After": str(math.ceil(raise_after))})
            oldest = self.window[min(len(self.window) - 1, len(self.window) + cost - self.limit_requests - 1)]
            self.throttled += 1
            self._throttled_until = oldest + self.limit_window_s
            return _error(429, "0x80072322", f"Number of requests exceeded the limit of {self.limit_requests} over "
                                             f"time window of {self.limit_window_s:g} seconds.",
                          {"Retry-After": str(max(1, math.ceil(oldest + self.limit_window_s - now)))})
        self.window.extend([now] * cost)
        return None

    async def _api(self, request: web.Request):
        fault = await self.faults()
        if fault is not None:
            return fault, 0
        raw = await request.read()
        tail = request.match_info["tail"]
        parts = None
        if tail == "$batch" and request.method == "POST":
            boundary = odata.boundary_of(request.headers.get("Content-Type"))
            try:
                parts = odata.parse_multipart(raw.decode(), boundary or "")
            except (ValueError, UnicodeDecodeError) as exc:
                return _error(400, "0x80048d19", f"The batch request must have a valid multipart body: {exc}"), 0
        cost = sum(len(p.changeset) if p.changeset is not None else 1 for p in parts) if parts is not None else 1
        throttled = self._budget(cost)
        if throttled is not None:
            return throttled, 0
        if len(raw) > self.max_body_bytes:
            return _error(413, "0x80040216", f"The request is larger than {self.max_body_bytes} bytes."), 0
        if parts is not None:
            return self._batch(parts, request.headers.get("Prefer", "")), cost
        try:
            status, headers, body, n = self.dispatch(request.method, tail, dict(request.query),
                                                     request.headers, raw.decode() if raw else "")
        except Answer as a:
            return web.Response(status=a.status, text=a.body(), headers=a.headers, content_type="application/json"), 0
        if body is None:
            return web.Response(status=status, headers=headers), n
        return web.Response(status=status, text=body, headers=headers, content_type="application/json"), n

    # ------------------------------------------------------------------ dispatch (top level and $batch parts)
    def dispatch(self, method: str, tail: str, query: dict, headers, body: str):
        """(status, headers, body or None, records written) of one request, or raise :class:`Answer`."""
        tail = tail.strip("/")
        if tail.startswith("EntityDefinitions"):
            return self._metadata(tail, query)
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?(?:/(Microsoft\.Dynamics\.CRM\.\w+))?$", tail, re.S)
        if not m:
            raise Answer(404, "0x80060888", f"Resource not found for the segment '{tail.split('/')[0]}'.")
        entity_set, key, action = m.group(1), m.group(2), m.group(3)
        table = next((n for n, t in TABLES.items() if t[0] == entity_set), None)
        if table is None:
            raise Answer(404, "0x80060888", f"Resource not found for the segment '{entity_set}'.")
        if method in ("PATCH", "POST", "PUT"):
            self.bodies = (self.bodies + [(method, tail, body)])[-50:]
            if table in self.forbidden_tables:  # the application user's security role lacks the privilege
                raise Answer(403, "0x80040220", f"Principal user (Id={self.client_id}, type=8) is missing "
                                                f"prvWrite{table} privilege (Id=2f0c5d64-0ad7-4a2d-9b49-5c2b0a6b1d1e) "
                                                f"on OTC=4212 for entityName {table}.")
        if action and method == "POST" and key is None:
            doc = self._json(body)
            if action == "Microsoft.Dynamics.CRM.UpsertMultiple" and table not in NO_UPSERT_MULTIPLE:
                return self._upsert_multiple(table, doc)
            if action == "Microsoft.Dynamics.CRM.CreateMultiple":
                return self._create_multiple(table, doc)
            raise Answer(404, "0x80060888", f"Resource not found for the segment '{action}'.")
        if key is None and method == "POST":
            rid = self._write(table, None, self._json(body), create_only=True)
            return 204, {"OData-EntityId": f"{self.api}/{entity_set}({rid})", "OData-Version": "4.0"}, None, 1
        if key is not None and method == "PATCH":
            alt = self._key(table, key)
            rid = self._write(table, alt, self._json(body), if_match=headers.get("If-Match") == "*",
                              if_none_match=headers.get("If-None-Match") == "*")
            return 204, {"OData-EntityId": f"{self.api}/{entity_set}({rid})", "OData-Version": "4.0"}, None, 1
        if key is not None and method == "GET":
            alt = self._key(table, key)
            rec = self._find(table, alt)
            if rec is None:
                raise Answer(404, "0x80040217", f"{table} With Ids = {key} Does Not Exist")
            return 200, {"OData-Version": "4.0"}, json.dumps(rec), 0
        if key is None and method == "GET":
            top = int(query.get("$top", 5000))
            return 200, {"OData-Version": "4.0"}, json.dumps({"value": self.received()[:top]}), 0
        raise Answer(405, "0x80060888", f"{method} is not supported on this resource.")

    def _metadata(self, tail: str, query: dict):
        if "PicklistAttributeMetadata" in tail or "/Attributes" in tail:
            return 200, {}, json.dumps({"value": []}), 0
        m = re.search(r"LogicalName eq '([^']*)'", query.get("$filter", "")) or \
            re.search(r"LogicalName='([^']*)'", tail)
        name = m.group(1) if m else None
        rows = []
        for logical, (eset, pid, _, _) in TABLES.items():
            if name in (None, logical):
                rows.append({"LogicalName": logical, "SchemaName": logical.capitalize(), "EntitySetName": eset,
                             "PrimaryIdAttribute": pid, "PrimaryNameAttribute": "subject",
                             "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, logical))})
        return 200, {"OData-Version": "4.0"}, json.dumps({"@odata.context": f"{self.api}/$metadata#EntityDefinitions",
                                                          "value": rows}), 0

    @staticmethod
    def _json(body: str) -> dict:
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            raise Answer(400, "0x80048d19", "Error identified in Payload provided by the user for Entity: "
                                            "the body is not valid JSON.") from None
        if not isinstance(doc, dict):
            raise Answer(400, "0x80048d19", "The request body must be a JSON object.")
        return doc

    def _key(self, table: str, key: str) -> tuple[str, str]:
        """``new_activitykey='a'`` → ("new_activitykey", "a"); a GUID → ("<primary id>", guid)."""
        key = unquote(key)
        _, pid, _, alt_keys = TABLES[table]
        if GUID.match(key):
            return pid, key.lower()
        m = re.match(r"^(\w+)='((?:[^']|'')*)'$", key)
        if not m:
            raise Answer(400, "0x80060888", f"Bad Request - Error in query syntax: ({key}).")
        if m.group(1) not in alt_keys:
            raise Answer(400, "0x80060888", f"Invalid alternate key: the key attribute {m.group(1)} is not defined "
                                            f"as an alternate key for {table}.")
        return m.group(1), m.group(2).replace("''", "'")

    def _find(self, table: str, alt: tuple[str, str]) -> dict | None:
        eset, pid = TABLES[table][0], TABLES[table][1]
        if alt[0] == pid:
            k = self.by_id.get(alt[1])
            return self.records.get(k) if k else None
        return self.records.get((eset, alt[1]))

    def _validate(self, table: str, rec: dict) -> dict:
        """The columns to store, or raise the Answer Dataverse gives."""
        eset, pid, columns, _ = TABLES[table]
        out = {}
        for k, v in rec.items():
            if k.startswith("@odata."):
                continue
            if k.endswith("@odata.bind"):
                nav = k[:-len("@odata.bind")]
                lookup = CONTACT_LOOKUPS.get(table, {}).get(nav)
                if lookup is None:
                    raise Answer(400, "0x80060888", f"An undeclared property '{nav}' which only has property "
                                                    f"annotations in the payload but no property value was found.")
                out[lookup] = self._contact(str(v))
                continue
            if k not in columns:
                raise Answer(400, "0x80060888", f"The property '{k}' does not exist on type "
                                                f"'Microsoft.Dynamics.CRM.{table}'. Make sure to only use property "
                                                f"names that are defined by the type or mark the type as open type.")
            kind, size = columns[k]
            if v is not None and kind == TEXT and size and len(str(v)) > size:
                raise Answer(400, "0x80044331", f"A validation error occurred. The length of the '{k}' attribute "
                                                f"of the '{table}' entity exceeded the maximum allowed length of "
                                                f"'{size}'.")
            if v is not None and kind == DATETIME:
                try:
                    dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
                except ValueError:
                    raise Answer(400, "0x80060888", f"Cannot convert the literal '{v}' to the expected type "
                                                    f"'Edm.DateTimeOffset'.") from None
            out[k] = v
        return out

    def _contact(self, ref: str) -> str:
        m = re.match(r"^/?contacts\((.*)\)$", ref)
        if not m:
            raise Answer(400, "0x80060888", f"Bad Request - Error in query syntax: {ref}")
        inner = m.group(1)
        if GUID.match(inner):
            value = inner.lower()
        else:
            km = re.match(r"^(\w+)='((?:[^']|'')*)'$", inner)
            if not km or km.group(1) not in CONTACT_KEYS:
                raise Answer(400, "0x80060888", f"Invalid alternate key for contact: {inner}")
            value = km.group(2).replace("''", "'")
        if value in self.reject_customers or (self.contacts is not None and value not in self.contacts):
            raise Answer(404, "0x80040217", f"contact With Ids = {inner} Does Not Exist")
        return value

    def _write(self, table: str, alt: tuple[str, str] | None, rec: dict, *, create_only=False, if_match=False,
               if_none_match=False) -> str:
        eset, pid, _, alt_keys = TABLES[table]
        values = self._validate(table, rec)
        if alt is None:  # a plain create: the alternate key, if any, comes from the body
            key_col = next((k for k in alt_keys if values.get(k)), None)
            alt = (key_col, values[key_col]) if key_col else (pid, str(uuid.uuid4()))
        elif alt[0] != pid:
            if values.get(alt[0]) not in (None, alt[1]):
                raise Answer(400, "0x80060888", "The alternate key value in the body does not match the URL.")
            values[alt[0]] = alt[1]
        existing = self._find(table, alt)
        if existing is not None and (create_only or if_none_match):
            raise Answer(412, "0x80040237", "A record with matching key values already exists.")
        if existing is None and if_match:
            raise Answer(404, "0x80040217", f"{table} With Ids = {alt[1]} Does Not Exist")
        if existing is not None:
            existing.update(values)
            self.updates += 1
            return existing[pid]
        rid = alt[1] if alt[0] == pid else str(uuid.uuid4())
        stored_key = (eset, alt[1] if alt[0] != pid else rid)
        self.records[stored_key] = {pid: rid, **values}
        self.by_id[rid] = stored_key
        self.order.append(stored_key)
        return rid

    def _targets(self, table: str, doc: dict) -> list[dict]:
        targets = doc.get("Targets")
        if not isinstance(targets, list) or not targets:
            raise Answer(400, "0x80048d19", "Targets must be a non-empty array of entities.")
        for t in targets:
            if not isinstance(t, dict) or t.get("@odata.type") != f"Microsoft.Dynamics.CRM.{table}":
                raise Answer(400, "0x80048d19", f"Every target must be of type Microsoft.Dynamics.CRM.{table}.")
        return targets

    def _upsert_multiple(self, table: str, doc: dict):
        targets = self._targets(table, doc)
        plans = []
        for t in targets:  # all or nothing: check every target before storing any
            oid = t.get("@odata.id")
            if oid:
                m = re.match(r"^(?:.*/)?\w+\((.*)\)$", oid)
                alt = self._key(table, m.group(1)) if m else None
            else:
                key_col = next((k for k in TABLES[table][3] if t.get(k)), None)
                alt = (key_col, t[key_col]) if key_col else None
            if alt is None:
                raise Answer(400, "0x80048d19", "UpsertMultiple needs each target's key: @odata.id or the alternate "
                                                "key's columns.")
            try:
                self._validate(table, t)
            except Answer:
                self.rejected += 1
                raise
            plans.append((alt, t))
        for alt, t in plans:
            self._write(table, alt, t)
        return 204, {"OData-Version": "4.0"}, None, len(plans)

    def _create_multiple(self, table: str, doc: dict):
        targets = self._targets(table, doc)
        for t in targets:
            self._validate(table, t)
        ids = [self._write(table, None, t, create_only=True) for t in targets]
        return 200, {"OData-Version": "4.0"}, json.dumps({
            "@odata.context": f"{self.api}/$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse", "Ids": ids}), len(ids)

    # ------------------------------------------------------------------ $batch
    def _relative(self, url: str) -> str:
        """A part's URL, absolute (Microsoft's clients) or relative (the docs), as the path after the API root."""
        m = re.match(r"^(?:https?://[^/]+)?/?(?:api/data/v\d+\.\d+/)?(.*)$", url)
        return m.group(1) if m else url

    def _run_part(self, part: odata.Part):
        bits = part.start_line.split(" ")
        if len(bits) < 2:
            raise Answer(400, "0x80048d19", f"Invalid request line in a batch part: {part.start_line!r}")
        method, url = bits[0].upper(), bits[1]
        self.batch_lines.append(part.start_line)
        self.batch_lines = self.batch_lines[-2000:]
        path, _, qs = url.partition("?")
        query = dict(p.split("=", 1) for p in unquote(qs).split("&") if "=" in p)
        hdrs = {k.title(): v for k, v in part.http_headers.items()}
        return self.dispatch(method, self._relative(path), query, hdrs, part.body)

    def _batch(self, parts: list[odata.Part], prefer: str) -> web.Response:
        count = sum(len(p.changeset) if p.changeset is not None else 1 for p in parts)
        if count > 1000:
            return _error(400, "0x8005f103", f"The number of requests in a batch exceeds the limit of 1000 "
                                             f"({count}).")
        keep_going = "odata.continue-on-error" in prefer.lower()
        boundary = f"batchresponse_{uuid.uuid4()}"
        out: list[str] = []
        written = 0
        for part in parts:
            items = part.changeset if part.changeset is not None else [part]
            snapshot = (dict(self.records), dict(self.by_id), list(self.order), self.updates) \
                if part.changeset is not None else None
            answers, failed = [], None
            for item in items:
                cid = item.headers.get("content-id")
                try:
                    status, headers, body, n = self._run_part(item)
                    written += n
                    answers.append(odata.response_part(boundary, status, REASONS.get(status, ""), headers,
                                                       body or "", cid))
                except Answer as a:
                    self.rejected += 1
                    failed = odata.response_part(boundary, a.status, REASONS.get(a.status, ""),
                                                 {"Content-Type": "application/json; odata.metadata=minimal",
                                                  "OData-Version": "4.0"}, a.body(), cid)
                    break
            if failed is not None and snapshot is not None:  # a changeset is all or nothing
                self.records, self.by_id, self.order, self.updates = snapshot
                answers = []
            if failed is not None and not keep_going:
                text = failed + f"--{boundary}--\r\n"
                return web.Response(status=400, body=text.encode(),
                                    headers={"Content-Type": f"multipart/mixed; boundary={boundary}",
                                             "OData-Version": "4.0"})
            out += answers + ([failed] if failed is not None else [])
        text = "".join(out) + f"--{boundary}--\r\n"
        return web.Response(status=200, body=text.encode(),
                            headers={"Content-Type": f"multipart/mixed; boundary={boundary}", "OData-Version": "4.0"})

    # ------------------------------------------------------------------ app
    async def handle_index(self, request: web.Request) -> web.Response:
        return web.json_response({"stats": self.stats(), "records": self.received()[-200:]})

    async def handle_list(self, request: web.Request) -> web.Response:
        return web.json_response(self.received())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self.handle_discovery)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.handle_token)
        app.router.add_route("*", r"/api/data/v{version:\d\.\d}/{tail:.*}", self.handle_api)
        app.router.add_get("/", self.handle_index)
        app.router.add_get("/activities", self.handle_list)
        self.control_routes(app)
        return app


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m sinks.providers.dynamics.fake",
                                 description="A fake Entra ID + Dataverse environment (HTTPS, a CA made at start)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8087)
    ap.add_argument("--tenant", default="activity-sync-demo")
    ap.add_argument("--client-id", default="activity-sync-demo")
    ap.add_argument("--client-secret-env", default="ACTIVITY_SYNC_DYNAMICS_SECRET")
    ap.add_argument("--ca-file", default="var/fake-ca.pem", help="where to write the test CA clients must trust")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--limit-requests", type=int, default=6000, help="service protection: requests per window")
    ap.add_argument("--limit-window-s", type=float, default=300, help="service protection: the window in seconds")
    args = ap.parse_args()
    fake = FakeDataverse(args.tenant, args.client_id, os.environ.get(args.client_secret_env),
                         limit_requests=args.limit_requests, limit_window_s=args.limit_window_s)
    fake.control({"latency_ms": args.latency_ms})

    os.makedirs(os.path.dirname(os.path.abspath(args.ca_file)), exist_ok=True)
    fake.serve_forever(args.host, args.port, "fake Dataverse on {base_url}/ (Entra ID at {base_url}/"
                       + args.tenant + "; trust {ca_file})", tls=True, ca_file=args.ca_file)


if __name__ == "__main__":
    main()
