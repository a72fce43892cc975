"""netFORUM Enterprise sink: CustomerMessagingActivity rows through xWeb's InsertFacadeObject.

Follows the netFORUM xWeb documentation (the xWeb wiki's "Authenticate", "xWeb token",
"InsertFacadeObject", "GetCustomerByKey" and "xWeb Errors" pages) and :mod:`.fake`, which serves
the same contract and WSDL:

- SOAP 1.1 over HTTP POST to ``…/xweb/secure/netforumxml.asmx``, ``SOAPAction:
  "http://www.avectra.com/2005/<Method>"``; envelopes built and read with lxml (:mod:`.soap`).
- ``Authenticate(userName, password)``: the token comes in ``<AuthorizationToken><Token>`` of
  the answer's SOAP header. **Every answer rotates it**: the sink always sends the token of the
  latest answer, so its calls are strictly one after another (a lock), and a call whose answer
  was lost leaves the sink without a valid token: it authenticates again.
- ``InsertFacadeObject("CustomerMessagingActivity", <…Objects><…Object>row</…>…)``: up to
  ``batch_size`` rows a call; ``cma_cst_key`` is the member's customer key, ``cma_eml_key`` the
  member's primary e-mail key, read once per member with ``GetCustomerByKey`` (``email: lookup``,
  kept in an LRU) or mapped (``email: field``). The call is one transaction: a validation fault
  refuses the batch, which the runner halves until the bad row stands alone.
- Faults (HTTP 500, ``<soap:Fault>``, the exception named in ``detail``):
  ``InvalidTokenException`` → authenticate again and resend once (the runner's AuthExpired path);
  ``LockedCredentialsExceptionInfo`` and validation faults → permanent (dead-lettered, replayable
  once fixed); ``SystemExceptionInfo`` and ``soap:Server`` → retriable; HTTP 503/429 with
  Retry-After → the endpoint is held back. ``InvalidCredentialsExceptionInfo`` is retriable: the
  activities wait in the retry tiers while the operator fixes the password.
- There is no upsert: ``cma_activity_id`` carries the ActivityKey, but netFORUM does not refuse
  a second row with the same one. With ``duplicate_guard`` (default) one ``GetQuery`` a batch
  (``cma_activity_id IN (…)``) finds the rows already there, and those activities are not inserted
  again.
- At start the sink reads the server's WSDL and refuses, in one line, an endpoint whose settings
  need an operation the server lacks (the public xWeb 2010 WSDL has no ``GetCustomerByKey``: the
  e-mail key is then read with ``GetQuery`` on ``Customer``, which every version has).
- Any fault spends the token (the answer carries no new one): the next call authenticates first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Sequence

from sinks import mapping
from sinks.contract import (AuthExpired, BatchRefused, Delivery, FatalError, MappingError, RecordFailure,
                            RetriableError, SinkError)
from sinks.http import HttpResponse, HttpSink, Token, classify_http

from . import soap

log = logging.getLogger("activity_sync.sinks")
PERMANENT = {"LockedCredentialsExceptionInfo"}


def sql_text(value: str) -> str:
    """A string literal for xWeb's where clauses: quoted, a quote doubled."""
    return "'" + value.replace("'", "''") + "'"
VALIDATION = {"ValidationException", "SoapException", "ArgumentException"}


class NetforumSink(HttpSink):
    provider = "netforum"
    member_noun = "netFORUM customer"

    async def setup(self) -> None:
        self._password = self.ctx.settings.secret("password")
        self._call_lock = asyncio.Lock()
        self.emails: OrderedDict[str, str] = OrderedDict()
        self.operations = await self.read_wsdl()
        s = self.ctx.settings
        needed: dict[str, list[str]] = {"Authenticate": [], "InsertFacadeObject": []}  # op -> settings avoiding it
        if s.duplicate_guard:
            needed.setdefault("GetQuery", []).append("duplicate_guard: false")
        if s.email == "lookup" and self.operations is not None and "GetCustomerByKey" not in self.operations:
            needed.setdefault("GetQuery", []).append("email: field (map cma_eml_key or cma_eml_address)")
        missing = [op for op in needed if self.operations is not None and op not in self.operations]
        if missing:
            avoid = "; ".join(f"without {op}: set {' and '.join(needed[op])}" for op in missing if needed[op])
            raise LookupError(f"the xWeb server at {s.url} offers no {', '.join(missing)} (its WSDL)"
                              + (f"; {avoid}" if avoid else ""))

    async def read_wsdl(self) -> set[str] | None:
        """The operations the server's WSDL offers; None when it cannot be read now (checked no further:
        the calls themselves will say)."""
        try:
            resp = await self.request("GET", self.ctx.settings.url, params={"WSDL": ""}, classify=False)
            if resp.status != 200:
                return None
            return soap.wsdl_operations(resp.text.encode())
        except (SinkError, ValueError) as exc:
            log.warning("endpoint %s: the xWeb WSDL could not be read (%s): operations not checked",
                        self.ctx.endpoint, exc)
            return None


    # ------------------------------------------------------------------ calls
    def classify(self, resp: HttpResponse) -> SinkError | None:
        return None  # faults are read from the body in call()

    async def soap_call(self, method: str, params: dict, token: str | None) -> soap.Answer:
        body = soap.call(method, params, token)
        resp = await self.request("POST", self.ctx.settings.url, data=body, headers={
            "Content-Type": soap.CONTENT_TYPE, "SOAPAction": f'"{soap.XWEB}{method}"'})
        try:
            answer = soap.parse(resp.text.encode())
        except ValueError as exc:
            err = classify_http(resp.status, "", resp.headers.get("Retry-After"))
            raise err or RetriableError(f"xWeb answered HTTP {resp.status} that is not SOAP: {exc}") from None
        if answer.fault_code is None and resp.status >= 400:
            raise classify_http(resp.status, "", resp.headers.get("Retry-After"))
        if answer.fault_code is not None:
            raise self.fault_error(resp, answer)
        return answer

    @staticmethod
    def fault_error(resp: HttpResponse, a: soap.Answer) -> SinkError:
        text = f"xWeb fault {a.fault_code} {a.fault_detail or ''}: {a.fault_string or ''}"[:500]
        if resp.status in (429, 503):
            return classify_http(resp.status, text, resp.headers.get("Retry-After"))
        if a.fault_detail == "InvalidTokenException" or "token" in (a.fault_string or "").lower() and \
                "invalid" in (a.fault_string or "").lower():
            return AuthExpired(text, status=resp.status)
        if a.fault_detail in PERMANENT:
            return FatalError(text, status=resp.status)
        if a.fault_detail == "InvalidCredentialsExceptionInfo":
            return RetriableError(text, status=resp.status)
        if a.fault_detail in VALIDATION or (a.fault_code or "").endswith("Client"):
            return BatchRefused(text, status=resp.status)
        return RetriableError(text, status=resp.status)

    async def authenticate(self) -> Token:
        s = self.ctx.settings
        answer = await self.soap_call("Authenticate", {"userName": s.username, "password": self._password}, None)
        if not answer.token:
            raise RetriableError("xWeb Authenticate answered without a token")
        return Token(answer.token)

    async def call(self, method: str, params: dict) -> soap.Answer:
        """One authenticated call with the latest token; the answer's token replaces it."""
        token = await self.token()
        try:
            answer = await self.soap_call(method, params, token.value)
        except SinkError:
            self._tokens.forget()  # a fault spends the token (its answer has none), a lost answer too
            raise
        self._tokens.set(Token(answer.token) if answer.token else None)
        return answer

    # ------------------------------------------------------------------ write
    async def email_key(self, cst_key: str) -> str | None:
        if cst_key in self.emails:
            self.emails.move_to_end(cst_key)
            return self.emails[cst_key]
        if self.operations is not None and "GetCustomerByKey" not in self.operations:
            answer = await self.call("GetQuery", {"szObjectName": "Customer", "szColumnList": "cst_key, cst_eml_key",
                                                  "szWhereClause": f"cst_key = {sql_text(cst_key)}", "szOrderBy": ""})
        else:
            answer = await self.call("GetCustomerByKey", {"szCstKey": cst_key})
        key = next((el.text for el in answer.body.iter() if isinstance(el.tag, str)
                    and soap.local(el) == "cst_eml_key" and el.text), None) if answer.body is not None else None
        if key and self.ctx.settings.email_cache_size:
            self.emails[cst_key] = key
            while len(self.emails) > self.ctx.settings.email_cache_size:
                self.emails.popitem(last=False)
        return key

    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        if not batch:
            return []
        s = self.ctx.settings
        failures: list[RecordFailure] = []
        async with self._call_lock:
            records, index = [], []
            for i, d in enumerate(batch):
                if (error := self.no_customer(d)) is not None:
                    failures.append(RecordFailure(i, error))
                    continue
                row = {"cma_cst_key": d.customer_id, **mapping.apply(s.fields, s.constants, d)}
                if s.email == "lookup" and not (row.get("cma_eml_key") or row.get("cma_eml_address")):
                    row["cma_eml_key"] = await self.email_key(d.customer_id)
                    if not row["cma_eml_key"]:
                        failures.append(RecordFailure(i, MappingError(
                            f"customer {d.customer_id} has no primary e-mail address in netFORUM")))
                        continue
                if isinstance(row.get("cma_activity_date"), str):
                    row["cma_activity_date"] = row["cma_activity_date"].rstrip("Z")
                records.append(row)
                index.append(i)
            if records and s.duplicate_guard:
                there = await self.written_already([str(r.get("cma_activity_id") or "") for r in records])
                records = [r for r in records if str(r.get("cma_activity_id") or "") not in there]
            if records:
                await self.call("InsertFacadeObject", {"szObjectName": s.object_name,
                                                       "oNode": soap.rows(s.object_name, records)})
        return failures

    async def written_already(self, keys: list[str]) -> set[str]:
        """Which of these ActivityKeys have a CustomerMessagingActivity row already (one GetQuery)."""
        keys = [k for k in keys if k]
        if not keys:
            return set()
        s = self.ctx.settings
        answer = await self.call("GetQuery", {
            "szObjectName": s.object_name, "szColumnList": "cma_activity_id",
            "szWhereClause": f"cma_activity_id IN ({', '.join(sql_text(k) for k in keys)})", "szOrderBy": ""})
        if answer.body is None:
            return set()
        return {el.text for el in answer.body.iter() if isinstance(el.tag, str)
                and soap.local(el) == "cma_activity_id" and el.text}
