"""Salesforce sink: idempotent upsert of activities through sObject Collections.

Follows the Salesforce REST API Developer Guide:

- "Upsert Multiple Records Using sObject Collections"
  (https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_sobjects_collections_upsert.htm):
  ``PATCH /services/data/vXX.X/composite/sobjects/{SObject}/{ExternalIdField}`` with
  ``{"allOrNone": false, "records": [{"attributes": {"type": ...}, ...}]}``, at most 200 records
  of one type, no ``Id`` in the body; one result per record in request order,
  ``{"id", "success": true, "errors": [], "created": bool}`` or ``{"success": false,
  "errors": [{"statusCode", "message", "fields"}]}``. The external ID field holds the ActivityKey,
  so a redelivery updates the record it created instead of adding another.
- "Status Codes and Error Responses" (…/api_rest/errorcodes.htm): request-level errors are a JSON
  array of ``{"message", "errorCode"}``; 401 ``INVALID_SESSION_ID`` (the session expired: get a
  new token, retry once); 403 ``REQUEST_LIMIT_EXCEEDED`` when the org is over its API allocation
  or its cap on concurrent long requests (no 429, no Retry-After: the endpoint is held back
  ``limit_backoff_s``); ``UNABLE_TO_LOCK_ROW`` is transient.
- "Limit Info Header" (…/api_rest/headers_api_usage.htm): ``Sforce-Limit-Info: api-usage=N/M``
  on every answer, exported as ``activity_sync_sink_api_usage{endpoint,kind}``. From
  ``slow_down_at`` of the allocation the sink spreads what is left over the rest of the day
  (the runner's gate waits :meth:`SalesforceSink.pacing_s` between requests).
- OAuth 2.0 Client Credentials Flow and OAuth 2.0 JWT Bearer Flow for Server-to-Server
  Integration (Salesforce Help, remoteaccess_oauth_client_credentials_flow.htm and
  remoteaccess_oauth_jwt_flow.htm): ``POST {My Domain}/services/oauth2/token``; the answer has
  ``access_token`` and ``instance_url`` but no ``expires_in``: the token is kept until a 401.
  The JWT (iss = consumer key, sub = username, aud = login URL, exp within 3 minutes) is signed
  RS256 with PyJWT.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Sequence

from sinks import mapping
from sinks.contract import (Delivery, FatalError, RecordFailure, RetriableError, SetupError, SinkError,
                            Throttled)
from sinks.http import HttpResponse, HttpSink, Token, classify_http
from sinks.metrics import API_USAGE

from .settings import relationship_of

#: per-record status codes that can succeed if tried again later
#: request-level codes that say the endpoint's setup is wrong (a field that does not exist or the user
#: cannot see, an object or API version the org does not have, no access): no record can succeed
SETUP_CODES = {"INVALID_FIELD", "NOT_FOUND", "INVALID_TYPE", "INSUFFICIENT_ACCESS", "INSUFFICIENT_ACCESS_OR_READONLY",
               "INVALID_FIELD_FOR_INSERT_UPDATE", "API_DISABLED_FOR_ORG", "FUNCTIONALITY_NOT_ENABLED"}
TRANSIENT_RECORD_CODES = {"UNABLE_TO_LOCK_ROW", "REQUEST_RUNNING_TOO_LONG", "SERVER_UNAVAILABLE"}
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
DAY_S = 86_400.0


def parse_limit_info(header: str | None) -> tuple[int, int] | None:
    """``Sforce-Limit-Info: api-usage=18/15000`` → (18, 15000)."""
    m = _USAGE.search(header or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def error_codes(resp: HttpResponse) -> tuple[str, str]:
    """A request-level error body's first ``errorCode`` and ``message`` (a JSON array)."""
    body = resp.json()
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return str(body[0].get("errorCode") or ""), str(body[0].get("message") or "")
    if isinstance(body, dict):  # the OAuth endpoints answer {"error", "error_description"}
        return str(body.get("error") or ""), str(body.get("error_description") or "")
    return "", resp.text[:300]


class SalesforceSink(HttpSink):
    provider = "salesforce"

    async def setup(self) -> None:
        s = self.ctx.settings
        self.usage: tuple[int, int] | None = None
        if s.auth == "client_credentials":
            self._secret = s.secret("client_secret")
        else:
            self._private_key = s.secret("private_key")
            import jwt  # noqa: F401  (PyJWT, the salesforce extra: fail at start, not at the first token)


    # ------------------------------------------------------------------ auth
    async def authenticate(self) -> Token:
        s = self.ctx.settings
        url = f"{s.login_url}/services/oauth2/token"
        headers = {"Accept": "application/json"}
        if s.auth == "client_credentials":
            form = {"grant_type": "client_credentials"}
            if s.client_auth == "basic":
                pair = f"{s.client_id}:{self._secret}".encode()
                headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
            else:
                form.update(client_id=s.client_id, client_secret=self._secret)
        else:
            import jwt

            claims = {"iss": s.client_id, "sub": s.username, "aud": s.jwt_audience, "exp": int(time.time()) + 180}
            form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": jwt.encode(claims, self._private_key, algorithm="RS256")}
        resp = await self.request("POST", url, data=form, headers=headers, classify=False)
        body = resp.json(default={})
        if resp.status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            code, message = error_codes(resp)
            # a refused credential is the operator's to fix: the records wait in the retry tiers meanwhile
            raise RetriableError(f"token request refused (HTTP {resp.status}): {code}: {message}"[:400],
                                 status=resp.status)
        return Token(body["access_token"], None, {"instance_url": (body.get("instance_url") or s.login_url).rstrip("/")})

    # ------------------------------------------------------------------ answers
    def classify(self, resp: HttpResponse) -> SinkError | None:
        self._note_usage(resp)
        if 200 <= resp.status < 300:
            return None
        code, message = error_codes(resp)
        text = f"HTTP {resp.status} {code}: {message}"[:500]
        if resp.status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
            return Throttled(text, status=403, retry_after=self.ctx.settings.limit_backoff_s)
        if code in SETUP_CODES:  # the whole request refused for what the endpoint names: not any record's fault
            return SetupError(text, status=resp.status)
        if code in TRANSIENT_RECORD_CODES:
            return RetriableError(text, status=resp.status)
        if resp.status == 401:
            return classify_http(401, f"{code}: {message}")
        return classify_http(resp.status, f"{code}: {message}", resp.headers.get("Retry-After"))

    def _note_usage(self, resp: HttpResponse) -> None:
        usage = parse_limit_info(resp.headers.get("Sforce-Limit-Info"))
        if usage:
            self.usage = usage
            API_USAGE.labels(self.ctx.endpoint, "used").set(usage[0])
            API_USAGE.labels(self.ctx.endpoint, "limit").set(usage[1])

    def pacing_s(self) -> float:
        """From ``slow_down_at`` of the daily allocation, what is left is spread over a day
        (the allocation is a rolling 24 hours), at most ``limit_backoff_s`` between requests."""
        if not self.usage or not self.usage[1]:
            return 0.0
        used, limit = self.usage
        if used < self.ctx.settings.slow_down_at * limit:
            return 0.0
        return min(self.ctx.settings.limit_backoff_s, DAY_S / max(1, limit - used))

    # ------------------------------------------------------------------ write
    def record(self, d: Delivery) -> dict:
        s = self.ctx.settings
        rec = {"attributes": {"type": s.sobject}, s.external_id_field: d.activity_key,
               **mapping.within_limits(mapping.apply(s.fields, s.constants, d), s.limits)}
        if s.contact_match == "external_id":  # the Contact by its external ID, resolved by Salesforce
            lookup = s.contact_lookup
            value = rec.pop(lookup, None)
            if value is not None:
                rec[relationship_of(lookup)] = {"attributes": {"type": s.contact_object},
                                                s.contact_external_id_field: value}
        return rec

    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        if not batch:
            return []
        s = self.ctx.settings
        failures: list[RecordFailure] = []
        records, index = [], []
        for i, d in enumerate(batch):
            if "customer_id" in s.fields.values() and (error := self.no_customer(d)) is not None:
                failures.append(RecordFailure(i, error))
                continue
            records.append(self.record(d))
            index.append(i)
        if not records:
            return failures
        token = await self.token()
        url = (f"{token.extra['instance_url']}/services/data/v{s.api_version}/composite/sobjects/"
               f"{s.sobject}/{s.external_id_field}")
        resp = await self.request("PATCH", url, json={"allOrNone": False, "records": records},
                                  headers={"Authorization": f"Bearer {token.value}", "Accept": "application/json"})
        results = resp.json()
        if not isinstance(results, list) or len(results) != len(records):
            raise RetriableError(f"Salesforce answered {len(results) if isinstance(results, list) else 'no'} "
                                 f"results for {len(records)} records")
        for pos, result in zip(index, results):
            if isinstance(result, dict) and result.get("success"):
                continue
            errors = (result or {}).get("errors") or [{}]
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = str(first.get("statusCode") or "UNKNOWN")
            fields = first.get("fields") or []
            text = f"{code}: {first.get('message') or ''}" + (f" (fields: {', '.join(fields)})" if fields else "")
            err = RetriableError(text) if code in TRANSIENT_RECORD_CODES else FatalError(text, status=400)
            failures.append(RecordFailure(pos, err))
        return failures
