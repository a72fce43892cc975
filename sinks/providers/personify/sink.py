"""Personify360 sink: the activity entity created through Personify Data Services.

Follows Personify's "Personify Data Services (PDS)" developer documentation (the WCF Data
Services endpoint ``PersonifyData.svc``, its ``Create`` and ``Save`` service operations, HTTP
Basic authentication; OData V2 JSON, ``{"d": …}``):

- ``GET {svc}/Create?EntityName='CusActivity'`` answers an empty entity (the template with the
  entity's defaults); the sink fills ``MasterCustomerId``/``SubCustomerId`` (from the customer ID,
  ``MASTER`` or ``MASTER-SUB``) and the mapped properties;
- ``POST {svc}/Save?EntityName='CusActivity'`` with that entity answers the saved entity.
- Errors are OData errors, ``{"error": {"code", "message": {"lang", "value"}}}``; 401 a refused
  user (retriable: the activities wait while the operator fixes it; Basic has no token to
  renew), 429/5xx retriable, another 4xx the record's own refusal.

The template is fetched once per sink and reused (it does not change while the sink runs).
Batching, limits and an upsert are not documented: one record per request
(:class:`sinks.http.PerRecordSink`); a redelivery after a lost answer can add a second row.
"""

from __future__ import annotations

import base64
import copy

from sinks import mapping
from sinks.contract import Delivery, MappingError, RetriableError, SinkError
from sinks.http import HttpResponse, PerRecordSink, classify_http


def odata_error(resp: HttpResponse) -> str:
    body = resp.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        msg = err.get("message")
        return f"{err.get('code') or ''} {msg.get('value') if isinstance(msg, dict) else msg or ''}".strip()[:300]
    return resp.text[:200]


class PersonifySink(PerRecordSink):
    provider = "personify"
    member_noun = "Personify customer"

    async def setup(self) -> None:
        s = self.ctx.settings
        pair = f"{s.username}:{s.secret('password')}".encode()
        self._auth = "Basic " + base64.b64encode(pair).decode()
        self._template: dict | None = None


    def classify(self, resp: HttpResponse) -> SinkError | None:
        if resp.status == 401:
            return RetriableError(f"HTTP 401: {odata_error(resp)}", status=401)
        return classify_http(resp.status, odata_error(resp) if resp.status >= 400 else "",
                             resp.headers.get("Retry-After"))

    @property
    def headers(self) -> dict:
        return {"Authorization": self._auth, "Accept": "application/json", "DataServiceVersion": "2.0"}

    async def template(self) -> dict:
        if self._template is None:
            s = self.ctx.settings
            resp = await self.request("GET", f"{s.url}/Create", params={"EntityName": f"'{s.entity}'"},
                                      headers=self.headers)
            body = resp.json(default={})
            entity = body.get("d") if isinstance(body, dict) else None
            if not isinstance(entity, dict):
                raise RetriableError("Personify's Create answered no entity template")
            self._template = entity
        return self._template

    async def write_one(self, d: Delivery) -> None:
        s = self.ctx.settings
        master, sep, sub = d.customer_id.partition(s.sub_customer_separator)
        if sep and not sub.isdigit():
            raise MappingError(f"customer ID {d.customer_id!r}: the SubCustomerId after "
                               f"{s.sub_customer_separator!r} is not a number")
        entity = copy.deepcopy(await self.template())
        entity.update({"MasterCustomerId": master, "SubCustomerId": int(sub) if sep else 0})
        entity.update({k: v for k, v in mapping.apply(s.fields, s.constants, d).items() if v is not None})
        await self.request("POST", f"{s.url}/Save", params={"EntityName": f"'{s.entity}'"},
                           json=entity, headers={**self.headers, "Content-Type": "application/json"})
