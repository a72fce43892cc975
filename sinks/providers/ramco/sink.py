"""RAMCO AMS sink: one ``CreateEntity`` form post per activity, with a duplicate guard.

Follows the RAMCO API v2 documentation (RAMCO "API Guide": "Making requests", "CreateEntity",
"GetEntities", "Response codes", "String delimiters"):

- every call is ``POST https://api.ramcoams.com/api/v2/`` with form fields ``Key`` (the API key),
  ``Operation``, ``Entity``, ``AttributeValues`` and ``StringDelimiter``; the answer is JSON
  ``{"ResponseCode", "ResponseText", "Data"}`` and **the code in the body decides**, whatever the
  HTTP status: 200/204/206 success; 400, 404 and 422 the record's own refusal (dead-lettered);
  401 the key was refused (retriable: the activities wait while the operator fixes the key);
  500 server error (retriable). A 429 (HTTP or body) with Retry-After holds the endpoint back.
- ``AttributeValues`` is ``name=#text#,num=5``: :mod:`.wire` picks a delimiter no value contains
  and names it in ``StringDelimiter``, falling back to ``#`` with ``Iw==`` for a literal ``#``.
- no batch operation and no upsert: one request per activity (:class:`sinks.http.PerRecordSink`),
  and before it a ``GetEntities`` with ``Filter=key_attribute<eq>#ActivityKey#`` skips an activity
  already written (``duplicate_guard``).
"""

from __future__ import annotations

from sinks import mapping
from sinks.contract import Delivery, FatalError, RetriableError, SinkError, Throttled
from sinks.http import HttpResponse, PerRecordSink, classify_http, parse_retry_after

from . import wire

OK = {200, 204, 206}
RECORD_ERRORS = {400, 404, 422}


class RamcoSink(PerRecordSink):
    provider = "ramco"
    member_noun = "RAMCO contact"

    async def setup(self) -> None:
        self._key = self.ctx.settings.secret("api_key")


    def classify(self, resp: HttpResponse) -> SinkError | None:
        body = resp.json()
        if not isinstance(body, dict) or "ResponseCode" not in body:
            return classify_http(resp.status, resp.text[:200], resp.headers.get("Retry-After")) or \
                RetriableError(f"RAMCO answered HTTP {resp.status} without a ResponseCode")
        code = int(body.get("ResponseCode") or 0)
        if code in OK:
            return None
        text = f"RAMCO {code}: {body.get('ResponseText') or body.get('ErrorMessage') or ''}"[:400]
        if code == 429 or resp.status == 429:
            return Throttled(text, status=429, retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if code == 401:
            return RetriableError(text, status=401)
        if code in RECORD_ERRORS:
            return FatalError(text, status=code)
        return RetriableError(text, status=code, retry_after=parse_retry_after(resp.headers.get("Retry-After")))

    async def post(self, form: dict) -> dict:
        resp = await self.request("POST", self.ctx.settings.url, data={"Key": self._key, **form})
        return resp.json(default={})

    async def already_written(self, d: Delivery) -> bool:
        s = self.ctx.settings
        delimiter = wire.choose_delimiter([d.activity_key])
        body = await self.post({"Operation": "GetEntities", "Entity": s.entity, "Attributes": s.key_attribute,
                                "Filter": f"{s.key_attribute}<eq>{delimiter}{d.activity_key}{delimiter}",
                                "StringDelimiter": delimiter})
        rows = body.get("Data") if body.get("ResponseCode") == 200 else None
        # Written already only if a row returned carries this very key: a server that ignored the
        # filter (or matched loosely) must not make a new activity look delivered.
        return isinstance(rows, list) and any(isinstance(r, dict) and str(r.get(s.key_attribute)) == d.activity_key
                                              for r in rows)

    async def write_one(self, d: Delivery) -> None:
        s = self.ctx.settings
        values = mapping.apply(s.fields, s.constants, d)
        if s.duplicate_guard:
            values[s.key_attribute] = d.activity_key
        delimiter = wire.choose_delimiter(values.values())
        await self.post({"Operation": "CreateEntity", "Entity": s.entity,
                         "AttributeValues": wire.encode(values, delimiter), "StringDelimiter": delimiter})
