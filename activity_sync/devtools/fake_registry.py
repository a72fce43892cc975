"""A fake Confluent Schema Registry: the calls the Avro codec makes, as the real API answers them.

Follows Confluent's "Schema Registry API Reference" (docs.confluent.io, schema-registry/develop/api):
``POST /subjects/{subject}/versions`` with ``{"schema": "<json text>"}`` answers ``{"id": N}``
(the same schema gets the same id, under any subject); an unparseable schema answers 422 with
``{"error_code": 42201}``. ``GET /schemas/ids/{id}`` answers ``{"schema": "<json text>"}``, or 404
with ``{"error_code": 40403, "message": "Schema not found"}``. Content type
``application/vnd.schemaregistry.v1+json``. Used by tests; nothing here is Kafka.
"""

from __future__ import annotations

import json

import fastavro
from aiohttp import web

from core.fakes import FakeServer

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class FakeSchemaRegistry(FakeServer):
    path = ""

    def __init__(self) -> None:
        self.schemas: list[str] = []              # id - 1 -> canonical schema text
        self.subjects: dict[str, list[int]] = {}  # subject -> schema ids by version

    def _json(self, body: dict, status: int = 200) -> web.Response:
        return web.Response(text=json.dumps(body), status=status, content_type=CONTENT_TYPE)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/subjects/{subject}/versions", self.register)
        app.router.add_get("/schemas/ids/{id}", self.schema)
        return app

    async def register(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            text = json.dumps(json.loads(body["schema"]), sort_keys=True)
            fastavro.parse_schema(json.loads(text))
        except Exception as exc:  # noqa: BLE001 - the registry's own answer to a bad schema
            return self._json({"error_code": 42201, "message": f"Invalid schema: {exc}"}, 422)
        if text not in self.schemas:
            self.schemas.append(text)
        sid = self.schemas.index(text) + 1
        versions = self.subjects.setdefault(request.match_info["subject"], [])
        if sid not in versions:
            versions.append(sid)
        return self._json({"id": sid})

    async def schema(self, request: web.Request) -> web.Response:
        sid = int(request.match_info["id"])
        if not 1 <= sid <= len(self.schemas):
            return self._json({"error_code": 40403, "message": "Schema not found"}, 404)
        return self._json({"schema": self.schemas[sid - 1]})
