"""Informz sink: ``CommunityListJoin`` / ``CommunityListLeave`` activities (a ``push: true`` list's
membership changes, :mod:`streams.lists`) written to the list's target group through the partner API.

A batch is folded per target group and member (the member's last change wins), then per target group:
joins are one ``Subscribe`` with ``AddOrUpdateSubscribers`` (synchronous) up to ``bulk_above``
subscribers, a ``BulkUpload`` above; leaves are a ``BulkUpload`` with ``RemoveSubscribers`` (Subscribe
cannot remove). A BulkUpload is asynchronous: the sink polls ``upload_history`` until it is Complete
(its acknowledgement), so a change is delivered when the platform has it. A subscriber the platform
refuses (a malformed e-mail) is that record's permanent failure, dead-lettered with the reason; a
wrong brand, user or password pauses the endpoint (a setup error), anything else is retried.
"""

from __future__ import annotations

import asyncio
import json
from typing import Sequence

import aiohttp

from sinks.contract import (Delivery, FatalError, MappingError, RecordFailure, RetriableError, SetupError,
                            SinkError)
from sinks.http import HttpSink

from .aapi import AapiError
from .client import PartnerClient

CODES = ("CommunityListJoin", "CommunityListLeave")


def partner_client(ep, session: aiohttp.ClientSession | None = None) -> PartnerClient:
    """A partner API client from an ``informz`` endpoint's settings (the reconciliation reads through it)."""
    from sinks.registry import parse_endpoint

    s = parse_endpoint(ep)
    return PartnerClient(s.url, s.brand_id, s.brand, s.username, s.secret("password") or "", session,
                         timeout_s=s.timeout_s)


def error_of(exc: Exception) -> SinkError:
    if isinstance(exc, AapiError):
        if exc.code == "AuthenticationFailed":
            return SetupError(f"Informz: {exc}")
        if getattr(exc, "status", 500) >= 500 and exc.code in ("Fault", "BadEnvelope"):
            return RetriableError(f"Informz: {exc}", status=getattr(exc, "status", None))
        if exc.code in ("UploadTimeout",):
            return RetriableError(f"Informz: {exc}")
        return FatalError(f"Informz: {exc}")
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError)):
        return RetriableError(f"{type(exc).__name__}: {exc}")
    return RetriableError(f"{type(exc).__name__}: {exc}")


def row_of(d: Delivery) -> tuple[str, str, bool, dict]:
    """``(target group, remote id, joined, subscriber)`` of one delivery."""
    if d.activity_code not in CODES:
        raise MappingError(f"{d.activity_code}: the informz provider writes {' and '.join(CODES)}")
    try:
        p = json.loads(d.details_json or "{}") if not d.details else dict(d.details)
    except ValueError:
        p = {}
    tg, rid = p.get("TargetGroupName"), p.get("MemberExternalKey") or d.customer_id
    if not tg or not rid:
        raise MappingError("no TargetGroupName or member: not a community list activity")
    return tg, rid, d.activity_code == "CommunityListJoin", {
        "email": p.get("MemberEmail") or "", "remote_id": rid,
        "fields": {"First_Name": p.get("MemberFirstName"), "Last_Name": p.get("MemberLastName")}}


class InformzSink(HttpSink):
    provider = "informz"

    async def setup(self) -> None:
        s = self.ctx.settings
        self.client = PartnerClient(s.url, s.brand_id, s.brand, s.username, s.secret("password") or "", self.session)

    def request_rounds(self, n: int) -> int:
        return 1

    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        failures: list[RecordFailure] = []
        last: dict[tuple[str, str], tuple[int, bool, dict]] = {}
        for i, d in enumerate(batch):
            try:
                tg, rid, joined, sub = row_of(d)
            except SinkError as exc:
                failures.append(RecordFailure(i, exc))
                continue
            last[(tg, rid)] = (i, joined, sub)
        groups: dict[str, dict[bool, list[tuple[int, dict]]]] = {}
        for (tg, _), (i, joined, sub) in last.items():
            groups.setdefault(tg, {True: [], False: []})[joined].append((i, sub))
        s = self.ctx.settings
        try:
            for tg, by in groups.items():
                joins, leaves = by[True], by[False]
                if joins and len(joins) <= s.bulk_above:
                    self.ctx.observe_http(200)
                    _, refused = await self.client.subscribe(tg, "AddOrUpdateSubscribers", [x for _, x in joins])
                    bad = {(r["email"] or "").strip().lower(): r["reason"] for r in refused}
                    failures += [RecordFailure(i, FatalError(f"Informz refused {sub['email']!r}: {bad[k]}"))
                                 for i, sub in joins if (k := (sub["email"] or "").strip().lower()) in bad]
                elif joins:
                    await self._bulk(tg, "AddOrUpdateSubscribers", [x for _, x in joins])
                if leaves:
                    await self._bulk(tg, "RemoveSubscribers", [x for _, x in leaves])
        except SinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is classified: retried, paused or dead-lettered
            raise error_of(exc) from None
        return failures

    async def _bulk(self, tg: str, action: str, subs: list[dict]) -> dict:
        uid = await self.client.bulk_upload(tg, action, subs)
        row = await self.client.wait_upload(uid, self.ctx.settings.upload_timeout_s)
        self.ctx.observe_http(200)
        if row.get("status") != "Complete":
            raise RetriableError(f"Informz upload {uid} {row.get('status')}")
        return row


async def replace_all(ep, target_group: str, members: list[dict], timeout_s: float = 1800.0) -> dict:
    """A full resync through the push direction: the target group set to exactly ``members``
    (``BulkUpload`` with ``ReplaceAllSubscribers``), waited for."""
    subs = [{"email": m.get("Email") or "", "remote_id": m["RemoteId"],
             "fields": {"First_Name": m.get("FirstName"), "Last_Name": m.get("LastName")}} for m in members]
    async with partner_client(ep) as client:
        uid = await client.bulk_upload(target_group, "ReplaceAllSubscribers", subs)
        row = await client.wait_upload(uid, timeout_s)
    return {"upload_id": uid, **row, "rows": len(subs), "detail": json.dumps(row)}
