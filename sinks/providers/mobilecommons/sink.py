"""Mobile Commons sink: ``AnmcProfileUpdate`` (the Action Network ↔ Mobile Commons sync, :mod:`core.anmc`)
is one ``POST {url}/profile_update`` form with the parameters the sync made: the phone number, the
mapped profile fields, ``constituent_id`` (the Action Network id) and, for a new subscriber,
``opt_in_path_id`` (its welcome message is Mobile Commons' to send, once per campaign).

Answers are XML and failures are in the body of an HTTP 200: ``<response success="false"><error
id="5" message="Invalid phone number"/></response>``. An invalid phone number (5) or a missing one
(4) is the record's own, permanent: dead-lettered with the vendor's message. Any other body error is
retried. HTTP Basic (login, password) or Bearer (Upland Credential Manager).
"""

from __future__ import annotations

import json
from xml.etree import ElementTree

from core.anmc import MC_UPDATE
from core.http import bearer_or_basic
from sinks.contract import Delivery, FatalError, MappingError, RetriableError, SinkError
from sinks.http import HttpResponse, PerRecordSink, classify_http

PERMANENT = {"4", "5"}  # phone number required / invalid


def body_error(text: str) -> tuple[str, str] | None:
    """``(id, message)`` of an XML answer's ``<error>``, when ``success`` is not true."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return ("parse", "an answer that is not XML")
    if root.tag == "response" and root.get("success") == "true":
        return None
    err = root.find("error")
    return (err.get("id", "?"), err.get("message", "")) if err is not None else ("?", "success is not true")


class MobileCommonsSink(PerRecordSink):
    provider = "mobilecommons"
    member_noun = None

    async def setup(self) -> None:
        s = self.ctx.settings
        token = s.secret("token")
        self.headers = bearer_or_basic(token, s.login, None if token else s.secret("password"))

    def classify(self, resp: HttpResponse) -> SinkError | None:
        error = classify_http(resp.status, resp.text[:300], resp.headers.get("Retry-After"))
        if error is not None:
            return error
        found = body_error(resp.text)
        if found is None:
            return None
        eid, message = found
        text = f"Mobile Commons error {eid}: {message}"
        return FatalError(text, status=resp.status) if eid in PERMANENT else RetriableError(text, status=resp.status)

    async def write_one(self, d: Delivery) -> None:
        if d.activity_code != MC_UPDATE:
            raise MappingError(f"{d.activity_code}: the Mobile Commons provider writes {MC_UPDATE}")
        try:
            params = json.loads(json.loads(d.details_json or "{}").get("SyncFields") or "")
        except ValueError:
            raise MappingError("no SyncFields: not an activity of the Action Network <-> Mobile Commons sync") from None
        if self.ctx.settings.company:
            params["company"] = self.ctx.settings.company
        await self.request("POST", f"{self.ctx.settings.url}/profile_update",
                           data={k: str(v) for k, v in params.items() if v is not None}, headers=self.headers)
