"""iMIS sink: one Activity row per activity through the ASI REST API, with a duplicate guard.

Follows the iMIS REST API documentation (developer.imis.com, "iMIS REST API", "Authentication",
"Generic entities" and the Activity entity's reference):

- ``POST {site}/token`` (form ``grant_type=password&username&password`` or
  ``grant_type=refresh_token&refresh_token``) answers ``{access_token, token_type: "bearer",
  expires_in, refresh_token?}``; every API call then sends ``Authorization: Bearer``. A 401 means
  the token has expired: a new one is fetched and the request sent once more.
- ``POST {site}/api/Activity`` with the generic-entity wrapper::

    {"$type": "Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts",
     "EntityTypeName": "Activity",
     "Properties": {"$type": "Asi.Soa.Core.DataContracts.GenericPropertyDataCollection, Asi.Contracts",
                    "$values": [{"$type": "Asi.Soa.Core.DataContracts.GenericPropertyData, Asi.Contracts",
                                 "Name": "ID", "Value": "101"}, ...]}}

  Dates are typed values (``{"$type": "System.DateTime", "$value": "2016-06-13T20:10:53"}``). The
  member is ``ID`` (the Activity table's column) or ``PartyId`` with ``PrimaryParentIdentity``, as
  the public samples differ: ``member_id_property`` says which. The answer (201) is the entity with
  its new key in ``Identity.IdentityElements.$values[0]`` (the SEQN).
- There is no batch endpoint and no upsert by an external key (public client code sends one record
  per request). So the sink writes one request per activity, ``concurrency`` at a time
  (:class:`sinks.http.PerRecordSink`), and guards against duplicates itself: before writing it asks
  ``GET {site}/api/Activity?{key_property}={ActivityKey}`` (the documented query-string filter on a
  property) and skips an activity already there. The guard closes the window of a redelivery after
  a lost answer, except for two writers racing on the same activity, which the pipeline never does
  (one partition, one consumer).
- Error bodies and rate limits are not documented. The sink reads ``Message`` (ASP.NET Web API's
  error body) where there is one, treats 429 + Retry-After and 5xx as retriable and any other 4xx
  as that record's own refusal.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from sinks import mapping
from sinks.contract import Delivery, RetriableError, SinkError
from sinks.http import HttpResponse, PerRecordSink, Token, classify_http

ASI = "Asi.Soa.Core.DataContracts.{}, Asi.Contracts"


def typed(value):
    """A property value as iMIS types it: strings plain, other types wrapped with their .NET type."""
    if isinstance(value, bool):
        return {"$type": "System.Boolean", "$value": value}
    if isinstance(value, int):
        return {"$type": "System.Int32", "$value": value}
    if isinstance(value, float):
        return {"$type": "System.Decimal", "$value": value}
    return value


def prop(name: str, value) -> dict:
    return {"$type": ASI.format("GenericPropertyData"), "Name": name, "Value": typed(value)}


def error_message(resp: HttpResponse) -> str:
    body = resp.json()
    if isinstance(body, dict):
        for k in ("Message", "message", "error_description", "error"):
            if body.get(k):
                return str(body[k])
    return resp.text[:300]


class ImisSink(PerRecordSink):
    provider = "imis"
    member_noun = "iMIS member"

    async def setup(self) -> None:
        s = self.ctx.settings
        self._credential = s.secret("password") if s.grant == "password" else s.secret("refresh_token")


    async def authenticate(self) -> Token:
        s = self.ctx.settings
        form = ({"grant_type": "password", "username": s.username, "password": self._credential}
                if s.grant == "password" else {"grant_type": "refresh_token", "refresh_token": self._credential})
        resp = await self.request("POST", f"{s.site_url}/token", data=form, classify=False)
        body = resp.json(default={})
        if resp.status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            raise RetriableError(f"iMIS token request refused (HTTP {resp.status}): {error_message(resp)}"[:400],
                                 status=resp.status)
        if body.get("refresh_token") and s.grant == "refresh_token":
            self._credential = body["refresh_token"]
        expires = body.get("expires_in")
        return Token(body["access_token"], time.monotonic() + float(expires) if expires else None)

    def classify(self, resp: HttpResponse) -> SinkError | None:
        return classify_http(resp.status, error_message(resp) if resp.status >= 400 else "",
                             resp.headers.get("Retry-After"))

    def entity(self, d: Delivery) -> dict:
        s = self.ctx.settings
        props = [prop(s.member_id_property, d.customer_id)]
        values = mapping.apply(s.fields, s.constants, d)
        if s.duplicate_guard:
            values[s.key_property] = d.activity_key
        for name, v in values.items():
            if v is None or v == "":
                continue
            if name == "TRANSACTION_DATE" and isinstance(v, str):
                v = {"$type": "System.DateTime", "$value": v.rstrip("Z")}
            props.append(prop(name, v))
        body = {"$type": ASI.format("GenericEntityData")}
        if s.send_entity_type_name:
            body["EntityTypeName"] = "Activity"
        if s.member_id_property == "PartyId":
            body["PrimaryParentEntityTypeName"] = "Party"
            body["PrimaryParentIdentity"] = {"$type": ASI.format("IdentityData"), "EntityTypeName": "Party",
                                             "IdentityElements": {"$type": "System.Collections.ObjectModel."
                                                                           "Collection`1[[System.String, mscorlib]], "
                                                                           "mscorlib",
                                                                  "$values": [d.customer_id]}}
        body["Properties"] = {"$type": ASI.format("GenericPropertyDataCollection"), "$values": props}
        return body

    async def headers(self) -> dict:
        token = await self.token()
        return {"Authorization": f"Bearer {token.value}", "Accept": "application/json"}

    async def already_written(self, d: Delivery) -> bool:
        s = self.ctx.settings
        resp = await self.request("GET", f"{s.site_url}/api/Activity?{s.key_property}={quote(d.activity_key)}",
                                  headers=await self.headers())
        body = resp.json(default={})
        if not isinstance(body, dict):
            raise RetriableError("iMIS answered the duplicate check with no PagedResult")
        return int(body.get("TotalCount") or body.get("Count") or 0) > 0

    async def write_one(self, d: Delivery) -> None:
        await self.request("POST", f"{self.ctx.settings.site_url}/api/Activity", json=self.entity(d),
                           headers=await self.headers())
