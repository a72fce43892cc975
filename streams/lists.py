"""The list stage: community lists (the List Builder's Custom User Lists) computed in the stream.

A Faust app with three agents and a timer:

- ``route`` reads ``activity.enriched``; each activity of a tenant with lists (``list:<tenant>:<id>`` on
  ``activity.config``) goes on to ``lists.activities`` as a small JSON record keyed ``tenant|member``
  (the member: the customer ID, which the connection sends as the Legacy Contact Key, else the contact
  key), with the e-mail, names and community the activity carries.
- ``route_scores`` does the same for each member's engagement score (``member.scores``).
- ``member`` reads ``lists.activities`` into the table ``list-members`` (changelog ``lists.state``,
  on disk with faust's ``rocksdb://`` store): each record updates the member's state
  (:func:`core.lists.apply_activity`), every list of the tenant is evaluated, and each change goes
  to the compacted ``list.members``: a record keyed ``tenant|list|member`` when the member joins (or
  their e-mail changes), a tombstone when they leave. Each list's records go to one partition, so
  its offset orders its changes (the feed's change token).
- the timer re-evaluates members whose time window passed (a member who stops matching "within 30
  days" leaves without a new activity), and every member of a tenant whose lists changed, by
  sending a tick through ``lists.activities`` (a table is written only by its agent).

Every send is acknowledged before the table is written: a kill repeats records, which the state's
activity keys count once, and a repeated membership record is the same record.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import json
import logging
import os
import sys
import time
import zlib

import faust
import orjson

from core import metrics as core_metrics
from core.avro import DecodeError, decode_member_score, reader_schema_without
from core.compacted import CompactedTopic
from core.errors import guarded
from core.faustapp import as_current, bind_config_health, decode_enriched, direct_send, faust_role_main, make_app
from core.health import Health
from core.lists import ListError, apply_activity, evaluate, new_state, parse_list
from core.settings import Settings
from core.topics import Topics

from . import listmetrics as metrics

log = logging.getLogger("activity_sync.lists")
#: records an agent takes at once (or fewer, after BATCH_WITHIN_S): their sends are acknowledged together
BATCH = 500
BATCH_WITHIN_S = 0.02
KEEP_DETAILS = frozenset(
    f"{role}{s}" for role in ("Author", "Member", "Contact", "AccessedBy", "Agent", "")
    for s in ("Email", "EmailAddress", "PrimaryEmailAddress", "FirstName", "LastName")) | {
    "CommunityKey", "CommunityName", "GroupKey", "GroupName"}


class Lists:
    """The lists of every tenant, from ``activity.config``; ``changed`` holds tenants to re-evaluate."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, dict] = {}
        self.changed: set[str] = set()
        self._of: dict[str, tuple[list, str]] = {}   # tenant -> (its lists, their version), until a change

    def apply(self, key: bytes, value: bytes | None) -> None:
        k = key.decode(errors="replace")
        if not k.startswith("list:"):
            return
        _, tenant, lid = k.split(":", 2)
        lists = self.by_tenant.setdefault(tenant, {})
        if value is None:
            lists.pop(lid, None)
        else:
            try:
                lists[lid] = parse_list(json.loads(value))
            except (ValueError, ListError) as exc:
                log.error("activity.config %s refused: %s", k, exc)
                return
        self.changed.add(tenant)
        self._of.pop(tenant, None)
        metrics.LISTS.set(sum(len(x) for x in self.by_tenant.values()))

    def _cached(self, tenant: str) -> tuple[list, str]:
        got = self._of.get(tenant)
        if got is None:
            defs = list(self.by_tenant.get(tenant, {}).values())
            got = self._of[tenant] = (defs, lists_version(defs))
        return got

    def of(self, tenant: str) -> list:
        return self._cached(tenant)[0]

    def version(self, tenant: str) -> str:
        """A digest of the tenant's lists: a member evaluated under another one is evaluated again."""
        return self._cached(tenant)[1]


def lists_version(defs: list) -> str:
    return format(zlib.crc32(json.dumps(sorted((x.id, x.record()) for x in defs), sort_keys=True).encode()), "x")


def partition_of(tenant: str, list_id: str, partitions: int) -> int:
    """The ``list.members`` partition of a list: all its changes in one, in order."""
    return zlib.crc32(f"{tenant}|{list_id}".encode()) % partitions


def slim(record: dict) -> tuple[bytes, dict] | None:
    member = record.get("customer_id") or record.get("contact_key")
    if not member:
        return None
    date = record["activity_date"]
    when = date.timestamp() if isinstance(date, dt.datetime) else \
        dt.datetime.fromisoformat(str(date).replace("Z", "+00:00")).timestamp()
    try:  # details_json: a third of the decode's cost of the details pairs
        props = orjson.loads(record.get("details_json") or "{}")
    except ValueError:
        props = {}
    details = {k: v for k, v in props.items() if k in KEEP_DETAILS and isinstance(v, str)} \
        if isinstance(props, dict) else {}
    tenant = record["tenant_code"]
    return f"{tenant}|{member}".encode(), {"key": record["activity_key"], "code": record["activity_code"],
                                           "category": record["category"], "when": when, "tenant": tenant,
                                           "member": member, "d": details}


def member_record(tenant: str, list_id: str, st: dict, since: float, now: float, cause: str | None = None) -> dict:
    """A member of a list on ``list.members``; ``cause``: the activity that made the change (None: a window
    passed, or the lists changed)."""
    return {"tenant": tenant, "list": list_id, "member": st["m"], "email": st.get("email"),
            "first_name": st.get("first"), "last_name": st.get("last"),
            "since": dt.datetime.fromtimestamp(since, dt.timezone.utc).isoformat(), "updated_at": int(now * 1000),
            "cause": cause}


def step(st: dict | None, r: dict, lists: list, now: float,
         version: str | None = None) -> tuple[dict | None, list[tuple[str, dict | None]]]:
    """One ``lists.activities`` record on a member's state: the new state (None: nothing changed) and the
    membership changes, ``(list id, record)`` to join or update, ``(list id, None)`` to leave."""
    if st is None:
        if r.get("tick"):
            return None, []
        st = new_state(r["tenant"], r["member"])
    before_email = (st.get("email"), st.get("first"), st.get("last"))
    if "score" in r:
        st["score"] = r["score"]
        metrics.SCORES.inc()
    elif r.get("tick"):
        metrics.TICKS.inc()
    elif not apply_activity(st, r["key"], r["code"], r["category"], r["when"], r.get("d") or {}, now):
        metrics.REPEATS.inc()
        return None, []
    else:
        metrics.APPLIED.inc()
    version = version if version is not None else lists_version(lists)
    if r.get("tick") or st.get("lv") != version:
        ins, due = evaluate(lists, st, now)  # time passed or the lists changed: every list again
    else:  # an activity (or a score) changes only the lists that look at its code, category or score
        code, category, score = r.get("code"), r.get("category"), "score" in r
        hit = [x for x in lists if x.affected_by(code, category, score)]
        hit_ids = {x.id for x in hit}
        got, due_hit = evaluate(hit, st, now)
        ins = {x for x in st.get("lists", []) if x not in hit_ids} | got
        old_due = st.get("due")
        due = min([d for d in (due_hit, old_due if old_due and old_due > now else None) if d is not None],
                  default=None)  # at worst a tick early: it re-evaluates everything
    was = dict(st.get("lists_since") or {}) or {x: now for x in st.get("lists", [])}
    changes: list[tuple[str, dict | None]] = []
    moved = (st.get("email"), st.get("first"), st.get("last")) != before_email
    since = {}
    for lid in sorted(ins):
        since[lid] = was.get(lid, now)
        if lid not in was or moved:
            changes.append((lid, member_record(st["t"], lid, st, since[lid], now, r.get("key"))))
    changes += [(lid, None) for lid in sorted(set(was) - ins)]
    st["lists"], st["lists_since"], st["due"], st["lv"] = sorted(ins), since, due, version
    return st, changes


def list_activity(st: dict, d, rec: dict | None, now: float) -> dict:
    """A membership change of a ``push: true`` list as an activity (CommunityListJoin / CommunityListLeave)."""
    joined = rec is not None
    return {"ActivityKey": f"list:{st['t']}:{d.id}:{st['m']}:{'in' if joined else 'out'}:{int(now * 1000)}",
            "ActivityCode": "CommunityListJoin" if joined else "CommunityListLeave",
            "ActivityDate": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat().replace("+00:00", "Z"),
            "TenantCode": st["t"], "MemberExternalKey": st["m"], "MemberEmail": st.get("email"),
            "MemberFirstName": st.get("first"), "MemberLastName": st.get("last"), "ListKey": d.id,
            "ListName": d.name, "TargetGroupName": d.target_group,
            "ActivityDescription": f"{'Joined' if joined else 'Left'} list {d.name}"}


def create_app(settings: Settings | None = None, health: Health | None = None) -> faust.App:
    settings = settings or Settings.from_env()
    topics = Topics(settings.topic_prefix)
    n = settings.partitions
    tick_s = float(os.environ.get("ACTIVITY_SYNC_LISTS_TICK_S", "30"))
    app = make_app(f"{settings.app_id}-lists", settings, "lists", topic_partitions=n, store="rocksdb://")
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    enriched_in = app.topic(topics.enriched, **raw)
    scores_in = app.topic(topics.member_scores, **raw)
    activities = app.topic(topics.lists_activities, partitions=n, **raw)
    send = direct_send(app)
    table = app.Table("list-members", default=None, partitions=n, key_type=bytes, value_type=bytes,
                      changelog_topic=app.topic(topics.lists_state, partitions=n, **raw))
    lists = Lists()
    config = CompactedTopic(settings.kafka, topics.config, lists.apply)
    app.service(config)
    slim_reader = reader_schema_without("details", "details_xml", "deliveries", "source")
    timers: list[tuple[float, bytes]] = []   # (due, tenant|member), a heap; stale entries are harmless ticks
    bind_config_health(app, health, config)

    @app.agent(enriched_in)
    async def route(stream):
        await config.wait_ready()
        # a batch's sends are acknowledged before its records are (at least once: a repeat counts once)
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            futures = []
            for event in events:
                record = decode_enriched(event.message, settings, slim_reader, lists.by_tenant.get, log)
                out = slim(record) if record is not None else None
                if out is not None:
                    futures.append(await send(topics.lists_activities, out[0], orjson.dumps(out[1])))
            await asyncio.gather(*futures)

    @app.agent(scores_in)
    async def route_scores(stream):
        await config.wait_ready()
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            futures = []
            for event in events:
                msg = event.message
                if msg.value is None or not msg.key:
                    continue
                tenant, _, m = msg.key.decode(errors="replace").partition("|")
                if not lists.by_tenant.get(tenant):
                    continue
                try:
                    score = decode_member_score(msg.value)["score"]
                except (DecodeError, KeyError, ValueError):
                    continue
                futures.append(await send(topics.lists_activities, msg.key, orjson.dumps(
                    {"tenant": tenant, "member": m, "score": score})))
            await asyncio.gather(*futures)

    @app.agent(activities)
    async def member(stream):
        await config.wait_ready()
        # A batch at a time: each record is applied in order (a member's records of the batch one after
        # another), every send of the batch is acknowledged, and only then are the members' new states
        # written to the table (so a kill never leaves a state whose membership change was not sent).
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            now = time.time()
            states: dict[bytes, tuple[object, dict]] = {}   # key -> (its last event, its new state)
            futures = []
            for event in events:
                msg = event.message
                try:
                    r = orjson.loads(msg.value)
                except ValueError:
                    continue
                if msg.key in states:
                    before = states[msg.key][1]
                else:
                    as_current(event)
                    old = table.get(msg.key)
                    before = orjson.loads(old) if old else None
                was_in = set(before.get("lists", [])) if before else set()
                tenant = r.get("tenant", "")
                st, changes = step(before, r, lists.of(tenant), now, lists.version(tenant))  # (updates it in place)
                if st is None:
                    continue
                states[msg.key] = (event, st)
                for lid, rec in changes:
                    k = f"{st['t']}|{lid}|{st['m']}".encode()
                    futures.append(await send(topics.list_members, k, None if rec is None else orjson.dumps(rec),
                                              partition_of(st["t"], lid, n)))
                    metrics.CHANGES.labels("out" if rec is None else "in").inc()
                    d = lists.by_tenant.get(st["t"], {}).get(lid)
                    if d is not None and d.push and not (rec is not None and lid in was_in):
                        act = list_activity(st, d, rec, now)
                        futures.append(await send(topics.raw, st["m"].encode(), orjson.dumps(act)))
            await asyncio.gather(*futures)  # acknowledged before the table moves on
            for key, (event, st) in states.items():
                as_current(event)
                table[key] = orjson.dumps(st)
                if st["due"] is not None:
                    heapq.heappush(timers, (st["due"], key))
            metrics.DUE.set(len(timers))

    async def tick(key: bytes) -> None:
        tenant, _, m = key.decode(errors="replace").partition("|")
        await activities.send(key=key, value=json.dumps({"tenant": tenant, "member": m, "tick": 1}).encode())

    scanned = {"done": False}

    @app.timer(interval=tick_s)
    async def windows() -> None:
        if not config.ready.is_set() or not app.tables.recovery.completed.is_set():
            return
        if not scanned["done"] or lists.changed:  # after recovery, or a tenant's lists changed
            changed, lists.changed = set(lists.changed), set()
            versions: dict[str, str] = {}
            for key, value in list(table.items()):
                if not value:
                    continue
                tenant = key.decode(errors="replace").partition("|")[0]
                if scanned["done"] and tenant not in changed:
                    continue
                st = json.loads(value)
                if tenant not in versions:
                    versions[tenant] = lists.version(tenant)
                if st.get("lv") != versions[tenant]:
                    await tick(key)  # evaluated under other lists: again, under these
                elif not scanned["done"] and st.get("due") is not None:
                    heapq.heappush(timers, (st["due"], key))
            scanned["done"] = True
        now = time.time()
        log.debug("timer: %d due entries, first %.1f s from now", len(timers), (timers[0][0] - now) if timers else -1)
        while timers and timers[0][0] <= now:
            _, key = heapq.heappop(timers)
            await tick(key)
        metrics.DUE.set(len(timers))

    return app


def main() -> None:
    sys.exit(guarded(_main))


def _main() -> int:
    return faust_role_main("lists", create_app, (core_metrics, metrics))


if __name__ == "__main__":
    main()
