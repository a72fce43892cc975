"""A fake receiver for the configurable HTTP sink: an association's own activity endpoint.

There is no vendor document to follow (these systems have no public write API); it behaves as
the conventions the sink is configured for say:

- authentication as configured: fixed header (constant-time compare), HTTP Basic (RFC 7617),
  static bearer token or OAuth 2.0 client credentials (RFC 6749 section 4.4: ``POST
  /oauth/token``, ``{access_token, token_type, expires_in}``; an expired token answers 401 with
  ``WWW-Authenticate: Bearer error="invalid_token"``, RFC 6750 section 3.1);
- bodies: JSON (an object, an array, or an object holding the array), XML (one element per
  activity, or a root holding them) or form fields;
- one activity per request answers 201 created, **409 Conflict for a key it already has**, 400
  for a record it cannot take; a batch answers 200 ``{"results": [{<key_field>, "status",
  "error"}]}`` with the same per-record statuses;
- throttling as 429 + Retry-After (RFC 6585), faults from :class:`core.fakes.FaultyFake`.

    python -m sinks.providers.http.fake [--port 8093] [--auth headers --header X-Api-Key]
        (the secret from ACTIVITY_SYNC_HTTP_SECRET)
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import time
from urllib.parse import unquote_plus
from xml.etree import ElementTree

from aiohttp import web

from core.fakes import FaultyFake, fake_main


class FakeReceiver(FaultyFake):
    path = "/activities"

    def __init__(self, auth: str = "none", secret: str = "", header: str = "X-Api-Key", username: str = "sync",
                 client_id: str = "activity-sync", key_field: str = "ActivityKey",
                 customer_field: str = "ContributorMemberKey", token_ttl_s: float = 3600) -> None:
        self.auth, self.secret, self.header, self.username, self.client_id = auth, secret, header, username, client_id
        self.key_field, self.customer_field, self.token_ttl_s = key_field, customer_field, token_ttl_s
        self.client_auth = "any"  # or "body" / "basic": the one client authentication the server takes
        self.token_params: dict[str, str] = {}
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.stored: dict[str, dict] = {}
        self.bodies: list[tuple[str, bytes]] = []
        self.duplicates = 0
        self.expiry: dict[str, float] = {}
        self.body_fail = 0  # the next N answers: 200 with {"success": false, "error": …}

    def stored_keys(self) -> list[str]:
        return list(self.stored)

    def control(self, spec: dict) -> None:
        super().control(spec)
        if "body_fail" in spec:
            self.body_fail = int(spec["body_fail"])

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.stored), "duplicates": self.duplicates}

    # ------------------------------------------------------------------ auth
    def authorized(self, request: web.Request) -> bool:
        if self.auth == "none":
            return True
        if not self.secret:
            return False
        got = request.headers.get("Authorization", "")
        if self.auth == "headers":
            return hmac.compare_digest(request.headers.get(self.header, ""), self.secret)
        if self.auth == "basic":
            want = "Basic " + base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()
            return hmac.compare_digest(got, want)
        if self.auth == "bearer":
            return hmac.compare_digest(got, f"Bearer {self.secret}")
        token = got[7:] if got.startswith("Bearer ") else ""
        return self.token_valid(token) and time.time() < self.expiry.get(token, 0)

    async def handle_token(self, request: web.Request) -> web.Response:
        """RFC 6749 4.4 with client authentication by either 2.3.1 method (HTTP Basic, the id and
        secret form-urlencoded first, or both in the body), as ``client_auth`` allows; the parameters
        in ``token_params`` (audience, resource …) must come as given."""
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            if self.client_auth == "body" or "client_secret" in form:
                return web.json_response({"error": "invalid_request",
                                          "error_description": "one client authentication method only"}, status=400)
            try:
                cid, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                return web.json_response({"error": "invalid_client"}, status=401)
            cid, secret = unquote_plus(cid), unquote_plus(secret)
        else:
            if self.client_auth == "basic":
                return web.json_response({"error": "invalid_client", "error_description": "HTTP Basic required"},
                                         status=401, headers={"WWW-Authenticate": 'Basic realm="token"'})
            cid, secret = form.get("client_id"), str(form.get("client_secret", ""))
        if cid != self.client_id or not self.secret or not hmac.compare_digest(secret, self.secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        for k, v in self.token_params.items():
            if form.get(k) != v:
                return web.json_response({"error": "invalid_request", "error_description": f"{k} must be {v!r}"},
                                         status=400)
        token = self.issue_token()
        self.expiry[token] = time.time() + self.token_ttl_s
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl_s)})

    # ------------------------------------------------------------------ bodies
    @staticmethod
    def items(request: web.Request, body: bytes) -> tuple[list[dict], bool]:
        """The activities in a body, and whether it was a batch (raises ValueError if unreadable)."""
        ctype = request.content_type
        if ctype.endswith("json"):
            doc = json.loads(body)
            if isinstance(doc, list):
                return doc, True
            if isinstance(doc, dict):
                for v in doc.values():
                    if isinstance(v, list) and all(isinstance(x, dict) for x in v):
                        return v, True
                return [doc], False
            raise ValueError("JSON body must be an object or an array")
        if ctype.endswith("xml"):
            root = ElementTree.fromstring(body)
            if len(root) and all(len(child) for child in root):
                return [{c.tag: c.text or "" for c in child} for child in root], True
            return [{c.tag: c.text or "" for c in root}], False
        if ctype == "application/x-www-form-urlencoded":
            from urllib.parse import parse_qsl
            return [dict(parse_qsl(body.decode(), keep_blank_values=True))], False
        raise ValueError(f"unsupported Content-Type {ctype}")

    def take(self, item: dict, now: float, member: str | None = None) -> tuple[int, str]:
        key = item.get(self.key_field) if isinstance(item, dict) else None
        if member is not None and isinstance(item, dict):
            item = dict(item, **{self.customer_field: member})  # PUT /members/{member}/activities/{key}
            if request_key := getattr(self, "_path_key", None):
                if request_key != key:
                    return 400, f"the path's activity {request_key!r} is not the body's {key!r}"
        if not key:
            return 400, f"{self.key_field} is required"
        customer = item.get(self.customer_field)
        if not customer or customer in self.reject_customers:
            return 400, f"unknown member {customer!r}"
        if key in self.stored:
            self.duplicates += 1
            return 409, "already received"
        self.stored[key] = dict(item, received_at=now)
        return 201, ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append((request.content_type, body))
        if not self.authorized(request):
            self.log(401)
            return web.json_response({"error": "invalid_token" if self.auth == "oauth2" else "unauthorized"},
                                     status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                                     if self.auth == "oauth2" else None)
        fault = await self.faults()
        if fault is not None:
            self.log(fault.status)
            return fault
        try:
            items, batch = self.items(request, body)
        except (ValueError, ElementTree.ParseError) as exc:
            self.log(400)
            return web.json_response({"error": f"unreadable body: {exc}"}, status=400)
        now = time.time()
        member = request.match_info.get("member")
        self._path_key = request.match_info.get("key")
        if self.body_fail > 0:  # a 2xx whose body says it failed, as some AMS APIs answer
            self.body_fail -= 1
            self.log(200, 0)
            return web.json_response({"success": False, "error": "Member record is locked"}, status=200)
        results = [(item, *self.take(item, now, member)) for item in items]
        self.log(200 if batch else results[0][1], len(items))
        if batch and request.content_type.endswith("xml"):  # per-record results, in XML as the request was
            root = ElementTree.Element("Results")
            for i, st, err in results:
                row = ElementTree.SubElement(root, "Result")
                ElementTree.SubElement(row, self.key_field).text = str((i or {}).get(self.key_field) or "")
                ElementTree.SubElement(row, "Status").text = str(st)
                ElementTree.SubElement(row, "Error").text = err
            return web.Response(body=ElementTree.tostring(root, encoding="utf-8"), content_type="application/xml")
        if batch:
            return web.json_response({"results": [{self.key_field: (i or {}).get(self.key_field), "status": st,
                                                   "error": err} for i, st, err in results]})
        _, status, error = results[0]
        body = {"status": status, "success": status < 300}
        if error:
            body["error"] = error
        return web.json_response(body, status=status)

    def listing(self) -> list:
        return list(self.stored.values())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for method in ("POST", "PUT", "PATCH"):
            app.router.add_route(method, "/activities", self.handle)
            app.router.add_route(method, "/members/{member}/activities/{key}", self.handle)  # by key, in the path
        app.router.add_post("/oauth/token", self.handle_token)
        self.listing_routes(app)
        return app


def main() -> None:
    def options(ap) -> None:
        ap.add_argument("--auth", default="headers", choices=["none", "headers", "basic", "bearer", "oauth2"])
        ap.add_argument("--header", default="X-Api-Key", help="the header carrying the secret (auth headers)")
        ap.add_argument("--key-field", default="ActivityKey")
        ap.add_argument("--customer-field", default="ContributorMemberKey")

    fake_main("sinks.providers.http.fake", "A fake activity receiver (the secret from ACTIVITY_SYNC_HTTP_SECRET)",
              8093, lambda a: FakeReceiver(a.auth, os.environ.get("ACTIVITY_SYNC_HTTP_SECRET", ""), a.header,
                                           key_field=a.key_field, customer_field=a.customer_field),
              "fake activity receiver on {base_url}/activities", extra=options)


if __name__ == "__main__":
    main()
