"""Action Network people as change records of the Action Network ↔ Mobile Commons sync.

``GET {url}/people?filter=modified_date gt '…'&page=N&per_page=25`` with the ``OSDI-API-Token``
header (https://actionnetwork.org/docs/v2/people): ``_embedded["osdi:people"]``, 25 a page; the
collection carries no totals, is not in modification order, and a ``next`` link is on every page up
to the last one included, so pages are read until one comes back empty. The cursor moves once a run
is through (``ordered = False``); meanwhile the people sent are remembered, so a restart sends none
twice. Each person goes to ``anmc.changes`` keyed by mobile number (``an:<id>`` without one), where
the sync's stream stage (:mod:`streams.anmc`) applies its rules. A 401's body echoes the key: it is
cut out of every message.
"""

from __future__ import annotations

import datetime as dt

from core.anmc import an_id_of, mobile

from ..framework import AuthRefused, Page, SourceError
from ..syncchanges import SyncChangeSource
from .settings import ActionNetworkSourceSettings


class ActionNetworkSource(SyncChangeSource):
    """Action Network people modified since the last run less 48 hours (for an anmc sync)."""

    kind = "actionnetwork"
    side = "action_network"
    Settings = ActionNetworkSourceSettings
    settings: ActionNetworkSourceSettings

    async def start(self) -> None:
        await super().start()
        self._key = self.settings.secret("api_token")
        self.headers = {"OSDI-API-Token": self._key}

    async def pages(self, since: dt.datetime):
        page = 1
        stamp = since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        while True:
            try:
                body = await self.http.get_json(f"{self.settings.url}/people", headers=self.headers, auth=False,
                                                params={"filter": f"modified_date gt '{stamp}'", "page": str(page),
                                                        "per_page": str(self.settings.page_size)})
            except SourceError as exc:
                if self._key and self._key in str(exc):
                    raise type(exc)(str(exc).replace(self._key, "[redacted]"), exc.status, exc.retry_after) from None
                raise
            people = ((body or {}).get("_embedded") or {}).get("osdi:people")
            if not isinstance(people, list):
                raise AuthRefused("people answered without _embedded osdi:people")
            yield Page(people, last=not people)
            if not people:
                return
            page += 1

    def position(self, person: dict) -> tuple[str, str] | None:
        pid, modified = an_id_of(person), person.get("modified_date")
        if not pid or not isinstance(modified, str):
            return None
        return modified, pid

    def number(self, person: dict) -> str | None:
        return next((mobile(n.get("number")) for n in person.get("phone_numbers") or [] if n.get("number")), None)


SOURCE = ActionNetworkSource
