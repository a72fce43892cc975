"""A fake RAMCO AMS API v2: form posts, the response code in the JSON body, entities stored.

Follows the RAMCO API v2 documentation ("API Guide": "Making requests", "CreateEntity",
"GetEntities", "Response codes", "String delimiters") and what the public client pyramco sends:

- ``POST /api/v2/`` form: ``Key``, ``Operation`` (``CreateEntity``, ``GetEntities``,
  ``GetEntity``, ``GetEntityTypes``), ``Entity``, ``AttributeValues``, ``StringDelimiter``
  (default ``#``), ``Filter`` (``name<eq>#value#``, joined with `` AND ``; the parameter's name as
  pyramco's ``get_entities`` sends it), ``Attributes``. A parameter the API does not know (say
  ``Filters``) is ignored, as a real server ignores it: ``GetEntities`` then answers every row.
- answers JSON ``{"ResponseCode", "ResponseText", "Data"}``, **HTTP 200 whatever the code** (the
  code is in the body): 200 with data, 204 no data, 400 a malformed request (an attribute string
  that does not parse, an unknown attribute, a missing required one), 401 a wrong key, 404 no
  such entity, 422 a refused value (an unknown contact), 500 a server error.
- ``AttributeValues`` strings sit between the delimiter; ``Iw==`` inside a ``#``-delimited value
  is a literal ``#`` (pyramco's escape).
- Rate limits are not documented; the shared throttle answers HTTP 429 + Retry-After with
  ``ResponseCode: 429`` in the body.

    python -m sinks.providers.ramco.fake [--port 8090]   (the key from ACTIVITY_SYNC_RAMCO_KEY)
"""

from __future__ import annotations

import os
import uuid

from aiohttp import web

from core.fakes import FaultyFake, fake_main

from . import wire

REQUIRED = ("cobalt_ContactId", "cobalt_ActivityDate")


class FakeRamco(FaultyFake):
    path = "/api/v2/"

    def __init__(self, key: str = "", entity: str = "cobalt_communityactivity",
                 attributes: tuple[str, ...] | None = None) -> None:
        self.key, self.entity = key, entity
        from .settings import ACTIVITY_FIELDS
        self.attributes = set(attributes or (*ACTIVITY_FIELDS, "cobalt_ActivityKey", "cobalt_Source",
                                             "cobalt_Details"))
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.records: dict[str, dict] = {}
        self.forms: list[dict] = []    # CreateEntity posts
        self.lookups: list[dict] = []  # GetEntities posts
        self.queries = 0

    def stored_keys(self) -> list[str]:
        return [r.get("cobalt_ActivityKey", "") for r in self.records.values()]

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.records), "queries": self.queries}

    def reply(self, code: int, text: str, data=None, status: int = 200, headers=None) -> web.Response:
        body = {"ResponseCode": code, "ResponseText": text}
        if data is not None:
            body["Data"] = data
        return web.json_response(body, status=status, headers=headers)

    def fault_response(self, status: int) -> web.Response:
        return self.reply(500, "Server Error", status=status if status != 500 else 200)

    def throttle_response(self, retry_after: float) -> web.Response:
        return self.reply(429, "Too Many Requests", status=429, headers={"Retry-After": f"{retry_after:g}"})

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        if not self.key or form.get("Key") != self.key:
            return self.reply(401, "Unauthorized: invalid API key")
        op = form.get("Operation")
        if op == "GetEntities":
            self.queries += 1
            self.lookups.append(form)
            return self.get_entities(form)
        if op == "GetEntityTypes":
            return self.reply(200, "OK", [{"Name": self.entity}])
        if op != "CreateEntity":
            return self.reply(400, f"Unknown operation {op!r}")
        fault = await self.faults()
        if fault is not None:
            self.log(fault.status)
            return fault
        self.forms.append(form)
        if form.get("Entity") != self.entity:
            self.log(404, 1)
            return self.reply(404, f"Entity {form.get('Entity')!r} not found")
        try:
            values = wire.decode(form.get("AttributeValues", ""), form.get("StringDelimiter") or "#")
        except ValueError as exc:
            self.log(400, 1)
            return self.reply(400, f"Bad Request: AttributeValues: {exc}")
        unknown = sorted(set(values) - self.attributes)
        missing = [a for a in REQUIRED if not values.get(a)]
        if unknown or missing:
            self.log(400, 1)
            return self.reply(400, f"Bad Request: unknown attribute(s) {unknown}" if unknown
                              else f"Bad Request: required attribute(s) missing {missing}")
        if values["cobalt_ContactId"] in self.reject_customers:
            self.log(422, 1)
            return self.reply(422, f"Invalid value for cobalt_ContactId: {values['cobalt_ContactId']}")
        guid = str(uuid.uuid4())
        self.records[guid] = values
        self.log(200, 1)
        return self.reply(200, "OK", guid)

    def get_entities(self, form: dict) -> web.Response:
        d = form.get("StringDelimiter") or "#"
        rows = list(self.records.items())
        for cond in filter(None, (form.get("Filter") or "").split(" AND ")):
            name, sep, value = cond.partition("<eq>")
            if not sep:
                return self.reply(400, f"Bad Request: filter {cond!r}")
            value = value.strip()
            value = value[len(d):-len(d)] if value.startswith(d) and value.endswith(d) else value
            rows = [(g, r) for g, r in rows if str(r.get(name.strip())) == value]
        if not rows:
            return self.reply(204, "OK - No Data")
        return self.reply(200, "OK", [{"Guid": g, **r} for g, r in rows])

    def listing(self) -> list:
        return list(self.records.values())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/api/v2/", self.handle)
        self.listing_routes(app)
        return app


def main() -> None:
    fake_main("sinks.providers.ramco.fake", "A fake RAMCO API v2 (the key from ACTIVITY_SYNC_RAMCO_KEY)", 8090,
              lambda a: FakeRamco(os.environ.get("ACTIVITY_SYNC_RAMCO_KEY", "")), "fake RAMCO API on {base_url}/api/v2/")


if __name__ == "__main__":
    main()
