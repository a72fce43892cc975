"""Action Network sink: what the Action Network ↔ Mobile Commons sync writes (:mod:`core.anmc`).

- ``AnmcPersonUpsert``: ``POST {url}/people/`` (the person signup helper, which matches by email and
  phone) with the body the sync made: a Mobile Commons opt-in becomes a person with mobile status
  subscribed, an opt-out sets it unsubscribed.
- ``AnmcPersonUpdate``: ``PUT {url}/people/{ActionNetworkId}``: the Mobile Commons identifier.

Header ``OSDI-API-Token``. A 401's body echoes the key ("API Key invalid or not present <key>"):
the key is cut out of every error message before it can reach a log line or a dead letter.
"""

from __future__ import annotations

import json

from core.anmc import AN_UPDATE, AN_UPSERT
from sinks.contract import Delivery, FatalError, MappingError, SinkError
from sinks.http import HttpResponse, PerRecordSink, classify_http


class ActionNetworkSink(PerRecordSink):
    provider = "actionnetwork"
    member_noun = None  # the sync names the person by number and Action Network id, not by customer ID

    async def setup(self) -> None:
        self._key = self.ctx.settings.secret("api_token")
        self.headers = {"OSDI-API-Token": self._key, "Content-Type": "application/json"}

    def redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text

    def classify(self, resp: HttpResponse) -> SinkError | None:
        error = classify_http(resp.status, self.redact(resp.text[:300]), resp.headers.get("Retry-After"))
        if error is None and resp.status == 200 and isinstance(resp.json(), dict) and "error" in resp.json():
            return FatalError(self.redact(f"Action Network: {resp.json()['error']}"), status=resp.status)
        return error

    async def write_one(self, d: Delivery) -> None:
        details = json.loads(d.details_json or "{}")
        try:
            body = json.loads(details.get("SyncFields") or "")
        except ValueError:
            raise MappingError("no SyncFields: not an activity of the Action Network <-> Mobile Commons sync") from None
        url = self.ctx.settings.url
        if d.activity_code == AN_UPSERT:
            await self.request("POST", f"{url}/people/", data=json.dumps(body), headers=self.headers)
        elif d.activity_code == AN_UPDATE:
            an_id = details.get("ActionNetworkId")
            if not an_id:
                raise MappingError("AnmcPersonUpdate without an ActionNetworkId")
            await self.request("PUT", f"{url}/people/{an_id}", data=json.dumps(body), headers=self.headers)
        else:
            raise MappingError(f"{d.activity_code}: the Action Network provider writes {AN_UPSERT} and {AN_UPDATE}")
