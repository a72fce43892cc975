"""A fake Upland Mobile Commons REST API, as strict as its documentation says the real one is.

From http://www.mobilecommons.com/mobile-commons-api/rest/ and ``../shared/NEW-SYSTEMS.md`` section 3:

- base ``/api/``; HTTP Basic (login e-mail and password) or ``Authorization: Bearer`` (companies on
  Upland Credential Manager; parsons sends Bearer): both accepted; 401 otherwise.
- answers are XML, and **errors are in the body** of an HTTP 200:
  ``<response success="false"><error id="5" message="Invalid phone number"/></response>``.
- ``POST profile_update``: parameters in the query string (parsons), a form or a JSON body;
  ``phone_number`` required (US numbers: 10 digits, or 11 starting with 1); ``email``, names,
  ``street1``, ``street2``, ``city``, ``state``, ``postal_code``, ``country``, ``opt_in_path_id``;
  other keys are custom columns. With an opt-in path, the number is opted into the path's campaign
  **once** through the API: an existing or previously opted-out subscriber of that campaign gets no
  new subscription and no welcome message (``welcome_messages`` counts those sent).
- ``POST profile_opt_out``: ``phone_number``, ``campaign_id`` (all campaigns without it).
- ``GET profiles``: ``limit`` (at most 1000), ``page``, ``from``/``to`` (ISO 8601, on the profile's
  ``updated_at``: the fake's reading), ``phone_number``, ``include_subscriptions``; the
  ``<profiles num="N" page="P">`` element says how many are on the page (0 past the end).
- at most 160 calls in flight per company: more answer HTTP 429 with ``Retry-After: 1`` (the
  limit is documented, its answer is not: the fake's choice).
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import re
import time
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

from core.fakes import FaultyFake, fake_main

PROFILE_FIELDS = ("email", "first_name", "last_name", "street1", "street2", "city", "state", "postal_code",
                  "country")
MAX_CONCURRENT = 160


def mc_time(t: dt.datetime | None = None) -> str:
    return (t or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_mc_time(text: str) -> dt.datetime:
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S UTC", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def us_number(phone: str) -> str | None:
    d = re.sub(r"\D", "", phone or "")
    if len(d) == 10 and d[0] not in "01":
        return "1" + d
    if len(d) == 11 and d[0] == "1" and d[1] not in "01":
        return d
    return None


def error(eid: int, message: str) -> web.Response:
    return web.Response(text=f'<response success="false"><error id="{eid}" message={quoteattr(message)}/></response>',
                        content_type="text/xml")


class FakeMobileCommons(FaultyFake):
    def __init__(self, login: str = "sync@example.org", password: str = "mc-fake-password",
                 token: str | None = "mc-fake-token", campaigns: dict | None = None) -> None:
        self.login, self.password, self.token = login, password, token
        #: opt-in path id -> campaign id
        self.paths = dict(campaigns or {"1001": "201", "1002": "202"})
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.profiles: dict[str, dict] = {}     # phone -> profile
        self.welcome_messages: list[tuple[str, str]] = []   # (phone, opt-in path) each welcome sent
        self.api_requests: list[dict] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._ids = itertools.count(100001)

    # ------------------------------------------------------------------ data
    def add_profile(self, phone: str, email: str | None = None, first_name: str | None = None,
                    opt_in_path: str | None = "1001", updated: dt.datetime | None = None, **fields) -> dict:
        """A subscriber as if they had texted in (``updated`` back-dates them)."""
        number = us_number(phone)
        assert number, phone
        p = self._new(number, updated)
        p.update({"email": email, "first_name": first_name, **fields})
        if opt_in_path:
            self._subscribe(p, opt_in_path, welcome=False, source="Keyword")
        return p

    def _new(self, number: str, when: dt.datetime | None = None) -> dict:
        t = mc_time(when)
        p = {"id": str(next(self._ids)), "phone_number": number, "status": "Undeliverable", "created_at": t,
             "updated_at": t, "opted_out_at": "", "source": {"type": "API", "name": "API"},
             "subscriptions": [], "custom_columns": {}, **{f: None for f in PROFILE_FIELDS}}
        self.profiles[number] = p
        return p

    def _subscribe(self, p: dict, path: str, welcome: bool = True, source: str = "API") -> bool:
        campaign = self.paths[path]
        if any(s["campaign_id"] == campaign for s in p["subscriptions"]):
            return False  # opted into a campaign once through the API: no new subscription, no welcome
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        p["subscriptions"].append({"campaign_id": campaign, "opt_in_path_id": path, "status": "Active",
                                   "opt_in_source": source, "created_at": now, "activated_at": now,
                                   "opted_out_at": "", "opt_out_source": ""})
        if welcome:
            self.welcome_messages.append((p["phone_number"], path))
        self._status(p)
        return True

    @staticmethod
    def _status(p: dict) -> None:
        subs = p["subscriptions"]
        if any(s["status"] == "Active" for s in subs):
            p["status"] = "Active Subscriber"
        elif subs:
            p["status"] = "Opted-Out"

    def opt_out(self, phone: str, campaign: str | None = None, when: dt.datetime | None = None) -> dict:
        """The subscriber texts STOP (or an operator opts them out)."""
        p = self.profiles[us_number(phone)]
        stamp = mc_time(when)
        for s in p["subscriptions"]:
            if campaign in (None, s["campaign_id"]) and s["status"] == "Active":
                s.update(status="Opted-Out", opted_out_at=stamp.replace(" UTC", "Z").replace(" ", "T"),
                         opt_out_source="Texted a STOP word")
        p["opted_out_at"] = stamp
        self._status(p)
        p["updated_at"] = stamp
        return p

    # ------------------------------------------------------------------ plumbing
    def authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and self.token is not None:
            return auth[7:] == self.token
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            return user == self.login and pw == self.password
        return False

    async def params(self, request: web.Request) -> dict:
        out = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            ctype = request.content_type
            if ctype == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    body = {}
                out.update({k: v for k, v in (body or {}).items() if v is not None})
            else:
                out.update(dict(await request.post()))
        return {k: str(v) for k, v in out.items() if v is not None and v != "None"}

    async def api(self, request: web.Request, handler) -> web.Response:
        if self.in_flight >= MAX_CONCURRENT:
            return self._log(request, web.Response(status=429, headers={"Retry-After": "1"},
                                                   text="Too many concurrent requests"))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            fault = await self.faults()
            if fault is not None:
                return self._log(request, fault)
            if not self.authorized(request):
                return self._log(request, web.Response(status=401, text="HTTP Basic: Access denied.\n"))
            return self._log(request, await handler(request, await self.params(request)))
        finally:
            self.in_flight -= 1

    def _log(self, request: web.Request, resp: web.Response) -> web.Response:
        self.api_requests.append({"method": request.method, "path": request.path, "status": resp.status,
                                  "at": time.time(), "success": b'success="false"' not in (resp.body or b"")})
        self.log(resp.status, 1)
        return resp

    def fault_response(self, status: int) -> web.Response:
        return web.Response(status=status, text="<html><body><h4>Service unavailable</h4><p>try later</p></body></html>",
                            content_type="text/html")

    # ------------------------------------------------------------------ XML
    def profile_xml(self, p: dict, subscriptions: bool = True) -> str:
        def el(name, value):
            return f"<{name}>{escape(value)}</{name}>" if value else f"<{name}/>"

        subs = "".join(f"<subscription {' '.join(f'{k}={quoteattr(v)}' for k, v in s.items())}/>"
                       for s in p["subscriptions"]) if subscriptions else ""
        custom = "".join(f"<custom_column name={quoteattr(k)}>{escape(str(v))}</custom_column>"
                         for k, v in p["custom_columns"].items())
        return (f'<profile id="{p["id"]}">{el("first_name", p["first_name"])}{el("last_name", p["last_name"])}'
                f'{el("phone_number", p["phone_number"])}{el("email", p["email"])}{el("status", p["status"])}'
                f'{el("created_at", p["created_at"])}{el("updated_at", p["updated_at"])}'
                f'{el("opted_out_at", p["opted_out_at"])}'
                f'<source type={quoteattr(p["source"]["type"])} name={quoteattr(p["source"]["name"])}/>'
                f'<address>{el("street1", p["street1"])}{el("street2", p["street2"])}{el("city", p["city"])}'
                f'{el("state", p["state"])}{el("postal_code", p["postal_code"])}{el("country", p["country"])}</address>'
                f'<custom_columns>{custom}</custom_columns><subscriptions>{subs}</subscriptions>'
                f'<integrations/><clicks/></profile>')

    # ------------------------------------------------------------------ routes
    async def profile_update(self, request: web.Request, params: dict) -> web.Response:
        number = us_number(params.get("phone_number", ""))
        if not params.get("phone_number"):
            return error(4, "Phone number required")
        if number is None:
            return error(5, "Invalid phone number")
        path = params.get("opt_in_path_id")
        if path and path not in self.paths:
            return error(6, f"Invalid opt-in path {path}")
        p = self.profiles.get(number) or self._new(number)
        for f in PROFILE_FIELDS:
            if params.get(f):
                p[f] = params[f]
        for k, v in params.items():
            if k not in (*PROFILE_FIELDS, "phone_number", "opt_in_path_id", "company"):
                p["custom_columns"][k] = v
        if path:
            self._subscribe(p, path)
        p["updated_at"] = mc_time()
        return web.Response(text=f'<response success="true">{self.profile_xml(p)}</response>', content_type="text/xml")

    async def profile_opt_out(self, request: web.Request, params: dict) -> web.Response:
        number = us_number(params.get("phone_number", ""))
        if number is None:
            return error(5, "Invalid phone number")
        if number not in self.profiles:
            return error(8, "Profile not found")
        p = self.opt_out(number, params.get("campaign_id"))
        return web.Response(text=f'<response success="true">{self.profile_xml(p)}</response>', content_type="text/xml")

    async def profiles_get(self, request: web.Request, params: dict) -> web.Response:
        try:
            limit = int(params.get("limit", "1000"))
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            return error(9, "limit and page are numbers")
        if not 1 <= limit <= 1000:
            return error(9, "limit is at most 1000")
        rows = list(self.profiles.values())
        try:
            if params.get("from"):
                lo = parse_mc_time(params["from"])
                rows = [p for p in rows if parse_mc_time(p["updated_at"]) >= lo]
            if params.get("to"):
                hi = parse_mc_time(params["to"])
                rows = [p for p in rows if parse_mc_time(p["updated_at"]) <= hi]
        except ValueError:
            return error(10, "from and to are dates")
        if params.get("phone_number"):
            wanted = {us_number(x) for x in params["phone_number"].split(",")}
            rows = [p for p in rows if p["phone_number"] in wanted]
        rows.sort(key=lambda p: (parse_mc_time(p["updated_at"]), int(p["id"])))
        chunk = rows[(page - 1) * limit: page * limit]
        subs = params.get("include_subscriptions", "false") == "true"
        return web.Response(text=f'<response success="true"><profiles num="{len(chunk)}" page="{page}">'
                                 + "".join(self.profile_xml(p, subs) for p in chunk) + "</profiles></response>",
                            content_type="text/xml")

    def listing(self) -> list:
        return list(self.profiles.values())

    def stats(self) -> dict:
        return {**super().stats(), "profiles": len(self.profiles), "welcome_messages": len(self.welcome_messages),
                "most_in_flight": self.most_in_flight}

    def app(self) -> web.Application:
        app = web.Application()
        for name, handler in (("profile_update", self.profile_update), ("profile_opt_out", self.profile_opt_out)):
            app.router.add_post(f"/api/{name}", lambda r, h=handler: self.api(r, h))
        app.router.add_get("/api/profiles", lambda r: self.api(r, self.profiles_get))
        self.listing_routes(app)
        return app


def main() -> None:
    import os

    def make(args):
        fake = FakeMobileCommons(token=os.environ.get("ACTIVITY_SYNC_MOBILECOMMONS_TOKEN", "mc-fake-token"))
        for i in range(args.seed):  # subscribers who texted in: every third without an e-mail
            fake.add_profile(f"2025558{i % 1000:03d}", email=None if i % 3 == 2 else f"texter{i + 1}@example.org",
                             first_name=f"Texter{i + 1}")
        return fake

    fake_main("sinks.providers.mobilecommons.fake", "A fake Mobile Commons REST API", 8098, make,
              "fake Mobile Commons on {base_url}/api/",
              extra=lambda ap: ap.add_argument("--seed", type=int, default=0, help="subscribers to start with"))


if __name__ == "__main__":
    main()


__all__ = ["FakeMobileCommons"]
