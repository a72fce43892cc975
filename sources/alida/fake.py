"""A fake Alida API (one region), as strict as the documentation says the real one is.

From ``../shared/seeds/alida-activities-api.txt`` and the collection conventions
(https://insightcommunity.help.alida.com/api_sng/create_api/collection.html,
https://insightcommunity.help.alida.com/api_sng/member_events/memberevents.html):

- ``POST /oauth2/token``: client credentials (HTTP Basic client id:secret, or in the form), the
  ``x-api-key`` header when the fake has one, ``grant_type=client_credentials`` only; answers
  ``{access_token, token_type: "Bearer", expires_in}``. A token is good for ``token_ttl_s`` and only
  in the region that issued it. (The token URL is cut off in the stored docs; a third-party Alida
  SDK posts here.)
- every API call needs ``Authorization: Bearer``: 401 otherwise, or when the token expired.
- collections answer ``{items, links: [{href, rel: first|last|prev|next}], meta: {limit, offset,
  count}}`` (``count``: the matching total, the fake's reading); ``limit`` defaults to 20 and is at
  most 1000 (more: 400); ``offset``; ``sort=<field>`` or ``<field>:d`` (lastUpdateDate, createDate,
  eventDate; ties in id order); ``q=lastUpdateDate>="…"`` (also ``=``, ``>``, ``<``, ``<=``).
- ``GET /v1/applications/{name}/activities/{id}?fields=a,b``: the projection; ``href`` in the
  ``/c/services/api/v1/tenants/{panelId}/activities/{id}`` form with ``links: [{rel: summary}]``;
  ``…/summary``; activities marked hidden are not exposed (404).
- ``GET /v1/applications/{name}/members/{memberId}``: ``{id, email, firstName, lastName,
  variables}`` (**an assumption**: the stored docs do not show this endpoint's shape).
- an unknown application (communityApiKeyName): 404.

Rate limits and error bodies are not documented: the fake answers 429 with ``Retry-After`` and
``{"message": …}`` bodies, by the shared fault injection (:class:`core.fakes.FaultyFake`).
Extra control: ``POST /_events {"count": n, "members": m, "type": "SurveyCompleted"}`` adds events,
``POST /_update {"ids": [...]}`` moves events' ``lastUpdateDate`` to now.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import re
import time
import uuid
from urllib.parse import urlencode

from aiohttp import web

from core.envelope import parse_date
from core.fakes import FaultyFake, fake_main

from .settings import EVENT_TYPES

_Q = re.compile(r'^\s*(lastUpdateDate|createDate|eventDate)\s*(>=|<=|=|>|<)\s*"?([^"]+)"?\s*$')
SORTABLE = ("lastUpdateDate", "createDate", "eventDate")


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class AlidaFake(FaultyFake):
    def __init__(self, region: str = "na1", application: str = "demo-community", client_id: str = "activity-sync",
                 client_secret: str = "alida-fake-secret", api_key: str | None = None, token_ttl_s: float = 3600,
                 panel_id: str = "9a7e3c55-0000-4000-8000-00000000a11d") -> None:
        self.region, self.application = region, application
        self.client_id, self.client_secret, self.api_key = client_id, client_secret, api_key
        self.token_ttl_s, self.panel_id = token_ttl_s, panel_id
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.token_expiry: dict[str, float] = {}
        self.events: dict[str, dict] = {}
        self.activities: dict[str, dict] = {}
        self.hidden: set[str] = set()
        self.members: dict[str, dict] = {}
        self.api_requests: list[dict] = []   # every API call: path, query, status
        self._seq = itertools.count(1)
        self._dates: dict[str, dt.datetime] = {}

    # ------------------------------------------------------------------ data
    def add_activity(self, name: str, activity_type: str = "Survey", hidden: bool = False, **extra) -> str:
        aid = str(uuid.UUID(int=0xA000_0000_0000_4000_8000_0000_0000_0000 + len(self.activities) + 1))
        now = _iso(dt.datetime.now(dt.timezone.utc))
        self.activities[aid] = {"id": aid, "name": name, "activityType": activity_type, "projectType": "Research",
                                "status": "open", "panelId": self.panel_id, "projectId": str(uuid.uuid4()),
                                "openedOn": now, "closedOn": None, "createDate": now, "lastUpdateDate": now,
                                "createdBy": "fake", "lastUpdatedBy": "fake", "isReady": True,
                                "excludeFromParticipation": True, "hideFromMember": False, **extra}
        if hidden:
            self.hidden.add(aid)
        return aid

    def add_member(self, email: str, first: str, last: str, **variables) -> str:
        mid = str(uuid.UUID(int=0xB000_0000_0000_4000_8000_0000_0000_0000 + len(self.members) + 1))
        self.members[mid] = {"id": mid, "email": email, "firstName": first, "lastName": last,
                             "variables": variables}
        return mid

    def add_event(self, member_id: str, activity_id: str, event_type: str = "SurveyCompleted",
                  when: dt.datetime | None = None, **extra) -> dict:
        n = next(self._seq)
        eid = f"{n:08d}-0000-4000-8000-{uuid.uuid4().hex[:12]}"
        t = _iso(when or dt.datetime.now(dt.timezone.utc))
        ev = {"id": eid, "activityId": activity_id, "communicationId": None, "communityId": None,
              "createDate": t, "eventDate": t, "eventType": event_type, "memberId": member_id,
              "lastUpdateDate": t, "href": f"https://api.{self.region}.alida.com/v1/applications/"
                                           f"{self.application}/memberevents/{eid}", **extra}
        self.events[eid] = ev
        return ev

    def seed(self, count: int, members: int = 50, event_type: str | None = None, spread_s: float = 0.0,
             start: dt.datetime | None = None) -> list[dict]:
        """``count`` events of ``members`` fictitious members (``…@example.org``) on a few surveys, their
        ``lastUpdateDate`` spread over ``spread_s`` seconds back from now (or from ``start``), many sharing one."""
        if not self.activities:
            for name in ("Member needs survey 2026", "Conference feedback", "Pricing panel"):
                self.add_activity(name)
        while len(self.members) < members:
            i = len(self.members) + 1
            self.add_member(f"panelist{i}@example.org", f"Panel{i}", "Tester", CustomerID=f"C{100000 + i}")
        mids, aids = list(self.members), list(self.activities)
        start = start or dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=spread_s)
        out = []
        done = len(self.events)
        for i in range(done, done + count):
            # ten events share each timestamp: pages cut through runs of equal lastUpdateDate
            when = start + dt.timedelta(seconds=spread_s * ((i - done) // 10) / max(1, count // 10))
            kind = event_type or ("SurveyInvited", "SurveyStarted", "SurveyCompleted")[i % 3]
            out.append(self.add_event(mids[i % len(mids)], aids[i % len(aids)], kind, when))
        return out

    def update_event(self, eid: str, **changes) -> dict:
        ev = self.events[eid]
        ev.update(changes, lastUpdateDate=_iso(dt.datetime.now(dt.timezone.utc)))
        return ev

    def _when(self, text: str) -> dt.datetime:
        """An event's date parsed once (the fake filters and sorts every event on every request)."""
        t = self._dates.get(text)
        if t is None:
            t = self._dates[text] = parse_date(text, "date")
        return t

    # ------------------------------------------------------------------ auth
    def _unauthorized(self, message: str = "invalid or expired access token") -> web.Response:
        return web.json_response({"message": message}, status=401, headers={"WWW-Authenticate": 'Bearer'})

    def bearer_ok(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        token = auth[7:]
        return self.token_valid(token) and time.monotonic() < self.token_expiry.get(token, 0)

    async def handle_token(self, request: web.Request) -> web.Response:
        fault = await self.faults()
        if fault is not None:
            return fault
        form = await request.post()
        cid, secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return web.json_response({"error": "invalid_client"}, status=401)
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return web.json_response({"error": "invalid_client", "error_description": "x-api-key"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        if cid != self.client_id or secret != self.client_secret:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = self.issue_token()
        self.token_expiry[token] = time.monotonic() + self.token_ttl_s
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_ttl_s)})

    async def _api(self, request: web.Request) -> web.Response | None:
        """The checks every API call passes first: faults, bearer, application."""
        fault = await self.faults()
        if fault is not None:
            return fault
        if not self.bearer_ok(request):
            return self._unauthorized()
        if request.match_info["app"] != self.application:
            return web.json_response({"message": f"application {request.match_info['app']} not found"}, status=404)
        return None

    def _logged(self, request: web.Request, resp: web.Response, items: int = 0) -> web.Response:
        self.api_requests.append({"path": request.path, "query": dict(request.query), "status": resp.status,
                                  "at": time.time()})
        self.log(resp.status, items)
        return resp

    # ------------------------------------------------------------------ collections
    async def handle_memberevents(self, request: web.Request) -> web.Response:
        refused = await self._api(request)
        if refused is not None:
            return self._logged(request, refused)
        q = request.query
        try:
            limit = int(q.get("limit", "20"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            return self._logged(request, web.json_response({"message": "limit and offset are whole numbers"},
                                                           status=400))
        if not 1 <= limit <= 1000 or offset < 0:
            return self._logged(request, web.json_response({"message": "limit is 1 to 1000, offset 0 or more"},
                                                           status=400))
        rows = list(self.events.values())
        if "q" in q:
            m = _Q.match(q["q"])
            if not m:
                return self._logged(request, web.json_response({"message": f"cannot filter by {q['q']!r}"},
                                                               status=400))
            field_, op, value = m.groups()
            try:
                bound = parse_date(value, field_)
            except ValueError:
                return self._logged(request, web.json_response({"message": f"{value!r} is not a date"}, status=400))
            test = {">=": lambda a: a >= bound, "<=": lambda a: a <= bound, "=": lambda a: a == bound,
                    ">": lambda a: a > bound, "<": lambda a: a < bound}[op]
            rows = [r for r in rows if test(self._when(r[field_]))]
        for name in ("eventType", "memberId", "activityId"):
            if name in q:
                rows = [r for r in rows if r.get(name) == q[name]]
        sort = q.get("sort", "createDate")
        field_, _, direction = sort.partition(":")
        if field_ not in SORTABLE or direction not in ("", "d", "a"):
            return self._logged(request, web.json_response({"message": f"cannot sort by {sort!r}"}, status=400))
        rows.sort(key=lambda r: (self._when(r[field_]), r["id"]), reverse=direction == "d")
        page = rows[offset:offset + limit]
        base = f"{request.url.with_query(None)}"

        def link(rel: str, off: int) -> dict:
            return {"rel": rel, "href": f"{base}?{urlencode({**q, 'limit': limit, 'offset': off})}"}

        links = [link("first", 0), link("last", max(0, (len(rows) - 1) // limit * limit))]
        if offset > 0:
            links.append(link("prev", max(0, offset - limit)))
        if offset + limit < len(rows):
            links.append(link("next", offset + limit))
        body = {"items": page, "links": links, "meta": {"limit": limit, "offset": offset, "count": len(rows)}}
        return self._logged(request, web.json_response(body), len(page))

    async def _exposed(self, request: web.Request) -> tuple[web.Response | None, dict | None, str]:
        """An activity call's checks: the API's, then whether the activity exists and is exposed; its href."""
        refused = await self._api(request)
        if refused is not None:
            return self._logged(request, refused), None, ""
        aid = request.match_info["id"]
        act = self.activities.get(aid)
        if act is None or aid in self.hidden:
            return self._logged(request, web.json_response({"message": f"activity {aid} not found"},
                                                           status=404)), None, ""
        return None, act, f"https://api.{self.region}.alida.com/c/services/api/v1/tenants/{act['panelId']}/activities/{aid}"

    async def handle_activity(self, request: web.Request) -> web.Response:
        refused, act, href = await self._exposed(request)
        if refused is not None:
            return refused
        full = {**act, "href": href, "links": [{"rel": "summary", "href": f"{href}/summary"}]}
        fields = request.query.get("fields")
        if fields:
            wanted = [f.strip() for f in fields.split(",") if f.strip()]
            unknown = [f for f in wanted if f not in full]
            if unknown:
                return self._logged(request, web.json_response({"message": f"unknown field(s) {', '.join(unknown)}"},
                                                               status=400))
            full = {k: full[k] for k in wanted}
        return self._logged(request, web.json_response(full))

    async def handle_summary(self, request: web.Request) -> web.Response:
        refused, act, href = await self._exposed(request)
        if refused is not None:
            return refused
        aid = act["id"]
        counts: dict[str, int] = {}
        for ev in self.events.values():
            if ev["activityId"] == aid:
                key = ev["eventType"][0].lower() + ev["eventType"][1:]
                counts[key] = counts.get(key, 0) + 1
        return self._logged(request, web.json_response({
            "distributionStatus": "Open" if act["status"] == "open" else "Closed", "memberEvents": counts,
            "createDate": act["createDate"], "lastUpdateDate": act["lastUpdateDate"], "createdBy": "fake",
            "lastUpdatedBy": "fake", "links": [], "href": f"{href}/summary"}))

    async def handle_member(self, request: web.Request) -> web.Response:
        refused = await self._api(request)
        if refused is not None:
            return self._logged(request, refused)
        m = self.members.get(request.match_info["id"])
        if m is None:
            return self._logged(request, web.json_response({"message": "member not found"}, status=404))
        return self._logged(request, web.json_response(m))

    # ------------------------------------------------------------------ control
    async def handle_add_events(self, request: web.Request) -> web.Response:
        spec = await request.json()
        kind = spec.get("type")
        if kind is not None and kind not in EVENT_TYPES:
            return web.json_response({"message": f"type: one of {', '.join(EVENT_TYPES)}"}, status=400)
        added = self.seed(int(spec.get("count", 1)), int(spec.get("members", 50)), kind)
        return web.json_response({"added": len(added), "ids": [e["id"] for e in added]})

    async def handle_update(self, request: web.Request) -> web.Response:
        spec = await request.json()
        return web.json_response({"updated": [self.update_event(i)["id"] for i in spec.get("ids", [])
                                              if i in self.events]})

    def stats(self) -> dict:
        return {**super().stats(), "events": len(self.events), "members": len(self.members)}

    def listing(self) -> list:
        return list(self.events.values())

    trickle_s = 0.0

    async def _trickle(self, app) -> None:
        async def add() -> None:
            while True:
                await asyncio.sleep(self.trickle_s)
                self.seed(1, max(1, len(self.members)))

        task = asyncio.create_task(add()) if self.trickle_s > 0 else None
        yield
        if task is not None:
            task.cancel()

    def app(self) -> web.Application:
        app = web.Application()
        app.cleanup_ctx.append(self._trickle)
        app.router.add_post("/oauth2/token", self.handle_token)
        base = "/v1/applications/{app}"
        app.router.add_get(f"{base}/memberevents", self.handle_memberevents)
        app.router.add_get(f"{base}/activities/{{id}}", self.handle_activity)
        app.router.add_get(f"{base}/activities/{{id}}/summary", self.handle_summary)
        app.router.add_get(f"{base}/members/{{id}}", self.handle_member)
        app.router.add_post("/_events", self.handle_add_events)
        app.router.add_post("/_update", self.handle_update)
        self.listing_routes(app)
        return app


def main() -> None:
    def extra(ap) -> None:
        ap.add_argument("--region", default="na1", choices=("na1", "eu1"))
        ap.add_argument("--application", default="demo-community", help="the communityApiKeyName it serves")
        ap.add_argument("--seed", type=int, default=0, help="member events to start with")
        ap.add_argument("--members", type=int, default=50, help="members the seeded events are of")
        ap.add_argument("--every-s", type=float, default=0, help="add a member event this often (0: never)")

    def make(args):
        import os

        fake = AlidaFake(args.region, args.application,
                         client_secret=os.environ.get("ALIDA_CLIENT_SECRET", "alida-fake-secret"))
        if args.seed:
            fake.seed(args.seed, members=args.members, spread_s=3600)
        fake.trickle_s = args.every_s
        return fake

    fake_main("sources.alida.fake", "A fake Alida API (member events, activities, members)", 8095, make,
              "fake Alida API on {base_url}", extra=extra)


if __name__ == "__main__":
    main()
