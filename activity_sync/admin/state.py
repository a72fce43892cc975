"""What the admin API knows and changes: ``activity.config`` (through a :class:`Routing` of its
own, so it validates exactly as the workers do), the workers' status in ``activity.control``,
the newest enriched record of each activity code (for previews), dead letters and the audit trail.

Every change is a record in ``activity.config``; the call returns once the admin's own follower
has read it back, so the next read shows it, and running workers apply it within seconds. Every
change is also a record in ``activity.audit``: which key, its tenants, when, what changed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import time
from collections import OrderedDict
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from activity_sync.tools import bundled
from core import headers as H
from core.avro import DecodeError, decode_any
from core.config import (ALL_TENANTS, DEFAULT_DESCRIPTION, ConfigError, Endpoint, Subscription, activity_code_from_dict,
                         check_subscription, endpoint_from_dict, read_config_file, subscription_from_dict)
from core.envvars import env_int
from core.routing import Routing
from core.secrets import SECRET_KEY, SECRET_REF, secret_value
from core.settings import Settings
from core.topics import MAX_EVENT_TOPIC_BYTES, Topics, partition_ids
from sinks import replay as replay_mod
from sinks.registry import SettingsError, describe, parse_endpoint

from .keys import ApiKey

log = logging.getLogger("activity_sync.admin")
STALE_S = 30.0  # a worker status older than this is shown as not reporting
RECENT_MAX = 20_000  # (tenant, activity code) pairs whose newest record previews may render


class AdminError(Exception):
    """An answer other than success: HTTP status, message, and the field it is about."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def body(self) -> dict:
        return {"error": self.message, **({"field": self.field} if self.field else {})}


class Follower:
    """Reads a topic in a task of its own and hands each record to ``handle``; ``ready`` once the
    end offsets seen at start are reached; ``position`` per partition."""

    def __init__(self, settings: Settings, topic: str, handle: Callable, tail: int | None = None) -> None:
        self.settings, self.topic, self.handle, self.tail = settings, topic, handle, tail
        self.ready = asyncio.Event()
        self.positions: dict[int, int] = {}
        self.task: asyncio.Task | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                         max_partition_fetch_bytes=MAX_EVENT_TOPIC_BYTES + 65536,
                                         **self.settings.kafka.aiokafka_kwargs())
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.consumer is not None:
            await self.consumer.stop()

    async def _run(self) -> None:
        c = self.consumer
        ids: list[int] = []
        while not ids:
            ids = await partition_ids(self.settings.kafka, self.topic)
            if not ids:
                await asyncio.sleep(1)
        parts = [TopicPartition(self.topic, p) for p in ids]
        c.assign(parts)
        end = await c.end_offsets(parts)
        if self.tail is None:
            await c.seek_to_beginning(*parts)
        else:
            for tp in parts:
                c.seek(tp, max(0, end[tp] - self.tail))
        while True:
            try:
                batch = await c.getmany(timeout_ms=300)
            except Exception as exc:  # noqa: BLE001 - a broker hiccup: keep following
                log.warning("following %s: %s: %s", self.topic, type(exc).__name__, exc)
                await asyncio.sleep(1)
                continue
            for tp, msgs in batch.items():
                for m in msgs:
                    try:
                        self.handle(m)
                    except Exception as exc:  # noqa: BLE001 - one odd record never stops the follower
                        log.warning("%s@%s: %s", self.topic, m.offset, exc)
                    self.positions[tp.partition] = m.offset + 1
            if not self.ready.is_set():
                if all([await c.position(tp) >= end[tp] for tp in parts]):
                    self.ready.set()

    async def caught_up_to(self, partition: int, offset: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.positions.get(partition, 0) <= offset:
            if time.monotonic() > deadline:
                raise AdminError(503, f"{self.topic} did not show the change within {timeout:.0f}s")
            await asyncio.sleep(0.05)


def default_descriptions() -> dict[str, str]:
    """The preconfigured description of each code the bundled config subscribes (else the activity's own)."""
    out: dict[str, str] = {}
    try:
        for s in read_config_file(bundled("embedded.yaml")).get("subscriptions") or []:
            out.setdefault(s["activity_code"], s.get("description") or "")
    except Exception:  # noqa: BLE001
        pass
    return out


def _public_endpoint(ep: Endpoint, subs: list[Subscription]) -> dict:
    return {"name": ep.name, "enabled": ep.enabled, "provider_type": ep.provider_type, "provider": ep.provider,
            "tenants": list(ep.tenants), "settings": ep.settings,
            "subscriptions": {"active": sum(1 for s in subs if s.enabled), "inactive": sum(1 for s in subs if not s.enabled)},
            "subscribed_codes": sorted(s.activity_code for s in subs)}


class AdminState:
    def __init__(self, settings: Settings, catalog) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.catalog = catalog
        self.routing = Routing(catalog)
        self.statuses: dict[str, dict] = {}
        self.holds: dict[str, dict] = {}
        # the newest enriched record of each (tenant, activity code), newest last: what previews render
        self.recent: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self.audit_log: list[dict] = []
        self.defaults = default_descriptions()
        self.writeback_max = env_int("ACTIVITY_SYNC_WRITEBACK_CODE_MAX", 100, 1, 100)
        self.config = Follower(settings, self.topics.config, self._config_record)
        self.control = Follower(settings, self.topics.control, self._control_record)
        self.audit = Follower(settings, self.topics.audit, self._audit_record)
        self.enriched = Follower(settings, self.topics.enriched, self._enriched_record, tail=500)
        # the Push API: its member directory and its keys
        from core.directory import Directory
        from sources.push.keys import KeyRing

        self.directory = Directory()
        self.ingest_keys = KeyRing()
        self.contacts_follower = Follower(settings, self.topics.push_directory, self._directory_record)
        self.keys_follower = Follower(settings, self.topics.push_keys, self._key_record)
        # polling sources: their config records and their cursors (source.offsets)
        self.sources: dict = {}
        self.source_cursors: dict[str, dict] = {}
        self.cursors_follower = Follower(settings, self.topics.source_offsets, self._cursor_record)
        # the Action Network <-> Mobile Commons syncs and their report
        self.syncs: dict = {}
        self.sync_report: list[dict] = []
        self.report_follower = Follower(settings, self.topics.anmc_report, self._report_record)
        # engagement scores: the models (scoring:<tenant>) and each member's latest member.scores record
        self.scoring: dict = {}
        self.member_scores: dict[str, dict[str, dict]] = {}
        self.scores_follower = Follower(settings, self.topics.member_scores, self._score_record)
        # community lists: definitions and connections (activity.config), members, members' states
        from .lists import ListsView

        self.lists = ListsView()
        self.list_members_follower = Follower(settings, self.topics.list_members, self.lists.member_record)
        self.list_states_follower = Follower(settings, self.topics.lists_state, self.lists.state_record)
        self.producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.producer = AIOKafkaProducer(acks="all", **self.settings.kafka.aiokafka_kwargs())
        await self.producer.start()
        for f in self._followers():
            await f.start()
        await asyncio.wait_for(self.config.ready.wait(), 60)

    def _followers(self):
        return (self.config, self.control, self.audit, self.enriched, self.contacts_follower, self.keys_follower,
                self.cursors_follower, self.report_follower, self.scores_follower, self.list_members_follower,
                self.list_states_follower)

    async def stop(self) -> None:
        for f in self._followers():
            await f.stop()
        if self.producer is not None:
            await self.producer.stop()

    def ready(self) -> bool:
        return self.config.ready.is_set()

    # ------------------------------------------------------------------ followers
    def _config_record(self, m) -> None:
        if m.key and m.key.startswith((b"list:", b"occ:")):
            self.lists.config_record(m.key.decode(errors="replace"), m.value)
        if m.key and m.key.startswith(b"scoring:"):
            from core.scoring import ScoringError, parse_model

            tenant = m.key.decode(errors="replace").split(":", 1)[1]
            try:
                self.scoring[tenant] = parse_model(json.loads(m.value)) if m.value else None
            except (ValueError, ScoringError):
                self.scoring[tenant] = None
            if self.scoring.get(tenant) is None:
                self.scoring.pop(tenant, None)
        if m.key and m.key.startswith(b"anmc:"):
            from core.anmc import SyncError, parse_sync

            name = m.key.decode(errors="replace").split(":", 1)[1]
            try:
                self.syncs[name] = parse_sync(json.loads(m.value)) if m.value else None
            except (ValueError, SyncError):
                self.syncs[name] = None
            if self.syncs.get(name) is None:
                self.syncs.pop(name, None)
        if m.key and m.key.startswith(b"source:"):
            from core.config import source_from_dict

            name = m.key.decode(errors="replace").split(":", 1)[1]
            try:
                self.sources[name] = source_from_dict(json.loads(m.value)) if m.value else None
            except Exception:  # noqa: BLE001 - a refused source record: the source worker says why
                pass
            if self.sources.get(name) is None:
                self.sources.pop(name, None)
        if m.key:
            try:
                self.routing.apply_record(m.key.decode(), m.value)
            except Exception:  # noqa: BLE001 - refused records are in routing.refused
                pass

    def _cursor_record(self, m) -> None:
        if m.key:
            try:
                value = json.loads(m.value) if m.value else None
            except ValueError:
                return
            if isinstance(value, dict):
                self.source_cursors[m.key.decode(errors="replace")] = value

    def _score_record(self, m) -> None:
        from core.avro import decode_member_score
        from core.scoring import state_of_record

        if not m.key:
            return
        tenant, _, member = m.key.decode(errors="replace").partition("|")
        if m.value is None:
            self.member_scores.get(tenant, {}).pop(member, None)
            return
        self.member_scores.setdefault(tenant, {})[member] = state_of_record(decode_member_score(m.value))

    def _scored_tenant(self, key: ApiKey, tenant: str | None) -> str:
        if not tenant:
            raise AdminError(422, "tenant: the TenantCode whose scores to show", "tenant")
        if not key.sees((tenant,)) or (tenant not in self.scoring and tenant not in self.member_scores):
            raise AdminError(404, f"no scores for tenant {tenant!r} for this key", "tenant")
        return tenant

    def score_tenants(self, key: ApiKey) -> list[dict]:
        return [{"tenant": t, "members": len(self.member_scores.get(t, {})),
                 "model": m.record() if m else None}
                for t in sorted(set(self.scoring) | set(self.member_scores))
                if key.sees((t,)) for m in [self.scoring.get(t)]]

    def report_card(self, key: ApiKey, tenant: str | None, period: str | None) -> dict:
        from core.scoring import period_key, report_card

        tenant = self._scored_tenant(key, tenant)
        if period is None:
            period = period_key("month", dt.datetime.now(dt.timezone.utc).date())
        if not re.fullmatch(r"\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?", period):
            raise AdminError(422, "period: 2026-11 (a month), 2026-Q4 (a quarter) or 2026 (a year)", "period")
        return report_card(list(self.member_scores.get(tenant, {}).values()), period, self.scoring.get(tenant))

    def member_page(self, key: ApiKey, tenant: str | None, member: str, category: str | None = None) -> dict:
        """A member's score over time, rank in the tenant, totals, and timeline (the Activity History stores
        of the tenant's activity-history endpoints)."""
        from core.scoring import score_now

        tenant = self._scored_tenant(key, tenant)
        states = self.member_scores.get(tenant, {})
        state = states.get(member)
        if state is None:
            raise AdminError(404, f"no member {member!r} scored in tenant {tenant}", "member")
        model = self.scoring.get(tenant)
        now = {m: (score_now(s, model) if model else s["score"]) for m, s in states.items()}
        rank = 1 + sum(1 for v in now.values() if v > now[member])
        timeline = []
        from sinks.providers.activity_history.sink import query

        for ep in self.routing.endpoints.values():
            path = (ep.settings or {}).get("path")
            if ep.provider_type != "activity-history" or not path or not ep.serves(tenant):
                continue
            try:
                rows = query(path, member=member, tenant=tenant, limit=500)
            except Exception:  # noqa: BLE001 - a store not written yet (or elsewhere) has no timeline here
                continue
            timeline += [{k: r.get(k) for k in ("activity_date", "activity_code", "category", "description",
                                                 "link_url")} for r in rows
                         if category is None or r.get("category") == category]
        timeline.sort(key=lambda r: r["activity_date"] or "", reverse=True)
        return {"tenant": tenant, "member": member, "score": round(now[member], 4), "rank": rank,
                "members": len(states), "activities": state["activities"], "points": state["points"],
                "first_seen": state["first_seen"], "last_activity": state["last_activity"],
                "history": [{"day": d, "score": round(v, 4)} for d, v in sorted(state["history"].items())],
                "periods": {pk: {c: {"activities": a, "points": p} for c, (a, p) in b.items()}
                            for pk, b in sorted(state["periods"].items())},
                "timeline": timeline[:500]}

    def _report_record(self, m) -> None:
        try:
            line = json.loads(m.value)
        except ValueError:
            return
        if isinstance(line, dict):
            self.sync_report.append(line)
            del self.sync_report[:-50_000]  # the newest 50,000 lines

    def anmc_report(self, key: ApiKey, limit: int = 20) -> list[dict]:
        """The syncs' runs the key's tenants may see, newest first (each with its outcome counts and profiles)."""
        from core.anmc import summarize

        visible = {n: s for n, s in self.syncs.items() if key.sees((s.tenant,))}
        sources = {}
        for s in visible.values():
            sources[s.action_network_source] = sources[s.mobile_commons_source] = s.name
        runs = [r for r in summarize(self.sync_report, sources) if r["sync"] in visible]
        return [{**r, "tenant": visible[r["sync"]].tenant} for r in reversed(runs[-limit:])]

    def source_status(self, key: ApiKey) -> list[dict]:
        """Each polling source the key's tenants may see: where its cursor is and how far behind."""
        from activity_sync.sourcecmd import status_rows

        visible = {n: src for n, src in self.sources.items() if key.sees((src.tenant,))}
        return status_rows(visible, self.source_cursors)

    def _directory_record(self, m) -> None:
        if m.key:
            try:
                self.directory.apply(m.key, m.value)
            except Exception:  # noqa: BLE001 - an unreadable entry is skipped
                pass

    def _key_record(self, m) -> None:
        if m.key:
            try:
                self.ingest_keys.apply(m.key, m.value)
            except Exception:  # noqa: BLE001 - an unreadable key record is skipped
                pass

    # ------------------------------------------------------------------ the Push API
    def _tenant_of(self, key: ApiKey, tenant: str | None) -> list[str]:
        """The tenants a request may read: the one asked for, if the key may see it; else all the key's."""
        if tenant is not None:
            if ALL_TENANTS not in key.tenants and tenant not in key.tenants:
                raise AdminError(404, f"no tenant {tenant!r} for this key", "tenant")
            return [tenant]
        if ALL_TENANTS in key.tenants:
            return sorted(self.directory.tenants)
        return list(key.tenants)

    def contacts(self, key: ApiKey, tenant: str | None, contact_id: str | None, email: str | None,
                 phone: str | None, name: str | None, limit: int) -> dict:
        out: list[dict] = []
        for t in self._tenant_of(key, tenant):
            out += self.directory.find(t, contact_id=contact_id, email=email, phone=phone, name=name,
                                       limit=limit - len(out))
            if len(out) >= limit:
                break
        return {"contacts": out, "count": len(out),
                "total": sum(self.directory.count(t) for t in self._tenant_of(key, tenant))}

    def list_ingest_keys(self, key: ApiKey) -> list[dict]:
        return [k.public() for k in sorted(self.ingest_keys.keys.values(), key=lambda k: k.id)
                if ALL_TENANTS in key.tenants or k.tenant in key.tenants]

    async def issue_ingest_key(self, key: ApiKey, body: dict) -> dict:
        """A new Push API key (admin keys only, for a tenant the key holds): the secret is in this answer only."""
        from sources.push.keys import new_key

        self._writer(key)
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
        kid, tenant, origin = body.get("id"), body.get("tenant"), body.get("origin")
        if not isinstance(kid, str) or not kid:
            raise AdminError(422, "id: the key's id (lower-case letters, digits, '-')", "id")
        if not isinstance(tenant, str) or (ALL_TENANTS not in key.tenants and tenant not in key.tenants):
            raise AdminError(422, "tenant: one of this key's tenants", "tenant")
        if origin is not None and (not isinstance(origin, str) or origin not in self.routing.endpoints
                                   or not self._visible(key, self.routing.endpoints[origin])):
            raise AdminError(422, "origin: the name of an endpoint of this tenant (the AMS the pushes come from)",
                             "origin")
        async with self._lock:
            if kid in self.ingest_keys.keys:
                raise AdminError(409, f"the key id {kid!r} is not available; choose another", "id")
            try:
                rec, presented = new_key(kid, tenant, origin)
            except ValueError as exc:
                field = next((f for f in ("tenant", "origin") if str(exc).startswith(f)), "id")
                raise AdminError(422, str(exc), field) from None
            sent = await self.producer.send_and_wait(self.topics.push_keys, key=kid.encode(), value=rec.record())
            await self._audit_only(key, "issue ingest key", f"ingest-key:{kid}", None, rec.public(), [tenant])
            await self.keys_follower.caught_up_to(sent.partition, sent.offset)
        return {**rec.public(), "key": presented}

    async def revoke_ingest_key(self, key: ApiKey, kid: str) -> dict:
        self._writer(key)
        async with self._lock:
            rec = self.ingest_keys.keys.get(kid)
            if rec is None or (ALL_TENANTS not in key.tenants and rec.tenant not in key.tenants):
                raise AdminError(404, f"no ingest key {kid!r}")
            sent = await self.producer.send_and_wait(self.topics.push_keys, key=kid.encode(), value=None)
            await self._audit_only(key, "revoke ingest key", f"ingest-key:{kid}", rec.public(), None, [rec.tenant])
            await self.keys_follower.caught_up_to(sent.partition, sent.offset)
        return {"revoked": kid}

    async def _audit_only(self, key: ApiKey, action: str, target: str, before, after, tenants) -> None:
        audit = await self.producer.send_and_wait(self.topics.audit, value=json.dumps({
            "at": time.time(), "key_id": key.id, "role": key.role, "key_tenants": list(key.tenants),
            "tenants": sorted(tenants), "action": action, "target": target, "before": before,
            "after": after}).encode())
        await self.audit.caught_up_to(audit.partition, audit.offset)

    def _control_record(self, m) -> None:
        key = (m.key or b"").decode()
        if key.startswith("status:"):
            if m.value is None:
                self.statuses.pop(key, None)
            else:
                self.statuses[key] = json.loads(m.value)
        elif key.startswith("hold:"):
            self.holds[key[5:]] = json.loads(m.value) if m.value else {}

    def _audit_record(self, m) -> None:
        if m.value:
            self.audit_log.append(json.loads(m.value))
            del self.audit_log[:-10_000]

    def _enriched_record(self, m) -> None:
        try:
            rec = decode_any(m.value, self.settings.schema_registry_url)
        except DecodeError:
            return
        where = (rec["tenant_code"], rec["activity_code"])
        self.recent.pop(where, None)
        self.recent[where] = rec
        while len(self.recent) > RECENT_MAX:  # tenant codes come from producers: bounded
            self.recent.popitem(last=False)

    # ------------------------------------------------------------------ access
    def _visible(self, key: ApiKey, ep: Endpoint) -> bool:
        return key.sees(ep.tenants)

    def _endpoint(self, key: ApiKey, name: str) -> Endpoint:
        ep = self.routing.endpoints.get(name)
        if ep is None or not self._visible(key, ep):
            raise AdminError(404, f"no endpoint named {name!r}")
        return ep

    def _sees_dead_letter(self, key: ApiKey, endpoint: str | None) -> bool:
        """A dead letter of an endpoint the key sees; one of a deleted endpoint only for an every-tenant key."""
        ep = self.routing.endpoints.get(endpoint or "")
        return self._visible(key, ep) if ep is not None else ALL_TENANTS in key.tenants

    def _subs_of(self, name: str) -> list[Subscription]:
        return [s for s in self.routing.subscriptions.values() if s.endpoint == name]

    @staticmethod
    def _writer(key: ApiKey) -> None:
        if not key.can_write:
            raise AdminError(403, f"key {key.id!r} is read-only")

    # ------------------------------------------------------------------ reads
    def providers(self) -> list[dict]:
        return describe()

    def default_description(self, code: str) -> str:
        return self.catalog.description(code) or self.defaults.get(code) or DEFAULT_DESCRIPTION

    def activities_catalog(self) -> list[dict]:
        out = []
        for code, info in sorted(self.catalog.codes.items()):
            props = sorted(self.catalog.known_properties(code))
            spec = self.catalog.defined.get(code)
            out.append({"activity_code": code, "category": info.category, "merge_variables": props,
                        "default_description": self.default_description(code),
                        "customer_key": list(info.customer_key),
                        "properties": sorted(info.properties - self.catalog.common_properties)
                        if info.properties is not None else [],
                        # bundled: in the catalog file; defined: added or changed on the page / API
                        "origin": "defined" if spec is not None else "bundled",
                        "bundled": code in self.catalog.started_with})
        return out

    async def put_activity_code(self, key: ApiKey, code: str, body: dict) -> dict:
        """Add or change an activity code (``activity:<code>`` on ``activity.config``): codes are shared by
        every tenant, so only a key of every tenant changes them. Checked by the parser the workers use."""
        self._writer(key)
        if ALL_TENANTS not in key.tenants:
            raise AdminError(403, f"key {key.id!r} is scoped to tenants: activity codes are shared by every "
                                  "tenant, so only a key of every tenant ('*') changes them")
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
        try:
            code, spec = activity_code_from_dict({**body, "code": code}, self.catalog)
        except ConfigError as exc:
            raise AdminError(422, str(exc), exc.field) from None
        async with self._lock:
            before = self.catalog.defined.get(code)
            await self._publish(key, [(f"activity:{code}", spec)], "update activity code" if code in self.catalog.codes
                                else "create activity code", f"activity:{code}", before, spec, [ALL_TENANTS])
        return next(a for a in self.activities_catalog() if a["activity_code"] == code)

    async def retire_activity_code(self, key: ApiKey, code: str) -> dict:
        """Retire a code added on the page (a bundled code changed on the page goes back to its bundled
        definition). A code that subscriptions still use is refused: remove them first."""
        self._writer(key)
        if ALL_TENANTS not in key.tenants:
            raise AdminError(403, f"key {key.id!r} is scoped to tenants: only a key of every tenant ('*') "
                                  "retires activity codes")
        async with self._lock:
            spec = self.catalog.defined.get(code)
            if code not in self.catalog.codes:
                raise AdminError(404, f"no activity code {code!r}")
            if spec is None:
                raise AdminError(409, f"{code} was not added on the page: a bundled code is not retired")
            used = sorted(s.endpoint for s in self.routing.subscriptions.values() if s.activity_code == code)
            if used and code not in self.catalog.started_with:
                raise AdminError(409, f"{code} is still subscribed by {len(used)} endpoint(s): remove those "
                                      "subscriptions first")
            await self._publish(key, [(f"activity:{code}", None)], "retire activity code", f"activity:{code}",
                                spec, None, [ALL_TENANTS])
        return {"retired": code, "bundled": code in self.catalog.started_with}

    def endpoints(self, key: ApiKey) -> list[dict]:
        return [_public_endpoint(ep, self._subs_of(ep.name))
                for ep in sorted(self.routing.endpoints.values(), key=lambda e: e.name.lower())
                if self._visible(key, ep)]

    def endpoint(self, key: ApiKey, name: str) -> dict:
        ep = self._endpoint(key, name)
        return _public_endpoint(ep, self._subs_of(name))

    def subscriptions(self, key: ApiKey, name: str | None, endpoints: list[str], categories: list[str],
                      subscribed: str) -> list[dict]:
        visible = {n for n, ep in self.routing.endpoints.items() if self._visible(key, ep)}
        rows = []
        for entry in self.activities_catalog():
            code = entry["activity_code"]
            if name and name.lower() not in code.lower():
                continue
            if categories and entry["category"] not in categories:
                continue
            subs = sorted((s for s in self.routing.subscriptions.values()
                           if s.activity_code == code and s.endpoint in visible), key=lambda s: s.endpoint.lower())
            if endpoints:
                subs = [s for s in subs if s.endpoint in endpoints]
            if subscribed == "subscribed" and not subs:
                continue
            if subscribed == "unsubscribed" and subs:
                continue
            rows.append({**entry, "endpoints": [
                {"endpoint": s.endpoint, "enabled": s.enabled, "endpoint_enabled": self.routing.endpoints[s.endpoint].enabled,
                 "description": s.description, "writeback_code1": s.writeback_code1,
                 "writeback_code2": s.writeback_code2} for s in subs]})
        return rows

    def status(self, key: ApiKey) -> list[dict]:
        now = time.time()
        out = []
        for ep in sorted(self.routing.endpoints.values(), key=lambda e: e.name.lower()):
            if not self._visible(key, ep):
                continue
            workers = [v for k, v in self.statuses.items() if k.startswith(f"status:{ep.name}:")]
            live = [w for w in workers if now - float(w.get("at") or 0) < STALE_S]
            newest = max(live or workers, key=lambda w: w.get("at") or 0, default={})
            hold_until = max([float(self.holds.get(ep.name, {}).get("not_before") or 0)] +
                             [float(w.get("hold_until") or 0) for w in live])
            last_err = max(workers, key=lambda w: w.get("last_error_at") or 0, default={})
            waits = [w for w in live if w.get("last_wait_at") and now - w["last_wait_at"] < 30]
            held = None
            if hold_until > now:
                held = {"reason": "retry_after", "until": hold_until}
            elif waits:
                w = max(waits, key=lambda w: w["last_wait_at"])
                held = {"reason": w["last_wait_reason"], "until": w["last_wait_at"] + w.get("last_wait_s", 0)}
            out.append({
                "endpoint": ep.name, "enabled": ep.enabled, "workers": len(live),
                "delivered": sum(int(w.get("delivered") or 0) for w in workers),
                "retried": sum(int(w.get("retried") or 0) for w in workers),
                "dead": sum(int(w.get("dead") or 0) for w in workers),
                "retrying": {tier: max([int((w.get("retry_backlog") or {}).get(tier) or 0) for w in live] or [0])
                             for tier, _ in H.RETRY_TIERS},
                "lag": max([int(w.get("enriched_lag") or 0) for w in live] or [0]) if live else None,
                "last_success_at": max([w.get("last_success_at") or 0 for w in workers] or [0]) or None,
                "last_error": last_err.get("last_error"), "last_error_class": last_err.get("last_error_class"),
                "last_error_at": last_err.get("last_error_at"),
                "paused": newest.get("paused"), "held_back": held})
        return out

    async def dead_letters(self, key: ApiKey, endpoint: str | None, limit: int) -> list[dict]:
        if endpoint:
            self._endpoint(key, endpoint)
        decisions = await replay_mod.plan(self.settings, endpoint, None, None, None, 10 ** 9)
        rows = []
        for d in decisions:
            c = d.candidate
            if not self._sees_dead_letter(key, c.info.endpoint):
                continue
            rows.append({"endpoint": c.info.endpoint, "activity_key": c.activity_key, "tenant": c.info.tenant,
                         "reason": c.info.error_class, "last_error": c.info.message, "attempts": c.info.attempts,
                         "first_failure_at": c.info.first_failure, "dead_at": c.info.timestamp,
                         "replay_count": c.replay_count, "replayed": d.action == "already-replayed",
                         "marker": c.marker})
        return rows[-limit:]

    def audit_entries(self, key: ApiKey, limit: int) -> list[dict]:
        """The newest entries the key may see, each with ``changes``: field by field, before -> after."""
        rows = [a for a in self.audit_log if ALL_TENANTS in key.tenants
                or set(a.get("tenants") or []) <= set(key.tenants) and a.get("tenants")]
        return [dict(a, changes=audit_changes(a.get("before"), a.get("after"))) for a in reversed(rows[-limit:])]

    # ------------------------------------------------------------------ writes
    async def _publish(self, key: ApiKey, records: list[tuple[str, Any]], action: str, target: str,
                       before, after, tenants) -> None:
        last = None
        for k, value in records:
            last = await self.producer.send_and_wait(self.topics.config, key=k.encode(),
                                                     value=None if value is None else json.dumps(value).encode())
        audit = await self.producer.send_and_wait(self.topics.audit, value=json.dumps({
            "at": time.time(), "key_id": key.id, "role": key.role, "key_tenants": list(key.tenants),
            "tenants": sorted(tenants), "action": action, "target": target, "before": before,
            "after": after}).encode())
        if last is not None:
            await self.config.caught_up_to(last.partition, last.offset)
        await self.audit.caught_up_to(audit.partition, audit.offset)

    async def put_scoring_model(self, key: ApiKey, tenant: str, body: dict) -> dict:
        """Create or change a tenant's scoring model (its generation kept: a change scores new activities;
        ``activity-sync scores rebuild`` re-scores the past). Audited like every change."""
        from core.scoring import ScoringError, parse_model

        self._writer(key)
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
        if not key.sees((tenant,)):
            raise AdminError(403, f"key {key.id!r} may not manage tenant {tenant!r}", "tenant")
        current = self.scoring.get(tenant)
        try:
            model = parse_model({**body, "tenant": tenant,
                                 "generation": current.generation if current else 0})
        except ScoringError as exc:
            raise AdminError(422, str(exc), exc.field) from None
        async with self._lock:
            await self._publish(key, [(model.key(), model.record())], "update" if current else "create",
                                model.key(), current.record() if current else None, model.record(), [tenant])
        return model.record()

    # ------------------------------------------------------------------ community lists
    def _list_tenant(self, key: ApiKey, tenant: str | None, write: bool = False) -> str:
        if not isinstance(tenant, str) or not tenant:
            raise AdminError(422, "tenant: the TenantCode of the list", "tenant")
        if not key.sees((tenant,)):
            raise AdminError(404, f"no lists of tenant {tenant!r} for this key", "tenant")
        if write and not key.super_admin:
            raise AdminError(403, f"key {key.id!r} is not a super admin's: only super admins create and change "
                                  f"lists and the marketing connection")
        return tenant

    def list_summaries(self, key: ApiKey, tenant: str | None = None, sample: int = 10) -> list[dict]:
        from core.lists import target_group_name

        out = []
        for t, defs in sorted(self.lists.defs.items()):
            if not key.sees((t,)) or (tenant and t != tenant):
                continue
            for lid, d in sorted(defs.items()):
                members = sorted(self.lists.current(t, lid))
                out.append({**d.record(), "target_group": target_group_name(d.name), "offered": bool(
                    d.enabled and target_group_name(d.name)), "count": len(members), "sample": members[:sample]})
        return out

    def list_connection(self, key: ApiKey, tenant: str) -> dict | None:
        tenant = self._list_tenant(key, tenant)
        c = self.lists.connections.get(tenant)
        return c.public() if c else None

    async def put_list(self, key: ApiKey, tenant: str, lid: str, body: dict) -> dict:
        from core.config import ConfigError, list_from_dict

        tenant = self._list_tenant(key, tenant, write=True)
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
        try:
            lst = list_from_dict({**body, "tenant": tenant, "id": lid}, self.catalog)
        except ConfigError as exc:
            raise AdminError(422, str(exc), getattr(exc, "field", None)) from None
        current = self.lists.defs.get(tenant, {}).get(lid)
        async with self._lock:
            await self._publish(key, [(lst.key(), lst.record())], "update" if current else "create", lst.key(),
                                current.record() if current else None, lst.record(), [tenant])
        return lst.record()

    async def delete_list(self, key: ApiKey, tenant: str, lid: str) -> dict:
        tenant = self._list_tenant(key, tenant, write=True)
        current = self.lists.defs.get(tenant, {}).get(lid)
        if current is None:
            raise AdminError(404, f"no list {lid!r} in tenant {tenant}")
        async with self._lock:
            await self._publish(key, [(current.key(), None)], "delete", current.key(), current.record(), None, [tenant])
        return {"deleted": current.key()}

    def preview_list(self, key: ApiKey, tenant: str | None, criteria) -> dict:
        from core.lists import ListError

        tenant = self._list_tenant(key, tenant)
        try:
            return self.lists.preview(tenant, criteria)
        except ListError as exc:
            raise AdminError(422, str(exc), exc.field) from None

    async def issue_list_connection(self, key: ApiKey, tenant: str, active: bool = True) -> dict:
        """New IAMKey and password for the tenant's connection (the password shown this once; stored hashed)."""
        from core.lists import issue_connection

        tenant = self._list_tenant(key, tenant, write=True)
        conn, password = issue_connection(tenant, active)
        current = self.lists.connections.get(tenant)
        async with self._lock:
            await self._publish(key, [(conn.key(), conn.record())], "update" if current else "create", conn.key(),
                                current.public() if current else None, conn.public(), [tenant])
        return {**conn.public(), "password": password}

    async def reconcile_list(self, key: ApiKey, tenant: str, lid: str) -> dict:
        """The list's count beside its target group's, the difference explained (the partner API of the
        tenant's informz endpoint reads the platform's side)."""
        from sinks.providers.informz.reconcile import reconcile

        tenant = self._list_tenant(key, tenant)
        d = self.lists.defs.get(tenant, {}).get(lid)
        if d is None:
            raise AdminError(404, f"no list {lid!r} in tenant {tenant}")
        from .lists import member_of_feed

        members = [member_of_feed(rec, self.directory, tenant) for rec in self.lists.current(tenant, lid).values()]
        groups = subscribers = None
        ep = next((e for e in self.routing.endpoints.values() if e.provider == "informz" and e.serves(tenant)),
                  None)
        error = None
        if ep is not None:
            from sinks.providers.informz.sink import partner_client

            try:
                async with partner_client(ep) as client:
                    groups = await client.grid("interest_target_group", ["target_group_id", "target_group_name",
                                                                         "folder_name", "is_deleted"])
                    tg = next((g for g in groups if g.get("target_group_name") == d.target_group), None)
                    if tg is not None:
                        subscribers = await client.grid("target_group_subscriber", ["email", "remote_id", "status"],
                                                        [("target_group_id", "EQ", tg["target_group_id"])])
            except Exception as exc:  # noqa: BLE001 - the report says the platform could not be read, and why
                groups, error = None, f"{type(exc).__name__}: {exc}"
        out = reconcile(d.name, members, groups, subscribers)
        out.update(tenant=tenant, id=lid, endpoint=ep.name if ep else None, platform_error=error)
        return out

    def _build_endpoint(self, key: ApiKey, body: dict, current: Endpoint | None) -> Endpoint:
        """The endpoint a body asks for (merged over ``current``), through the one parser every worker
        and ``load-config`` use; its errors name their field."""
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
        fields = {k: v for k, v in body.items() if k != "subscriptions"}
        merged = {**(current.record() if current else {}), **fields}
        if current is not None and ("tenant" in fields or "tenants" in fields):
            merged.pop("tenants" if "tenant" in fields else "tenant", None)
        try:
            ep = endpoint_from_dict(merged)
            parse_endpoint(ep)
        except (ConfigError, SettingsError) as exc:
            raise AdminError(422, str(exc), exc.field) from None
        if not key.sees(ep.tenants):
            raise AdminError(403, f"key {key.id!r} may not manage tenant(s) {', '.join(ep.tenants)}", "tenant")
        return ep

    def _subscription_records(self, ep: Endpoint, codes) -> list[tuple[str, dict]]:
        if codes is None:
            return []
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise AdminError(422, "subscriptions: a list of activity codes", "subscriptions")
        out = []
        for code in dict.fromkeys(codes):
            if code not in self.catalog.codes:
                raise AdminError(422, f"subscriptions: unknown activity code {code!r}", "subscriptions")
            sub = Subscription(code, ep.name, self.default_description(code))
            try:
                check_subscription(sub, self.catalog)
            except ConfigError as exc:
                raise AdminError(422, str(exc), "subscriptions") from None
            out.append((sub.key(), sub.record()))
        return out

    async def create_endpoint(self, key: ApiKey, body: dict) -> dict:
        self._writer(key)
        async with self._lock:
            ep = self._build_endpoint(key, body, None)
            if ep.name in self.routing.endpoints:
                raise self._exists(key, ep.name)
            records = [(ep.key(), _record(ep))] + self._subscription_records(ep, body.get("subscriptions"))
            await self._publish(key, records, "create endpoint", ep.name, None, _record(ep), ep.tenants)
            return self.endpoint(key, ep.name)

    async def update_endpoint(self, key: ApiKey, name: str, body: dict) -> dict:
        self._writer(key)
        async with self._lock:
            current = self._endpoint(key, name)
            ep = self._build_endpoint(key, body, current)
            records: list[tuple[str, Any]] = []
            if ep.name != name:  # a rename: the new one with the old one's subscriptions, then the old one goes
                if ep.name in self.routing.endpoints:
                    raise self._exists(key, ep.name)
                records.append((ep.key(), _record(ep)))
                for s in self._subs_of(name):
                    moved = Subscription(s.activity_code, ep.name, s.description, s.enabled, s.writeback_code1,
                                         s.writeback_code2)
                    records += [(moved.key(), _record(moved)), (s.key(), None)]
                records.append((current.key(), None))
            else:
                records.append((ep.key(), _record(ep)))
            if "subscriptions" in body:
                wanted = set(body.get("subscriptions") or [])
                have = {s.activity_code: s for s in self._subs_of(name)}
                records += self._subscription_records(ep, [c for c in body["subscriptions"] if c not in have])
                records += [(Subscription(c, ep.name, "", True).key(), None) for c in have if c not in wanted]
            await self._publish(key, records, "update endpoint", name, _record(current), _record(ep),
                                set(current.tenants) | set(ep.tenants))
            return self.endpoint(key, ep.name)

    async def delete_endpoint(self, key: ApiKey, name: str, dry_run: bool) -> dict:
        if not dry_run:
            self._writer(key)
        async with self._lock:
            ep = self._endpoint(key, name)
            subs = self._subs_of(name)
            answer = {"endpoint": name, "subscriptions": len(subs), "dry_run": dry_run}
            if dry_run:
                return answer
            records = [(s.key(), None) for s in subs] + [(ep.key(), None)]
            await self._publish(key, records, "delete endpoint", name, _record(ep), None, ep.tenants)
            return answer

    async def put_subscription(self, key: ApiKey, code: str, endpoint: str, body: dict) -> dict:
        self._writer(key)
        async with self._lock:
            ep = self._endpoint(key, endpoint)
            if code not in self.catalog.codes:
                raise AdminError(404, f"no activity {code!r} in the catalog")
            if not isinstance(body, dict):
                raise AdminError(400, "the body must be a JSON object")
            unknown = sorted(set(body) - {"enabled", "description", "writeback_code1", "writeback_code2"})
            if unknown:
                raise AdminError(422, f"unknown field {unknown[0]!r}", unknown[0])
            current = self.routing.subscriptions.get(f"subscription:{code}:{endpoint}")
            base = current.record() if current else Subscription(
                code, endpoint, self.default_description(code)).record()
            base.pop("writeback_codes")
            if current:
                base.update(writeback_code1=current.writeback_code1, writeback_code2=current.writeback_code2)
            try:
                sub = subscription_from_dict({**base, **body}, self.writeback_max)
                check_subscription(sub, self.catalog)
            except ConfigError as exc:
                raise AdminError(422, str(exc), exc.field) from None
            await self._publish(key, [(sub.key(), _record(sub))], "put subscription", sub.key(),
                                _record(current), _record(sub), ep.tenants)
            return {"activity_code": code, **_record(sub)}

    async def delete_subscription(self, key: ApiKey, code: str, endpoint: str) -> dict:
        self._writer(key)
        async with self._lock:
            ep = self._endpoint(key, endpoint)
            current = self.routing.subscriptions.get(f"subscription:{code}:{endpoint}")
            if current is None:
                raise AdminError(404, f"{code} is not subscribed to {endpoint}")
            await self._publish(key, [(current.key(), None)], "delete subscription", current.key(),
                                _record(current), None, ep.tenants)
            return {"deleted": current.key()}

    def _exists(self, key: ApiKey, name: str) -> AdminError:
        """An endpoint name is taken: said as such only to a key that may see the endpoint holding it; to
        any other key the name is merely not available (another tenant's endpoint names are not told)."""
        if self._visible(key, self.routing.endpoints[name]):
            return AdminError(409, f"an endpoint named {name!r} exists already", "name")
        return AdminError(409, f"the name {name!r} is not available; choose another", "name")

    def preview_tenants(self, key: ApiKey, endpoint: str | None) -> set[str] | None:
        """The tenants whose activities a preview may render for ``key`` (None: any): those the key
        sees, and of those, the endpoint's own."""
        allowed = None if ALL_TENANTS in key.tenants else set(key.tenants)
        if endpoint is not None:
            ep = self._endpoint(key, endpoint)
            if ALL_TENANTS not in ep.tenants:
                allowed = set(ep.tenants) if allowed is None else allowed & set(ep.tenants)
        return allowed

    def preview(self, key: ApiKey, code: str, description: str, endpoint: str | None = None) -> dict:
        if code not in self.catalog.codes:
            raise AdminError(404, f"no activity {code!r} in the catalog")
        if not isinstance(description, str):
            raise AdminError(422, "description must be text", "description")
        try:
            template = check_subscription(Subscription(code, "preview", description), self.catalog)
        except ConfigError as exc:
            raise AdminError(422, str(exc), "description") from None
        allowed = self.preview_tenants(key, endpoint)
        rec = next((r for (tenant, c), r in reversed(self.recent.items())
                    if c == code and (allowed is None or tenant in allowed)), None)
        if rec is None:
            return {"activity_code": code, "rendered": None, "activity_key": None,
                    "note": f"no recent {code} activity in activity.enriched to render"}
        props = {d["name"]: d["value"] for d in rec.get("details") or []}
        props.update(ActivityKey=rec["activity_key"], ActivityCode=rec["activity_code"], TenantCode=rec["tenant_code"],
                     LinkUrl=rec.get("link_url") or props.get("LinkUrl"))
        return {"activity_code": code, "rendered": template.render(props), "activity_key": rec["activity_key"],
                "note": None}

    async def replay(self, key: ApiKey, body: dict) -> dict:
        if not isinstance(body, dict):
            raise AdminError(400, "the body must be a JSON object")
        dry_run = body.get("dry_run", True)
        if not isinstance(dry_run, bool):
            raise AdminError(422, "dry_run must be true or false", "dry_run")
        if not dry_run:
            self._writer(key)
        endpoint = body.get("endpoint")
        rows = body.get("rows")  # exactly these dead letters, of any endpoints: [{endpoint, activity_key}]
        if rows is not None:
            if not isinstance(rows, list) or not all(
                    isinstance(r, dict) and isinstance(r.get("endpoint"), str) and isinstance(r.get("activity_key"), str)
                    for r in rows):
                raise AdminError(422, "rows: a list of {endpoint, activity_key}", "rows")
            if endpoint is not None:
                raise AdminError(422, "rows name their endpoints: leave endpoint out", "endpoint")
            for ep in {r["endpoint"] for r in rows}:
                self._endpoint(key, ep)
        if endpoint is not None:
            if not isinstance(endpoint, str):
                raise AdminError(422, "endpoint must be a name", "endpoint")
            self._endpoint(key, endpoint)
        elif rows is None and ALL_TENANTS not in key.tenants:
            raise AdminError(422, "endpoint is required for a tenant key", "endpoint")
        keys = body.get("keys")
        if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
            raise AdminError(422, "keys: a list of ActivityKeys", "keys")
        if rows is not None:
            keys = [r["activity_key"] for r in rows]
        if keys is not None and not keys:  # nothing selected is nothing to replay (not: everything)
            return {"dry_run": dry_run, "would_replay": 0, "replayed": 0, "not_replayed": 0, "items": []}
        max_replays = body.get("max_replays", replay_mod.max_replays())
        if not isinstance(max_replays, int) or isinstance(max_replays, bool) or not 0 <= max_replays <= 1000:
            raise AdminError(422, "max_replays: a whole number from 0 to 1000", "max_replays")
        decisions = await replay_mod.plan(self.settings, endpoint, None, None, set(keys) if keys else None, max_replays)
        decisions = [d for d in decisions if self._sees_dead_letter(key, d.candidate.info.endpoint)]
        if rows is not None:
            wanted = {(r["endpoint"], r["activity_key"]) for r in rows}
            decisions = [d for d in decisions if (d.candidate.info.endpoint, d.candidate.activity_key) in wanted]
        todo = [d for d in decisions if d.action == "replay"]
        n = 0 if dry_run else await replay_mod.execute(self.settings, todo)
        answer = {"dry_run": dry_run, "would_replay": len(todo), "replayed": n, "not_replayed": len(decisions) - len(todo),
                  "items": [{"endpoint": d.candidate.info.endpoint, "activity_key": d.candidate.activity_key,
                             "action": d.action, "reason": d.reason or None} for d in decisions]}
        if dry_run:
            return answer
        md = await self.producer.send_and_wait(self.topics.audit, value=json.dumps({
            "at": time.time(), "key_id": key.id, "role": key.role, "key_tenants": list(key.tenants),
            "tenants": sorted({d.candidate.info.tenant for d in todo if d.candidate.info.tenant}),
            "action": "replay", "target": endpoint or "*", "before": None,
            "after": {"replayed": n, "keys": [d.candidate.activity_key for d in todo][:100]}}).encode())
        await self.audit.caught_up_to(md.partition, md.offset)
        return answer


MASKED = "••••••"
MAX_CHANGES = 100


def audit_changes(before, after, path: str = "") -> list[dict]:
    """What an audited change changed: ``{"field": "settings.url", "before": …, "after": …}`` for each
    leaf that differs (dotted paths into nested settings; a field absent on one side is None there).
    A value that looks like a credential, or a field named like one that is not a reference
    (``…_env`` / ``…_file`` name where a secret is, and are shown), is masked."""
    out: list[dict] = []

    def walk(b, a, where: str) -> None:
        if b == a or len(out) >= MAX_CHANGES:
            return
        if isinstance(b, dict) or isinstance(a, dict):
            b = b if isinstance(b, dict) else {}
            a = a if isinstance(a, dict) else {}
            for k in sorted(set(b) | set(a), key=str):
                walk(b.get(k), a.get(k), f"{where}.{k}" if where else str(k))
            return
        out.append({"field": where or "value", "before": _masked(where, b), "after": _masked(where, a)})

    walk(before, after, path)
    return out


def _masked(where: str, v):
    name = where.rsplit(".", 1)[-1]
    if v is None:
        return None
    if SECRET_KEY.search(name) and not SECRET_REF.search(name):
        return MASKED
    if isinstance(v, str) and secret_value(where, v):
        return MASKED
    if isinstance(v, (list, tuple)) and any(isinstance(x, str) and secret_value(where, x) for x in v):
        return MASKED
    return v


def _record(x: Endpoint | Subscription | None) -> dict | None:
    return None if x is None else x.record()
