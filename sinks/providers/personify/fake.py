"""A fake Personify Data Services (PDS): HTTP Basic, ``Create`` template and ``Save`` of an entity.

Follows Personify's "Personify Data Services" developer documentation (WCF Data Services at
``/PersonifyDataServices/PersonifyData.svc``, OData V2 JSON ``{"d": …}``, HTTP Basic):

- ``GET /Create?EntityName='CusActivity'`` answers the entity's empty template: every property
  with its default, ``__metadata.type``, and a zero key (``ActivityId: 0``).
- ``POST /Save?EntityName='CusActivity'`` takes the filled entity; ``MasterCustomerId``,
  ``SubCustomerId``, ``ActivityCode`` and ``ActivityDate`` are required, a property the template
  does not have is refused, an unknown customer is refused; answers 201 ``{"d": entity}`` with its
  new ``ActivityId``. Errors are OData's ``{"error": {"code", "message": {"lang", "value"}}}``,
  400; a wrong user or password 401 with ``WWW-Authenticate: Basic``.
- Limits are not documented; the shared throttle answers 429 + Retry-After.

    python -m sinks.providers.personify.fake [--port 8092]  (the password from ACTIVITY_SYNC_PERSONIFY_PASSWORD)
"""

from __future__ import annotations

import base64
import os

from aiohttp import web

from core.fakes import FaultyFake, fake_main

PATH = "/PersonifyDataServices/PersonifyData.svc"
TEMPLATE = {"ActivityId": 0, "MasterCustomerId": "", "SubCustomerId": 0, "ActivityCode": "", "ActivitySubcode": "",
            "ActivityDate": None, "ActivityText": "", "CallTopicCode": "", "CallTypeCode": "", "Priority": "MEDIUM",
            "StaffUserId": "", "ActivityKey": ""}


def odata_error(status: int, message: str, code: str = "") -> web.Response:
    return web.json_response({"error": {"code": code, "message": {"lang": "en-US", "value": message}}}, status=status)


class FakePersonify(FaultyFake):
    path = PATH

    def __init__(self, username: str = "activity-sync", password: str = "") -> None:
        self.username, self.password = username, password
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.records: dict[int, dict] = {}
        self.bodies: list[dict] = []
        self.templates = 0
        self.next_id = 70000

    def stored_keys(self) -> list[str]:
        return [r.get("ActivityKey", "") for r in self.records.values()]

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.records), "templates": self.templates}

    def authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False
        return bool(self.password) and user == self.username and pw == self.password

    def denied(self) -> web.Response:
        return web.json_response({"error": {"code": "", "message": {"lang": "en-US", "value": "Unauthorized"}}},
                                 status=401, headers={"WWW-Authenticate": 'Basic realm="PersonifyDataServices"'})

    @staticmethod
    def entity_name(request: web.Request) -> str:
        return request.query.get("EntityName", "").strip("'")

    async def handle_create(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return self.denied()
        if self.entity_name(request) != "CusActivity":
            return odata_error(404, f"Entity {self.entity_name(request)!r} not found")
        self.templates += 1
        return web.json_response({"d": {"__metadata": {"type": "PersonifyDataServices.CusActivity"}, **TEMPLATE}})

    async def handle_save(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            self.log(401)
            return self.denied()
        answer, body = await self.fault_or_json(request, {"error": {"code": "", "message": {"lang": "en-US", "value": "Error processing request stream. The request should be a valid JSON."}}})
        if answer is not None:
            return answer
        self.bodies.append(body)
        if self.entity_name(request) != "CusActivity" or not isinstance(body, dict):
            self.log(404, 1)
            return odata_error(404, "Resource not found for the segment 'Save'.")
        unknown = sorted(set(body) - set(TEMPLATE) - {"__metadata"})
        if unknown:
            self.log(400, 1)
            return odata_error(400, f"The property '{unknown[0]}' does not exist on type 'CusActivity'.")
        missing = [k for k in ("MasterCustomerId", "ActivityCode", "ActivityDate") if not body.get(k)]
        if missing or not isinstance(body.get("SubCustomerId"), int):
            self.log(400, 1)
            return odata_error(400, f"Required: {', '.join(missing or ['SubCustomerId'])}", "VALIDATION")
        if body["MasterCustomerId"] in self.reject_customers:
            self.log(400, 1)
            return odata_error(400, f"Customer {body['MasterCustomerId']}-{body['SubCustomerId']} does not exist",
                               "VALIDATION")
        self.next_id += 1
        rec = {k: v for k, v in body.items() if k != "__metadata"}
        rec["ActivityId"] = self.next_id
        self.records[self.next_id] = rec
        self.log(201, 1)
        return web.json_response({"d": {"__metadata": {"type": "PersonifyDataServices.CusActivity"}, **rec}},
                                 status=201)

    def listing(self) -> list:
        return list(self.records.values())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get(PATH + "/Create", self.handle_create)
        app.router.add_post(PATH + "/Save", self.handle_save)
        self.listing_routes(app)
        return app


def main() -> None:
    fake_main("sinks.providers.personify.fake", "A fake Personify Data Services (the password from "
              "ACTIVITY_SYNC_PERSONIFY_PASSWORD)", 8092,
              lambda a: FakePersonify(a.username, os.environ.get("ACTIVITY_SYNC_PERSONIFY_PASSWORD", "")),
              "fake Personify Data Services on {base_url}" + PATH, username="activity-sync")


if __name__ == "__main__":
    main()
