"""Mobile Commons profiles as change records of the Action Network ↔ Mobile Commons sync.

``GET {url}/profiles?from=…&to=…&limit=1000&page=N&include_subscriptions=true``
(http://www.mobilecommons.com/mobile-commons-api/rest/): XML, ``<profiles num="N">`` with N 0
past the end; an error is in the body (``<response success="false"><error …/>``). ``from``/``to``
bound the profiles' update time (the fake's reading of the documentation's "from/to"). HTTP Basic
or Bearer. Each profile goes to ``anmc.changes`` keyed by its mobile number.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from xml.etree import ElementTree

from core.anmc import mobile
from core.http import bearer_or_basic

from ..framework import Page, Refused, ServerError
from ..syncchanges import SyncChangeSource
from .settings import MobileCommonsSourceSettings


def mc_iso(text: str | None) -> str | None:
    """Mobile Commons' "2019-06-06 19:33:03 UTC" as ISO 8601 ("2019-06-06T19:33:03Z")."""
    if not text:
        return None
    t = text.strip()
    if t.endswith(" UTC"):
        return t[:-4].replace(" ", "T") + "Z"
    return t


def profile_of(el: ElementTree.Element) -> dict:
    def text(name):
        x = el.find(name)
        return x.text if x is not None and x.text else None

    address = el.find("address")
    p = {"id": el.get("id"), "phone_number": text("phone_number"), "email": text("email"),
         "first_name": text("first_name"), "last_name": text("last_name"), "status": text("status"),
         "created_at": mc_iso(text("created_at")), "updated_at": mc_iso(text("updated_at")),
         "opted_out_at": mc_iso(text("opted_out_at")),
         "custom_columns": {c.get("name"): c.text for c in el.findall("custom_columns/custom_column")},
         "subscriptions": [dict(s.attrib) for s in el.findall("subscriptions/subscription")]}
    if address is not None:
        for f in ("street1", "street2", "city", "state", "postal_code", "country"):
            x = address.find(f)
            p[f] = x.text if x is not None and x.text else None
    return p


class MobileCommonsSource(SyncChangeSource):
    """Mobile Commons profiles changed since the last poll (for an anmc sync)."""

    kind = "mobilecommons"
    side = "mobile_commons"
    Settings = MobileCommonsSourceSettings
    settings: MobileCommonsSourceSettings

    async def start(self) -> None:
        await super().start()
        s = self.settings
        token = s.secret("token")
        self.headers = bearer_or_basic(token, s.login, None if token else s.secret("password"))

    async def pages(self, since: dt.datetime):
        s = self.settings
        now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
        params = {"from": since.strftime("%Y-%m-%dT%H:%M:%SZ"), "to": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "limit": str(s.page_size), "include_subscriptions": "true"}
        if s.company:
            params["company"] = s.company
        page = 1
        while True:
            resp = await self.http.request("GET", f"{s.url}/profiles", headers=self.headers, auth=False,
                                           params={**params, "page": str(page)})
            try:
                root = ElementTree.fromstring(resp.text)
            except ElementTree.ParseError:
                raise ServerError(f"profiles answered HTTP {resp.status} with a body that is not XML") from None
            if root.get("success") != "true":
                err = root.find("error")
                raise Refused(f"Mobile Commons error {err.get('id') if err is not None else '?'}: "
                              f"{err.get('message') if err is not None else 'success is not true'}")
            profiles = [profile_of(el) for el in root.findall("profiles/profile")]
            yield Page(profiles, last=len(profiles) < s.page_size)
            if len(profiles) < s.page_size:
                return
            page += 1

    def position(self, profile: dict) -> tuple[str, str] | None:
        if not profile.get("id") or not profile.get("updated_at"):
            return None
        return profile["updated_at"], profile["id"]

    def version(self, profile: dict, position: tuple[str, str]) -> str:
        """Mobile Commons' update times are whole seconds: a STOP a second after a sign-up shares one."""
        digest = hashlib.sha256(json.dumps(profile, sort_keys=True).encode()).hexdigest()[:12]
        return f"{position[0]}#{digest}"

    def number(self, profile: dict) -> str | None:
        return mobile(profile.get("phone_number"))


SOURCE = MobileCommonsSource
