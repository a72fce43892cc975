"""Alida member events as raw activities.

What is polled (Alida API, ``../shared/seeds/alida-activities-api.txt``; collection conventions at
https://insightcommunity.help.alida.com/api_sng/create_api/collection.html):

- ``POST /oauth2/token``: the client-credentials grant, the client authenticated with HTTP Basic
  (client id and secret) plus an ``x-api-key`` header when one is configured; the bearer is renewed
  before ``expires_in`` and once after a 401 (:class:`core.http.TokenCache`).
- ``GET /v1/applications/{communityApiKeyName}/memberevents?q=lastUpdateDate>="…"&sort=lastUpdateDate&limit=&offset=``:
  the envelope ``{items, links: [{href, rel}], meta: {limit, offset, count}}``. Pages are read by
  keyset, not by deep offsets: each request starts at the last page's newest ``lastUpdateDate``
  (offset only within records sharing that time), so an event that is updated while a poll pages
  (and so moves to the end of the sort) never shifts a later event out of the poll.
- ``GET /v1/applications/{name}/activities/{activityId}?fields=…``: each activity once (cached):
  name, type, project type, status and its ``href`` (the ``/c/services/api/v1/tenants/{panelId}/…``
  form), the activity's link. Some activities are not exposed by the API (404): their events still
  flow, without the activity's name.
- ``GET /v1/applications/{name}/members/{memberId}`` (with ``member_lookup``): each member once
  (cached): e-mail, first and last name, and the member variable ``customer_id_variable`` names.
  **Assumption**: the member endpoint's shape is not in the stored documentation (it names
  ``/members/{memberId}/activities``); the fake serves ``{id, email, firstName, lastName, variables}``.

Each member event becomes one activity ``Alida<eventType>`` (category Insight Communities), keyed
``alida:<tenant>:<community>:<member event id>``: the same event updated later (its
``lastUpdateDate`` moves) is sent again with the same ActivityKey, and a CRM's idempotent upsert
updates its record. Records that cannot become an activity go to ``activity.dead`` with
``error.class`` one of ``MissingField`` (no id, memberId, eventType or date), ``BadDate`` (a date
that is not ISO 8601) or ``UnknownEventType`` (a type this version does not know).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import OrderedDict

from core.envelope import parse_date
from core.http import TokenCache, client_credentials

from ..framework import BadRecord, Page, PollingSource, ServerError, when
from .settings import EVENT_TYPES, AlidaSettings

ACTIVITY_FIELDS = "id,name,activityType,projectType,status,panelId,projectId,openedOn,closedOn,href"

#: the description each event type gets: "{member} {verb} "{activity}""
VERBS = {
    "SurveyInvited": "was invited to", "SurveyReminded": "was reminded about", "SurveyStarted": "started",
    "SurveyCompleted": "completed", "ScreenedOut": "was screened out of", "QuotaFull": "found the quota full in",
    "Closed": "arrived after the close of", "Complaint": "complained about a message for",
    "ConfirmationSent": "was sent a confirmation for", "DeliveryFailed": "could not be reached for",
    "OptedOut": "opted out of messages for",
}


def iso(when: dt.datetime) -> str:
    """A UTC date-time as the API writes them (seven fraction digits, Z)."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class _Lru(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, k, v) -> None:
        self[k] = v
        self.move_to_end(k)
        while len(self) > self.size:
            self.popitem(last=False)


class AlidaSource(PollingSource):
    """Alida member events (survey invitations, completions, …) from an Insight Community."""

    kind = "alida"
    Settings = AlidaSettings
    settings: AlidaSettings

    def __init__(self, source, settings: AlidaSettings) -> None:
        super().__init__(source, settings)
        self.base = settings.api_url
        self.app = f"{self.base}/v1/applications/{settings.community}"
        self.activities_cache: _Lru = _Lru(20_000)
        self.members_cache: _Lru = _Lru(200_000)
        self.take_types = frozenset(settings.event_types)

    async def start(self) -> None:
        await super().start()
        s = self.settings
        secret = s.secret("client_secret")
        api_key = s.secret("api_key")
        headers = {"x-api-key": api_key} if api_key else {}

        async def fetch():
            return await client_credentials(self.http.session, f"{self.base}/oauth2/token", s.client_id, secret,
                                            headers=headers)

        self.http.tokens = TokenCache(fetch, renew_before_s=60)

    # ------------------------------------------------------------------ paging
    async def pages(self, since: dt.datetime):
        s = self.settings
        lower, offset = iso(since), 0
        while True:
            body = await self.http.get_json(f"{self.app}/memberevents", params={
                "q": f'lastUpdateDate>="{lower}"', "sort": "lastUpdateDate", "limit": str(s.page_size),
                "offset": str(offset)})
            items = body.get("items") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise ServerError("memberevents answered without an items list")
            has_next = any(isinstance(link, dict) and link.get("rel") == "next" for link in body.get("links") or [])
            last = len(items) < s.page_size or not has_next
            yield Page(items, last)
            if last:
                return
            newest = self._updated(items[-1])
            if newest is None or newest == when(lower, "lower"):
                offset += len(items)
            else:
                lower = items[-1]["lastUpdateDate"]
                offset = sum(1 for r in items if self._updated(r) == newest)

    @staticmethod
    def _updated(r: dict) -> dt.datetime | None:
        v = r.get("lastUpdateDate")
        try:
            return when(v) if isinstance(v, str) else None
        except ValueError:
            return None

    def position(self, record: dict) -> tuple[str, str] | None:
        rid, updated = record.get("id"), record.get("lastUpdateDate")
        if not isinstance(rid, str) or not rid or self._updated(record) is None:
            return None
        return updated, rid

    # ------------------------------------------------------------------ look-ups
    async def activity(self, activity_id: str) -> dict | None:
        if activity_id in self.activities_cache:
            return self.activities_cache[activity_id]
        body = await self.http.get_json(f"{self.app}/activities/{activity_id}", params={"fields": ACTIVITY_FIELDS},
                                        expect=(404,))
        self.activities_cache.put(activity_id, body if isinstance(body, dict) else None)
        return self.activities_cache[activity_id]

    async def member(self, member_id: str) -> dict | None:
        if member_id in self.members_cache:
            self.members_cache.move_to_end(member_id)
            return self.members_cache[member_id]
        body = await self.http.get_json(f"{self.app}/members/{member_id}", expect=(404,))
        self.members_cache.put(member_id, body if isinstance(body, dict) else None)
        return self.members_cache[member_id]

    # ------------------------------------------------------------------ mapping
    def check(self, r: dict) -> BadRecord | None:
        for name in ("id", "memberId", "eventType", "lastUpdateDate"):
            if not isinstance(r.get(name), str) or not r.get(name):
                return BadRecord("MissingField", f"member event {r.get('id')!r}: {name} is missing or not text")
        if r["eventType"] not in EVENT_TYPES:
            return BadRecord("UnknownEventType", f"member event {r['id']}: event type {r['eventType']!r} is not "
                                                 f"one this version knows ({', '.join(EVENT_TYPES)})")
        for name in ("lastUpdateDate", "eventDate", "createDate"):
            v = r.get(name)
            if v is not None:
                try:
                    when(v, name) if isinstance(v, str) else parse_date(v, name)
                except (ValueError, TypeError):
                    return BadRecord("BadDate", f"member event {r['id']}: {name} {str(v)[:60]!r} is not an "
                                                f"ISO 8601 date-time")
        return None

    async def activities(self, records: list[dict]) -> list[dict | BadRecord | None]:
        checked = [self.check(r) for r in records]
        wanted = [r for r, bad in zip(records, checked) if bad is None and r["eventType"] in self.take_types]
        activity_ids = {r["activityId"] for r in wanted if isinstance(r.get("activityId"), str)
                        and r["activityId"] not in self.activities_cache}
        member_ids = ({r["memberId"] for r in wanted if r["memberId"] not in self.members_cache}
                      if self.settings.member_lookup else set())
        await asyncio.gather(*(self.activity(a) for a in activity_ids), *(self.member(m) for m in member_ids))
        out: list[dict | BadRecord | None] = []
        for r, bad in zip(records, checked):
            if bad is not None:
                out.append(bad)
            elif r["eventType"] not in self.take_types:
                out.append(None)  # a type this source does not take: skipped
            else:
                out.append(self.to_activity(r))
        return out

    def to_activity(self, r: dict) -> dict:
        s, tenant = self.settings, self.source.tenant
        act = self.activities_cache.get(r.get("activityId")) if isinstance(r.get("activityId"), str) else None
        member = self.members_cache.get(r["memberId"]) if s.member_lookup else None
        ev: dict = {
            "ActivityKey": f"alida:{tenant}:{s.community}:{r['id']}",
            "ActivityCode": f"Alida{r['eventType']}",
            "ActivityDate": r.get("eventDate") or r.get("createDate") or r["lastUpdateDate"],
            "TenantCode": tenant,
            "EventType": r["eventType"],
            "AlidaMemberEventId": r["id"],
            "AlidaMemberId": r["memberId"],
            "AlidaActivityId": r.get("activityId"),
            "CommunicationId": r.get("communicationId"),
            "CreateDate": r.get("createDate"),
            "EventDateTime": r.get("eventDate"),
            "IsNew": r.get("createDate") == r["lastUpdateDate"],
            "ObjectType": "AlidaMemberEvent",
        }
        if act:
            ev.update(ActivityName=act.get("name"), AlidaActivityType=act.get("activityType"),
                      ProjectType=act.get("projectType"), AlidaActivityStatus=act.get("status"),
                      LinkUrl=act.get("href"))
        name = None
        if member:
            first, last = member.get("firstName"), member.get("lastName")
            name = " ".join(x for x in (first, last) if isinstance(x, str) and x) or None
            ev.update(MemberEmail=member.get("email"), MemberFirstName=first, MemberLastName=last,
                      MemberDisplayName=name)
            variables = member.get("variables") if isinstance(member.get("variables"), dict) else {}
            cid = variables.get(s.customer_id_variable) if s.customer_id_variable else None
            if isinstance(cid, (str, int)) and not isinstance(cid, bool) and str(cid).strip():
                ev["MemberExternalKey"] = str(cid).strip()
        title = f'"{act["name"]}"' if act and act.get("name") else "an activity"
        ev["ActivityDescription"] = f"{name or 'Member ' + r['memberId']} {VERBS[r['eventType']]} {title}"
        return {k: v for k, v in ev.items() if v is not None}

    def describe(self) -> dict:
        return {"api": self.base, "community": self.settings.community,
                "event_types": list(self.settings.event_types)}


SOURCE = AlidaSource
