"""A fake iMIS site: the ASI REST API's token endpoint and the Activity generic entity.

Follows developer.imis.com ("iMIS REST API", "Authentication", "Generic entities", Activity):

- ``POST /token`` with ``grant_type=password`` (username, password) or ``grant_type=refresh_token``
  answers ``{access_token, token_type: "bearer", expires_in: 1199, refresh_token, userName}``
  (the OWIN token endpoint's shape); a wrong credential answers 400 ``{"error": "invalid_grant",
  "error_description": ...}``. An unknown or expired bearer token answers 401
  ``{"Message": "Authorization has been denied for this request."}`` (ASP.NET Web API).
- ``POST /api/Activity`` takes the generic-entity wrapper: the ``$type`` of the entity, of the
  property collection and of every property is required; typed values are ``{"$type",
  "$value"}``. The member is ``ID``, or ``PartyId`` (with ``PrimaryParentIdentity``); some clients
  leave out ``EntityTypeName``: both are accepted. ``ID``/``PartyId`` and ``ACTIVITY_TYPE`` are
  required; properties are the Activity table's columns, with its lengths (ACTIVITY_TYPE 10,
  PRODUCT_CODE 31, DESCRIPTION 255, SOURCE_CODE 40, UF_1..UF_7 255; the member ID's length is not
  checked, as sites differ); an unknown member ID is refused. A refusal is 400 ``{"Message": ...}``. The answer is 201 with the entity and its new
  SEQN in ``Identity.IdentityElements``. No upsert: the same body twice makes two rows.
- ``GET /api/Activity?PROPERTY=value`` is the documented query-string filter; it answers a
  ``PagedResult`` (``Items.$values``, ``Offset``, ``Limit``, ``Count``, ``TotalCount``, ``HasNext``).

Rate limits are not documented; the shared fault injection answers 429 + Retry-After. Faults,
``GET /_stats``, ``POST /_control`` and ``POST /_reset`` come from :class:`core.fakes.FaultyFake`;
``GET /activities`` lists the stored rows as plain JSON (tests, ``run``).

    python -m sinks.providers.imis.fake [--port 8088] [--username activity-sync]
        (the password is read from ACTIVITY_SYNC_IMIS_PASSWORD)
"""

from __future__ import annotations

import os

from aiohttp import web

from core.fakes import FaultyFake, fake_main

ASI = "Asi.Soa.Core.DataContracts.{}, Asi.Contracts"
COLUMNS = {"ID": None, "PartyId": None, "ACTIVITY_TYPE": 10, "TRANSACTION_DATE": None, "PRODUCT_CODE": 31,
           "DESCRIPTION": 255, "NOTE": None, "NOTE_2": None, "SOURCE_CODE": 40, "CATEGORY": 15,
           "UF_1": 255, "UF_2": 255, "UF_3": 255, "UF_4": 255, "UF_5": 255, "UF_6": 255, "UF_7": 255,
           "AMOUNT": None, "UNITS": None, "EFFECTIVE_DATE": None, "THRU_DATE": None, "OTHER_CODE": 255}
DENIED = {"Message": "Authorization has been denied for this request."}


class FakeImis(FaultyFake):
    path = "/api/Activity"

    def __init__(self, username: str = "activity-sync", password: str = "", refresh_tokens=()) -> None:
        self.username, self.password = username, password
        self.refresh_tokens = set(refresh_tokens)
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.rows: list[dict] = []
        self.bodies: list[dict] = []
        self.queries = 0
        self.next_seqn = 1000

    def stored_keys(self, key_property: str = "UF_7") -> list[str]:
        return [r[key_property] for r in self.rows if r.get(key_property)]

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.rows), "queries": self.queries}

    def authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.lower().startswith("bearer ") and self.token_valid(auth[7:])

    async def handle_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = form.get("grant_type")
        if grant == "password" and form.get("username") == self.username and self.password \
                and form.get("password") == self.password:
            pass
        elif grant == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            pass
        else:
            return web.json_response({"error": "invalid_grant",
                                      "error_description": "The user name or password is incorrect."}, status=400)
        refresh = self.issue_token()
        self.refresh_tokens.add(refresh)
        self.token_requests -= 1  # the refresh token is not a sign-in
        return web.json_response({"access_token": self.issue_token(), "token_type": "bearer", "expires_in": 1199,
                                  "refresh_token": refresh, "userName": self.username})

    async def handle_query(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return web.json_response(DENIED, status=401)
        self.queries += 1
        items = [r for r in self.rows if all(str(r.get(k)) == v for k, v in request.query.items()
                                             if k not in ("limit", "offset"))]
        return web.json_response({"$type": ASI.format("PagedResult"),
                                  "Items": {"$type": ASI.format("GenericEntityDataCollection"),
                                            "$values": [self.entity(r) for r in items[:100]]},
                                  "Offset": 0, "Limit": 100, "Count": min(100, len(items)),
                                  "TotalCount": len(items), "HasNext": len(items) > 100})

    async def handle_create(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            self.log(401)
            return web.json_response(DENIED, status=401)
        answer, body = await self.fault_or_json(request, {"Message": "The request is invalid."})
        if answer is not None:
            return answer
        self.bodies.append(body)
        row, problem = self.parse(body)
        if problem:
            self.log(400, 1)
            return web.json_response({"Message": problem}, status=400)
        self.next_seqn += 1
        row["SEQN"] = self.next_seqn
        self.rows.append(row)
        self.log(201, 1)
        return web.json_response(self.entity(row), status=201)

    def parse(self, body) -> tuple[dict, str | None]:
        if not isinstance(body, dict) or body.get("$type") != ASI.format("GenericEntityData"):
            return {}, "$type must be Asi.Soa.Core.DataContracts.GenericEntityData, Asi.Contracts"
        if body.get("EntityTypeName", "Activity") != "Activity":
            return {}, f"EntityTypeName {body.get('EntityTypeName')!r} does not match /api/Activity"
        props = body.get("Properties") or {}
        if props.get("$type") != ASI.format("GenericPropertyDataCollection") or \
                not isinstance(props.get("$values"), list):
            return {}, "Properties must be a GenericPropertyDataCollection with $values"
        row: dict = {}
        for p in props["$values"]:
            if not isinstance(p, dict) or p.get("$type") != ASI.format("GenericPropertyData"):
                return {}, "every property needs $type Asi.Soa.Core.DataContracts.GenericPropertyData"
            name, value = p.get("Name"), p.get("Value")
            if isinstance(value, dict):
                if "$type" not in value or "$value" not in value:
                    return {}, f"property {name}: a typed value needs $type and $value"
                value = value["$value"]
            if name not in COLUMNS:
                return {}, f"Activity has no property {name!r}"
            limit = COLUMNS[name]
            if limit and isinstance(value, str) and len(value) > limit:
                return {}, f"{name} is longer than {limit} characters"
            row[name] = value
        member = row.get("ID") or row.get("PartyId")
        if row.get("PartyId") and not body.get("PrimaryParentIdentity"):
            return {}, "PartyId needs PrimaryParentIdentity"
        if not member:
            return {}, "ID is required"
        if not row.get("ACTIVITY_TYPE"):
            return {}, "ACTIVITY_TYPE is required"
        if member in self.reject_customers:
            return {}, f"'{member}' is not a valid iMIS ID"
        row["ID"] = member
        return row, None

    @staticmethod
    def entity(row: dict) -> dict:
        return {"$type": ASI.format("GenericEntityData"), "EntityTypeName": "Activity",
                "PrimaryParentEntityTypeName": "Party",
                "Identity": {"$type": ASI.format("IdentityData"), "EntityTypeName": "Activity",
                             "IdentityElements": {"$type": "System.Collections.ObjectModel.Collection`1"
                                                           "[[System.String, mscorlib]], mscorlib",
                                                  "$values": [str(row.get("SEQN"))]}},
                "Properties": {"$type": ASI.format("GenericPropertyDataCollection"),
                               "$values": [{"$type": ASI.format("GenericPropertyData"), "Name": k, "Value": v}
                                           for k, v in row.items()]}}

    def listing(self) -> list:
        return self.rows

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/token", self.handle_token)
        app.router.add_post("/api/Activity", self.handle_create)
        app.router.add_get("/api/Activity", self.handle_query)
        self.listing_routes(app)
        return app


def main() -> None:
    fake_main("sinks.providers.imis.fake", "A fake iMIS REST API (the password from ACTIVITY_SYNC_IMIS_PASSWORD)",
              8088, lambda a: FakeImis(a.username, os.environ.get("ACTIVITY_SYNC_IMIS_PASSWORD", "")),
              "fake iMIS on {base_url}/ (POST /token, POST /api/Activity)", username="activity-sync")


if __name__ == "__main__":
    main()
