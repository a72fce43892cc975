"""Dynamics 365 / Dataverse sink: activities upserted by an alternate key holding the ActivityKey.

Follows Microsoft's Dataverse Web API documentation (learn.microsoft.com/power-apps/developer/data-platform/webapi/):

- "Use Upsert to Create or Update a record" (use-upsert-insert-update-record): ``PATCH
  {set}(key='value')`` creates or updates; an alternate key on a custom column holds the
  ActivityKey, so a redelivery updates the activity it created.
- "Use UpsertMultiple" (bulk-operations, standard tables): ``POST
  {set}/Microsoft.Dynamics.CRM.UpsertMultiple`` ``{"Targets": [{"@odata.type", "@odata.id":
  "{set}(key='v')", …}]}`` answers 204; all or nothing, no per-record results: a refused batch
  raises :class:`~sinks.contract.BatchRefused` and the runner splits it, so one bad record never
  blocks its neighbours (it alone is dead-lettered).
- "Execute batch operations using the Web API" (execute-batch-operations-using-web-api):
  ``POST $batch``, ``multipart/mixed``, at most 1000 requests, ``Prefer: odata.continue-on-error``
  gives a status per part: per-record results.
- "Associate with a single-valued navigation property on create":
  ``regardingobjectid_contact_task@odata.bind: /contacts(<guid>)`` (or an alternate key of contact).
- "Service protection API limits" (api-limits): 429 with ``Retry-After`` in seconds; 6,000
  requests per 5-minute sliding window per user, 52 concurrent. The runner's request budget
  (``rate_window``, 5,800 per 300 s by default) keeps this client under it; each part of a
  ``$batch`` counts (:meth:`DynamicsSink.request_cost`).
- "Compose HTTP requests and handle errors" (compose-http-requests-handle-errors): errors are
  ``{"error": {"code", "message"}}``; 413 splits the batch.
- Authentication: Microsoft Entra ID client credentials with MSAL for Python
  (``ConfidentialClientApplication.acquire_token_for_client``), scope ``{url}/.default``; MSAL
  caches the token and gets a new one before it expires; after a 401 the cached token is dropped
  and one new token is tried once.

Why ``upsert_multiple`` is the default: ``make bench`` measures both modes against the fake. With
the 6,000-requests-per-5-minutes budget a ``$batch`` of N parts costs N requests (20 records/s
sustained at most), an UpsertMultiple of N records costs one.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from typing import Sequence

from sinks import mapping
from sinks.contract import (BatchRefused, Delivery, FatalError, RecordFailure, RetriableError, SetupError,
                            SinkError)
from sinks.http import HttpResponse, HttpSink, Token, classify_http

from . import odata

log = logging.getLogger("activity_sync.sinks")


def error_text(resp: HttpResponse) -> str:
    body = resp.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        e = body["error"]
        return f"{e.get('code', '')}: {e.get('message', '')}"[:500]
    return resp.text[:300]


#: Dataverse's code for a request that names what the table does not have (a column, a navigation
#: property, an alternate key, an action, the table itself): the endpoint's mapping, not one record
UNKNOWN_NAME = "0x80060888"


def setup_error(status: int, text: str) -> SetupError | None:
    """A 403 (the application user's role lacks a privilege on the table) or a name the table does not
    have: no record of the endpoint can succeed until its settings or the role are fixed."""
    if status == 403 or (status in (400, 404, 405) and text.startswith(UNKNOWN_NAME)):
        return SetupError(f"HTTP {status}: {text}"[:500], status=status)
    return None


class DynamicsSink(HttpSink):
    provider = "dynamics"
    upsert_multiple_missing = False  # learnt from the first answer: the table has no UpsertMultiple
    member_noun = "contact"
    renew_before_s = 300.0  # as MSAL: a token within 5 minutes of its expiry is renewed

    async def setup(self) -> None:
        import msal  # noqa: F401  (the dynamics extra: fail at start, not at the first token)

        self._secret = self.ctx.settings.secret("client_secret")
        self._msal = None


    # ------------------------------------------------------------------ auth (MSAL, in a thread: it is blocking)
    def _app(self):
        if self._msal is None:
            import msal
            import requests

            s = self.ctx.settings
            http = requests.Session()
            if s.ca_file:  # explicit per request, or REQUESTS_CA_BUNDLE in the environment would win
                http.request = functools.partial(http.request, verify=s.ca_file)
            self._msal = msal.ConfidentialClientApplication(
                s.client_id, client_credential=self._secret, authority=f"{s.authority_host}/{s.tenant_id}",
                http_client=http, instance_discovery=False, timeout=s.timeout_s)
        return self._msal

    def _acquire(self) -> dict:
        s = self.ctx.settings
        return self._app().acquire_token_for_client(scopes=[s.scope or f"{s.url}/.default"])

    async def authenticate(self) -> Token:
        try:
            result = await asyncio.to_thread(self._acquire)
        except Exception as exc:  # noqa: BLE001 - discovery or network failure inside MSAL
            raise RetriableError(f"token request failed: {type(exc).__name__}: {str(exc)[:300]}") from None
        if "access_token" not in result:
            desc = str(result.get("error_description") or "").split("\r\n")[0].split("\n")[0]
            raise RetriableError(f"token request refused: {result.get('error')}: {desc[:300]}")
        return Token(result["access_token"], time.monotonic() + float(result.get("expires_in") or 3600))

    async def reauthenticate(self) -> None:
        app = self._msal
        if app is not None:  # MSAL would hand the same (refused) token back from its cache
            cache = app.token_cache
            for at in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(at)
        await super().reauthenticate()

    async def headers(self) -> dict[str, str]:
        token = await self.token()
        return {"Authorization": f"Bearer {token.value}", "OData-Version": "4.0", "OData-MaxVersion": "4.0",
                "Accept": "application/json"}

    # ------------------------------------------------------------------ answers
    def classify(self, resp: HttpResponse) -> SinkError | None:
        if 200 <= resp.status < 300:
            return None
        return setup_error(resp.status, error_text(resp)) or \
            classify_http(resp.status, error_text(resp), resp.headers.get("Retry-After"))

    def request_cost(self, n: int) -> int:
        return n if self.ctx.settings.write_mode == "batch" else 1

    # ------------------------------------------------------------------ mapping
    def key_segment(self, d: Delivery) -> str:
        s = self.ctx.settings
        return f"{s.entity_set}({s.alternate_key}={odata.quote_key(d.activity_key)})"

    def record(self, d: Delivery) -> dict:
        s = self.ctx.settings
        rec = mapping.apply(s.fields, s.constants, d)
        if s.contact_bind:
            guid_form = "({customer_id})" in s.contact_bind  # else an alternate key: a quoted string literal
            cid = d.customer_id if guid_form else d.customer_id.replace("'", "''")
            rec[s.bind_property] = s.contact_bind.replace("{customer_id}", cid)
        return rec

    # ------------------------------------------------------------------ write
    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        if not batch:
            return []
        s = self.ctx.settings
        failures: list[RecordFailure] = []
        todo: list[tuple[int, Delivery]] = []
        for i, d in enumerate(batch):
            if s.contact_bind and (error := self.no_customer(d)) is not None:
                failures.append(RecordFailure(i, error))
            else:
                todo.append((i, d))
        if not todo:
            return failures
        if s.write_mode == "batch" or self.upsert_multiple_missing:
            return failures + await self._batch(todo)
        try:
            await self._upsert_multiple([d for _, d in todo])
        except SetupError as exc:
            if "UpsertMultiple" not in str(exc):
                raise
            # the org does not offer UpsertMultiple on this table: $batch from now on, for this endpoint
            self.upsert_multiple_missing = True
            log.warning("endpoint %s: the table %s has no UpsertMultiple (%s): writing with $batch instead",
                        self.ctx.endpoint, s.entity_set, str(exc)[:200])
            return failures + await self._batch(todo)
        return failures

    async def _upsert_multiple(self, ds: list[Delivery]) -> None:
        s = self.ctx.settings
        targets = []
        for d in ds:
            t = {"@odata.type": f"Microsoft.Dynamics.CRM.{s.entity}", "@odata.id": self.key_segment(d),
                 s.alternate_key: d.activity_key}
            t.update(self.record(d))
            targets.append(t)
        try:
            await self.request("POST", f"{s.api}/{s.entity_set}/Microsoft.Dynamics.CRM.UpsertMultiple",
                               json={"Targets": targets}, headers=await self.headers())
        except FatalError as exc:
            if type(exc) is FatalError:  # all or nothing: which record spoilt it is not said
                raise BatchRefused(str(exc), status=exc.status) from None
            raise

    async def _batch(self, todo: list[tuple[int, Delivery]]) -> list[RecordFailure]:
        s = self.ctx.settings
        boundary = f"batch_{uuid.uuid4()}"
        body = "".join(odata.request_part(boundary, "PATCH", f"{s.api}/{self.key_segment(d)}",
                                          json.dumps(self.record(d), ensure_ascii=False))
                       for _, d in todo) + f"--{boundary}--\r\n"
        headers = {**await self.headers(), "Content-Type": f"multipart/mixed; boundary={boundary}",
                   "Prefer": "odata.continue-on-error"}
        resp = await self.request("POST", f"{s.api}/$batch", data=body.encode(), headers=headers)
        inner = odata.boundary_of(resp.headers.get("Content-Type"))
        try:
            parts = odata.parse_multipart(resp.text, inner or "")
        except ValueError as exc:
            raise RetriableError(f"unreadable $batch answer: {exc}") from None
        if len(parts) != len(todo):
            raise RetriableError(f"$batch answered {len(parts)} parts for {len(todo)} requests")
        failures = []
        for (pos, _), part in zip(todo, parts):
            status = odata.status_of(part)
            if 200 <= status < 300:
                continue
            text = error_text(HttpResponse(status, part.http_headers, part.body))
            if (setup := setup_error(status, text)) is not None:
                raise setup  # a column or privilege every part lacks: the endpoint's, not this record's
            err = classify_http(status, text, part.http_headers.get("retry-after"))
            if type(err).__name__ == "PayloadTooLarge":
                err = FatalError(str(err), status=status)  # one record too large on its own
            failures.append(RecordFailure(pos, err))
        return failures
