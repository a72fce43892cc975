"""A fake Aptify Services API: sign-in, the AptifyAuthorization token, GenericEntity AddData.

Follows the Aptify 6 Knowledge Base ("Authentication with Aptify Services API", "Generic Entity
Service", https://aptifykb.atlassian.net/wiki/spaces/A6PK/):

- ``GET /services/Authentication/Login/{Provider}?UserName=&Password=`` answers
  ``{"TokenId", "UserId", "Provider"}``; a wrong password answers 401 with ``{"Message"}``.
- every other call needs ``AptifyAuthorization: <Provider> <TokenId>``; **a missing, invalid or
  expired token is answered 404 Not Found** (as documented: to tell an unauthenticated caller
  nothing).
- ``POST /services/GenericEntity/AddData/-1`` with ``{"ID": -1, "EntityName", "EntityData":
  [{"Field", "Value"}]}`` answers the new record's ID (an integer). A field the entity does not
  have, a missing PersonID or ActivityDate, or an unknown person answers 400 ``{"Message"}``.
- Limits are not documented; the shared throttle answers 429 + Retry-After.

    python -m sinks.providers.aptify.fake [--port 8091]   (the password from ACTIVITY_SYNC_APTIFY_PASSWORD)
"""

from __future__ import annotations

import os

from aiohttp import web

from core.fakes import FaultyFake, fake_main

PREFIX = "/AptifyServicesAPI"


class FakeAptify(FaultyFake):
    path = PREFIX

    def __init__(self, username: str = "activity-sync", password: str = "", entity: str = "CommunityActivities",
                 fields: tuple[str, ...] | None = None) -> None:
        from .settings import ACTIVITY_FIELDS
        self.username, self.password, self.entity = username, password, entity
        self.fields = set(fields or (*ACTIVITY_FIELDS, "Source", "Details"))
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.records: dict[int, dict] = {}
        self.bodies: list[dict] = []
        self.next_id = 5000

    def stored_keys(self) -> list[str]:
        return [r.get("ActivityKey", "") for r in self.records.values()]

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.records)}

    async def handle_login(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("UserName") != self.username or not self.password or q.get("Password") != self.password:
            return web.json_response({"Message": "Invalid user name or password."}, status=401)
        return web.json_response({"TokenId": self.issue_token(), "UserId": 11,
                                  "Provider": request.match_info["provider"]})

    async def handle_add(self, request: web.Request) -> web.Response:
        auth = request.headers.get("AptifyAuthorization", "")
        provider, _, token = auth.partition(" ")
        if not provider or not self.token_valid(token):
            self.log(404)
            return web.Response(status=404, text="Not Found")
        answer, body = await self.fault_or_json(request, {"Message": "The request is invalid."})
        if answer is not None:
            return answer
        self.bodies.append(body)
        if not isinstance(body, dict) or body.get("EntityName") != self.entity or \
                not isinstance(body.get("EntityData"), list):
            self.log(400, 1)
            return web.json_response({"Message": f"Unknown entity {body.get('EntityName') if isinstance(body, dict) else None!r}"},
                                     status=400)
        values = {}
        for pair in body["EntityData"]:
            if not isinstance(pair, dict) or pair.get("Field") not in self.fields:
                self.log(400, 1)
                return web.json_response({"Message": f"Entity {self.entity} has no field "
                                                     f"{(pair or {}).get('Field')!r}"}, status=400)
            values[pair["Field"]] = pair.get("Value")
        missing = [f for f in ("PersonID", "ActivityDate") if not values.get(f)]
        if missing:
            self.log(400, 1)
            return web.json_response({"Message": f"Required field(s) missing: {', '.join(missing)}"}, status=400)
        if values["PersonID"] in self.reject_customers:
            self.log(400, 1)
            return web.json_response({"Message": f"PersonID {values['PersonID']} is not a valid Persons record"},
                                     status=400)
        self.next_id += 1
        self.records[self.next_id] = values
        self.log(200, 1)
        return web.json_response(self.next_id)

    def listing(self) -> list:
        return list(self.records.values())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get(PREFIX + "/services/Authentication/Login/{provider}", self.handle_login)
        app.router.add_post(PREFIX + "/services/GenericEntity/AddData/-1", self.handle_add)
        self.listing_routes(app)
        return app


def main() -> None:
    fake_main("sinks.providers.aptify.fake", "A fake Aptify Services API (the password from "
              "ACTIVITY_SYNC_APTIFY_PASSWORD)", 8091,
              lambda a: FakeAptify(a.username, os.environ.get("ACTIVITY_SYNC_APTIFY_PASSWORD", "")),
              "fake Aptify on {base_url}" + PREFIX, username="activity-sync")


if __name__ == "__main__":
    main()
