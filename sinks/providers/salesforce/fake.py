"""A fake Salesforce org: OAuth token endpoint and sObject Collections upsert, for tests and the demo.

It follows Salesforce's public documentation, not what our sink happens to send:

- OAuth 2.0 Client Credentials Flow (Salesforce Help, remoteaccess_oauth_client_credentials_flow.htm):
  ``POST /services/oauth2/token`` ``grant_type=client_credentials``, the consumer key and secret
  in the form body or as HTTP Basic; OAuth 2.0 JWT Bearer Flow (remoteaccess_oauth_jwt_flow.htm):
  ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>`` with iss (the
  consumer key), sub (the user), aud (the login URL) and exp (at most 3 minutes ahead), verified
  with the connected app's certificate. The answer: ``{access_token, signature, scope,
  instance_url, id, token_type: "Bearer", issued_at}``, no ``expires_in``; refusals are 400
  ``{"error", "error_description"}``.
- Upsert Multiple Records Using sObject Collections (REST API Developer Guide,
  resources_composite_sobjects_collections_upsert.htm): ``PATCH
  /services/data/vXX.X/composite/sobjects/{SObject}/{ExternalIdField}`` (API 46.0 and later),
  ``{"allOrNone": bool, "records": [...]}``, at most 200 records, every record with
  ``attributes.type`` of that object and no ``Id``; 200 with one result per record in request
  order, ``{"id", "success": true, "errors": [], "created": bool}``, a failed record
  ``{"success": false, "errors": [{"statusCode", "message", "fields"}]}`` (no ``id``, no
  ``created``). With ``allOrNone: true`` one failure rolls back all, the others answering
  ``ALL_OR_NONE_OPERATION_ROLLED_BACK``.
- Status Codes and Error Responses (errorcodes.htm): request-level errors are arrays of
  ``{"message", "errorCode"}``: 401 ``INVALID_SESSION_ID``, 403 ``REQUEST_LIMIT_EXCEEDED`` (over
  the daily allocation: the fake's ``api_limit``; also what the ``throttle`` fault answers, as the
  concurrent-long-request cap does: no 429, no Retry-After), 404 ``NOT_FOUND``, 400
  ``INVALID_FIELD`` / ``JSON_PARSER_ERROR`` / ``EXCEEDED_ID_LIMIT``, 503 ``SERVER_UNAVAILABLE``.
- Limit Info Header (headers_api_usage.htm): ``Sforce-Limit-Info: api-usage=N/M`` on every answer.

- Relationship fields by external ID (REST API Developer Guide, "Insert or Update (Upsert) a
  Record Using an External ID", and dome_upsert.htm: "…a related record by its external ID"):
  instead of a lookup's Id, the relationship name with the related object's external ID, e.g.
  ``"Who": {"attributes": {"type": "Contact"}, "Member_Number__c": "M-1"}`` (a polymorphic
  lookup needs ``attributes.type``) or ``"Contact__r": {"Member_Number__c": "M-1"}``. A value no
  record of that object holds is refused per record: ``INVALID_FIELD`` "Foreign key external ID:
  M-1 not found for field Member_Number__c in entity Contact".

Per-record errors it gives: ``REQUIRED_FIELD_MISSING``, ``STRING_TOO_LONG``, ``MALFORMED_ID``
(a lookup such as ``WhoId`` given something that is not a 15- or 18-character Salesforce Id:
"Contact ID: id value of incorrect type: aquill"), ``INVALID_CROSS_REFERENCE_KEY`` (a well-formed
``WhoId`` that is not a known contact: the ``reject_customers`` fault, or any id outside
``contacts`` when that set is given), ``INVALID_FIELD`` (an external ID no contact holds),
``DUPLICATE_VALUE`` (one external ID twice in a call: both records), ``UNABLE_TO_LOCK_ROW`` (the
``lock_rows`` control: the next N records), ``INVALID_TYPE_ON_FIELD_IN_RECORD`` (a bad date).

Objects it knows (``objects``): ``Task`` (standard fields, plus the custom ``Activity_Key__c``
External ID, ``Writeback_Code_2__c`` and ``Activity_Link__c`` an admin creates for activity-sync)
and ``Community_Activity__c`` (the Nimble AMS preset's object).

    python -m sinks.providers.salesforce.fake [--port 8086] [--client-secret-env NAME]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import secrets
import time
from collections import Counter

from aiohttp import web

from core.fakes import FaultyFake

DATE, DATETIME, TEXT, REF, PICKLIST = "date", "datetime", "text", "reference", "picklist"

TASK = {
    "WhoId": (REF, 18, False), "WhatId": (REF, 18, False), "Subject": (TEXT, 255, False),
    "ActivityDate": (DATE, None, False), "Status": (PICKLIST, 255, False), "Priority": (PICKLIST, 255, False),
    "Description": (TEXT, 32000, False), "Type": (PICKLIST, 255, False), "TaskSubtype": (PICKLIST, 255, False),
    "OwnerId": (REF, 18, False),
    "Activity_Key__c": (TEXT, 255, False), "Writeback_Code_2__c": (TEXT, 255, False),
    "Activity_Link__c": (TEXT, 1024, False),
}
COMMUNITY_ACTIVITY = {
    "WhoId__c": (REF, 18, True), "ActivityDate__c": (DATETIME, None, True), "Type__c": (TEXT, 255, False),
    "Description__c": (TEXT, 131072, False), "Activity_Key__c": (TEXT, 255, False), "Name": (TEXT, 80, False),
}
OBJECTS = {"Task": (TASK, "00T", {"Activity_Key__c"}),
           "Community_Activity__c": (COMMUNITY_ACTIVITY, "a0X", {"Activity_Key__c"})}
#: a Salesforce record Id: 15 characters, or 18 with the case-safe suffix
SF_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
#: relationship names the fake resolves, per object: relationship -> (lookup field, polymorphic)
RELATIONSHIPS = {"Task": {"Who": ("WhoId", True), "What": ("WhatId", True)},
                 "Community_Activity__c": {"WhoId__r": ("WhoId__c", False)}}
TASK_SUBTYPES = {"Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"}


def _fail(code: str, message: str, fields: list) -> dict:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": fields}]}


def _err(status: int, code: str, message: str, headers=None) -> web.Response:
    return web.json_response([{"message": message, "errorCode": code}], status=status, headers=headers)


class FakeSalesforce(FaultyFake):
    path = "/services/data"

    def __init__(self, client_id: str = "test-consumer-key", client_secret: str | None = None,
                 public_key_pem: bytes | None = None, username: str | None = None, api_limit: int = 100_000,
                 contacts: set[str] | None = None, objects: dict | None = None,
                 contact_keys: dict[str, list[str]] | None = None) -> None:
        """``contact_keys``: Contacts by external ID, ``{field: [values]}`` (each gets an Id)."""
        self.client_id, self.client_secret = client_id, client_secret
        self.contact_keys: dict[tuple[str, str], str] = {}
        for field, values in (contact_keys or {}).items():
            for v in values:
                self.add_contact(field, v)
        self.public_key_pem, self.username = public_key_pem, username
        self.api_limit = api_limit
        self.contacts = contacts
        self.objects = objects or OBJECTS
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.records: dict[tuple[str, str], dict] = {}   # (sobject, external id) -> record
        self.order: list[tuple[str, str]] = []
        self.api_used = 0
        self.lock_rows = 0
        self.bodies: list[dict] = []
        self.updates = 0
        self.rejected = 0

    def control(self, spec: dict) -> None:
        super().control(spec)
        if "lock_rows" in spec:
            self.lock_rows = int(spec["lock_rows"])
        if "api_used" in spec:
            self.api_used = int(spec["api_used"])
        if "api_limit" in spec:
            self.api_limit = int(spec["api_limit"])

    def add_contact(self, field: str, value: str) -> str:
        """A Contact whose external ID ``field`` holds ``value``; answers its Id."""
        rid = self.contact_keys.get((field, value))
        if rid is None:
            rid = "003" + secrets.token_hex(6)[:12].upper() + "AAA"
            self.contact_keys[(field, value)] = rid
        return rid

    def stored_keys(self, sobject: str | None = None) -> list[str]:
        return [k for (o, k) in self.order if sobject is None or o == sobject]

    def received(self) -> list[dict]:
        return [self.records[k] for k in self.order]

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.records), "duplicates": self.updates,
                "updates": self.updates, "rejected": self.rejected, "api_usage": f"{self.api_used}/{self.api_limit}"}

    # ------------------------------------------------------------------ how faults look here
    def fault_response(self, status: int) -> web.Response:
        return _err(status, "SERVER_UNAVAILABLE" if status >= 500 else "UNKNOWN_EXCEPTION",
                    "The server is temporarily unable to service your request.", self._limit_header())

    def throttle_response(self, retry_after: float) -> web.Response:
        # Salesforce has no 429: over the concurrent-long-request cap it answers this, with no Retry-After
        return _err(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.", self._limit_header())

    def _limit_header(self) -> dict:
        return {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.api_limit}"}

    # ------------------------------------------------------------------ OAuth
    async def handle_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = form.get("grant_type")
        if grant == "client_credentials":
            cid, secret = form.get("client_id"), form.get("client_secret")
            auth = request.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
                except ValueError:
                    cid = secret = None
            if cid != self.client_id or self.client_secret is None or not secrets.compare_digest(
                    str(secret or ""), self.client_secret):
                return web.json_response({"error": "invalid_client", "error_description": "invalid client credentials"},
                                         status=400)
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problem = self._check_assertion(form.get("assertion"))
            if problem:
                return web.json_response({"error": "invalid_grant", "error_description": problem}, status=400)
        else:
            return web.json_response({"error": "unsupported_grant_type", "error_description": "grant type not supported"},
                                     status=400)
        token = "00Dfake!" + self.issue_token()
        org, user = "00D000000000001AAA", "005000000000001AAA"
        return web.json_response({
            "access_token": token, "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
            "scope": "api", "instance_url": self.base_url, "id": f"{self.base_url}/id/{org}/{user}",
            "token_type": "Bearer", "issued_at": str(int(time.time() * 1000))})

    def _check_assertion(self, assertion) -> str | None:
        import jwt

        if not assertion or self.public_key_pem is None:
            return "invalid assertion"
        try:
            claims = jwt.decode(assertion, self.public_key_pem, algorithms=["RS256"],
                                audience=["https://login.salesforce.com", "https://test.salesforce.com", self.base_url],
                                options={"require": ["iss", "sub", "aud", "exp"]})
        except jwt.ExpiredSignatureError:
            return "expired authorization code"
        except jwt.PyJWTError:
            return "invalid assertion"
        if claims["iss"] != self.client_id:
            return "invalid client_id"
        if self.username is not None and claims["sub"] != self.username:
            return "user hasn't approved this consumer"
        if claims["exp"] > time.time() + 300:
            return "invalid assertion: exp too far in the future"
        return None

    # ------------------------------------------------------------------ REST
    async def handle_upsert(self, request: web.Request) -> web.Response:
        response, n = await self._upsert(request)
        self.log(response.status, n)
        return response

    async def _upsert(self, request: web.Request):
        auth = request.headers.get("Authorization", "")
        if not auth.startswith(("Bearer ", "OAuth ")) or not self.token_valid(auth.split(" ", 1)[1].removeprefix("00Dfake!")):
            return _err(401, "INVALID_SESSION_ID", "Session expired or invalid"), 0
        version = request.match_info["version"]
        if float(version) < 46.0:
            return _err(404, "NOT_FOUND", "The requested resource does not exist"), 0
        fault = await self.faults()
        if fault is not None:
            self.api_used += 1
            return fault, 0
        if self.api_used >= self.api_limit:
            return _err(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", self._limit_header()), 0
        self.api_used += 1
        hdr = self._limit_header()
        sobject, ext_field = request.match_info["sobject"], request.match_info["field"]
        if sobject not in self.objects:
            return _err(404, "NOT_FOUND", "The requested resource does not exist"), 0
        schema, prefix, ext_fields = self.objects[sobject]
        if ext_field not in ext_fields:
            return _err(400, "INVALID_FIELD", f"Field name provided, {ext_field} is not an External ID or indexed "
                                               f"field for {sobject}", hdr), 0
        try:
            doc = json.loads(await request.read())
        except ValueError:
            return _err(400, "JSON_PARSER_ERROR", "Unexpected character: was expecting a JSON value", hdr), 0
        records = doc.get("records") if isinstance(doc, dict) else None
        if not isinstance(records, list):
            return _err(400, "JSON_PARSER_ERROR", "records must be an array", hdr), 0
        if len(records) > 200:
            return _err(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than 200 records into "
                                                  "this call", hdr), 0
        self.bodies.append(doc)
        records = [dict(r) if isinstance(r, dict) else r for r in records]  # resolved below, the body kept as sent
        for r in records:
            if not isinstance(r, dict) or (r.get("attributes") or {}).get("type") != sobject:
                return _err(400, "INVALID_TYPE", "all records must have attributes.type "
                                                 f"{sobject} in this call", hdr), 0
            for f in r:
                if f in ("Id", "id"):
                    return _err(400, "INVALID_FIELD", "Id isn't allowed in an upsert by external ID", hdr), 0
                if f in RELATIONSHIPS.get(sobject, {}) and isinstance(r[f], dict):
                    continue  # resolved per record (_resolve)
                if f != "attributes" and f not in schema:
                    return _err(400, "INVALID_FIELD", f"No such column '{f}' on sobject of type {sobject}", hdr), 0
        seen = Counter(r.get(ext_field) for r in records if r.get(ext_field))
        results = [{"success": False, "errors": [{"statusCode": "DUPLICATE_VALUE", "message": "Duplicate external id "
                                                  f"specified: {r[ext_field]}", "fields": [ext_field]}]}
                   if seen.get(r.get(ext_field), 0) > 1 else self._resolve(sobject, r)
                   or self._check(sobject, schema, ext_field, r) for r in records]
        if doc.get("allOrNone") and any(r is not None for r in results):
            out = [r or {"success": False, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                                       "message": "Record rolled back because not all records "
                                                                  "were valid and the request was using AllOrNone "
                                                                  "header", "fields": []}]} for r in results]
            return web.json_response(out, headers=hdr), len(records)
        out = []
        for r, err in zip(records, results):
            if err is not None:
                self.rejected += 1
                out.append(err)
                continue
            key = (sobject, r[ext_field])
            created = key not in self.records
            if created:
                rid = prefix + secrets.token_hex(8)[:12].upper() + "AAA"
                self.records[key] = {"Id": rid}
                self.order.append(key)
            else:
                self.updates += 1
            stored = self.records[key]
            stored.update({k: v for k, v in r.items() if k != "attributes"})
            out.append({"id": stored["Id"], "success": True, "errors": [], "created": created})
        return web.json_response(out, headers=hdr), len(records)

    def _resolve(self, sobject: str, r: dict) -> dict | None:
        """Relationship fields by external ID to their lookup's Id (in place); an error result when a
        reference cannot be resolved."""
        for rel, (lookup, polymorphic) in RELATIONSHIPS.get(sobject, {}).items():
            ref = r.get(rel)
            if not isinstance(ref, dict):
                continue
            keys = {k: v for k, v in ref.items() if k != "attributes"}
            target = (ref.get("attributes") or {}).get("type")
            if polymorphic and not target:
                return _fail("INVALID_FIELD", f"{rel}: a polymorphic relationship needs attributes.type", [rel])
            if len(keys) != 1:
                return _fail("INVALID_FIELD", f"{rel}: exactly one external ID field, got {sorted(keys)}", [rel])
            (field, value), = keys.items()
            rid = self.contact_keys.get((field, str(value))) if (target or "Contact") == "Contact" else None
            if rid is None or str(value) in self.reject_customers:
                return _fail("INVALID_FIELD", f"Foreign key external ID: {value} not found for field {field} in "
                                              f"entity {target or 'Contact'}", [])
            del r[rel]
            r[lookup] = rid
        return None

    def _check(self, sobject: str, schema: dict, ext_field: str, r: dict) -> dict | None:
        def fail(code, message, fields):
            return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": fields}]}

        if not r.get(ext_field):
            return fail("MISSING_ARGUMENT", f"{ext_field} not specified", [])
        if self.lock_rows > 0:
            self.lock_rows -= 1
            return fail("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", [])
        missing = [f for f, (_, _, req) in schema.items() if req and r.get(f) in (None, "")]
        if missing:
            return fail("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        for f, v in r.items():
            if f == "attributes" or v is None:
                continue
            kind, size, _ = schema[f]
            if kind == DATE:
                try:
                    dt.date.fromisoformat(str(v))
                except ValueError:
                    return fail("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f}: value not of required type: {v}", [f])
            elif kind == DATETIME:
                try:
                    dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
                except ValueError:
                    return fail("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f}: value not of required type: {v}", [f])
            elif size is not None and len(str(v)) > size:
                return fail("STRING_TOO_LONG", f"{f}: data value too large: {str(v)[:40]} (max length={size})", [f])
            if f == "TaskSubtype" and v not in TASK_SUBTYPES:
                return fail("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", f"Task Subtype: bad value for restricted "
                                                                       f"picklist field: {v}", [f])
            if kind == REF and not SF_ID.match(str(v)):
                label = "Contact ID" if f.lower().startswith("who") else f"{f}"
                return fail("MALFORMED_ID", f"{label}: id value of incorrect type: {v}", [f])
            if kind == REF and f.lower().startswith("who"):
                if v in self.reject_customers or (self.contacts is not None and v not in self.contacts):
                    return fail("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [f])
        return None

    async def handle_limits(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not self.token_valid(auth.split(" ", 1)[-1].removeprefix("00Dfake!")):
            return _err(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return web.json_response({"DailyApiRequests": {"Max": self.api_limit, "Remaining": self.api_limit - self.api_used}},
                                 headers=self._limit_header())

    async def handle_list(self, request: web.Request) -> web.Response:
        return web.json_response(self.received())

    async def handle_index(self, request: web.Request) -> web.Response:
        return web.json_response({"stats": self.stats(), "records": self.received()[-200:]})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/services/oauth2/token", self.handle_token)
        app.router.add_patch(r"/services/data/v{version:\d+\.\d}/composite/sobjects/{sobject}/{field}",
                             self.handle_upsert)
        app.router.add_get(r"/services/data/v{version:\d+\.\d}/limits", self.handle_limits)
        app.router.add_get("/", self.handle_index)
        app.router.add_get("/activities", self.handle_list)
        self.control_routes(app)
        return app


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m sinks.providers.salesforce.fake", description="A fake Salesforce org")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8086)
    ap.add_argument("--client-id", default="activity-sync-demo")
    ap.add_argument("--client-secret-env", default="ACTIVITY_SYNC_SALESFORCE_SECRET")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--contacts", action="append", default=[], metavar="FIELD=V1,V2",
                    help="Contacts the org holds, by an external ID field (e.g. Member_Number__c=aquill,clindqvist)")
    args = ap.parse_args()
    keys: dict[str, list[str]] = {}
    for spec in args.contacts:
        field, _, values = spec.partition("=")
        keys.setdefault(field.strip(), []).extend(v.strip() for v in values.split(",") if v.strip())
    fake = FakeSalesforce(args.client_id, os.environ.get(args.client_secret_env), contact_keys=keys)
    fake.control({"latency_ms": args.latency_ms})

    fake.serve_forever(args.host, args.port, "fake Salesforce on {base_url}/ (token: /services/oauth2/token)")


if __name__ == "__main__":
    main()
