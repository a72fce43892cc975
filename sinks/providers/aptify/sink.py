"""Aptify sink: one ``GenericEntity/AddData`` per activity, with the AptifyAuthorization token.

Follows the Aptify documentation (Aptify 6 Knowledge Base, "Authentication with Aptify Services
API" and "Generic Entity Service", https://aptifykb.atlassian.net/wiki/spaces/A6PK/):

- sign in: ``GET {base}/services/Authentication/Login/{Provider}?UserName=&Password=`` (the
  providers: Web, AptifyUser, DomainUser, DomainWithContainer) answers ``{"TokenId": "<guid>",
  …}``; every later call sends ``AptifyAuthorization: <Provider> <TokenId>``.
- **an invalid or expired token is answered 404 Not Found** (the documented choice: 404 rather
  than 401/403, so as not to tell an unauthenticated caller that the endpoint exists). The sink
  therefore treats a 404 from AddData as an expired token: it signs in again and sends once more;
  a 404 with a fresh token is the record's failure.
- ``POST {base}/services/GenericEntity/AddData/-1`` with ``{"ID": -1, "EntityName",
  "EntityData": [{"Field", "Value"}]}`` answers the new record's ID. No batch call and no
  upsert: one request per activity (:class:`sinks.http.PerRecordSink`), so a redelivery after a
  lost answer can add a second record (``ActivityKey`` is kept in a field for a later check).
- Error bodies and limits are not documented: ``Message`` is read where there is one, 429 +
  Retry-After and 5xx are retriable, any other 4xx is the record's own refusal.

The password travels in the sign-in URL's query string, as the API requires: the sink never logs
URLs, and a failed sign-in's error names the status only.
"""

from __future__ import annotations

from sinks import mapping
from sinks.contract import AuthExpired, Delivery, RetriableError, SinkError
from sinks.http import HttpResponse, PerRecordSink, Token, classify_http


def message(resp: HttpResponse) -> str:
    body = resp.json()
    if isinstance(body, dict):
        return str(body.get("Message") or body.get("ExceptionMessage") or "")[:300]
    return resp.text[:200]


class AptifySink(PerRecordSink):
    provider = "aptify"
    member_noun = "Aptify person"

    async def setup(self) -> None:
        self._password = self.ctx.settings.secret("password")


    async def authenticate(self) -> Token:
        s = self.ctx.settings
        resp = await self.request("GET", f"{s.url}/services/Authentication/Login/{s.auth_provider}",
                                  params={"UserName": s.username, "Password": self._password}, classify=False)
        body = resp.json(default={})
        if resp.status != 200 or not isinstance(body, dict) or not body.get("TokenId"):
            raise RetriableError(f"Aptify sign-in refused (HTTP {resp.status})", status=resp.status)
        return Token(str(body["TokenId"]))

    def classify(self, resp: HttpResponse) -> SinkError | None:
        if resp.status == 404:
            return AuthExpired("HTTP 404: Aptify answers an invalid or expired token with 404", status=404)
        return classify_http(resp.status, message(resp) if resp.status >= 400 else "",
                             resp.headers.get("Retry-After"))

    async def write_one(self, d: Delivery) -> None:
        s = self.ctx.settings
        values = mapping.apply(s.fields, s.constants, d)
        body = {"ID": -1, "EntityName": s.entity,
                "EntityData": [{"Field": k, "Value": v} for k, v in values.items() if v is not None]}
        token = await self.token()
        await self.request("POST", f"{s.url}/services/GenericEntity/AddData/-1", json=body,
                           headers={"AptifyAuthorization": f"{s.auth_provider} {token.value}",
                                    "Accept": "application/json"})
