"""A fake Thrive Marketing Professional (formerly Informz): target groups pulled from the community
(the Online Community Connection) and the partner API ("AAPI") for writes.

What it follows:

- **The connection** (``../shared/seeds/online-community-connection.txt``): Integration Settings
  (Active box, IAMKey, Password); target groups created in the folder ``Online Community``, made on
  the first sync; **Refresh Target Group List** re-reads the lists the community offers (a new list
  appears as a target group never synced); **Sync Target Group Now / Resync Now** shows "in progress"
  while it runs; **sync on send** (a mailing resyncs its target groups just before it is sent);
  **hourly sync** of the target groups of a running campaign. Members are keyed by Remote ID (the
  community's Legacy Contact Key). The seed's count mismatches are reproduced: a subscriber
  unsubscribed here stays unsubscribed (a sync never resubscribes them, and they are not counted), a
  malformed or invalid e-mail is refused (listed with its reason in the group's Info), and members of
  the community sharing an e-mail collapse into one subscriber (Informz keys subscribers by e-mail).
- **The partner API** (``../shared/NEW-SYSTEMS.md`` section 1, :mod:`.aapi`): one SOAP operation
  ``PostInformzMessage`` at ``/aapi/InformzService.svc``, credentials in the body (a wrong one is an
  ``InformzServiceFault``); ``Subscribe`` (synchronous, at most 1,000 subscribers, ``AddOrUpdateSubscribers``
  or ``ReplaceAllSubscribers``); ``BulkUpload`` (asynchronous: answers an ``UploadID`` at once, done a
  moment later, its outcome in the ``upload_history`` grid; ``AddOrUpdateSubscribers``,
  ``ReplaceAllSubscribers``, ``RemoveSubscribers``, ``UnsubscribeSubscribers``, ``ResubscribeSubscribers``);
  ``GridRequest`` of at most 1,000 rows (``StartRow``/``NumberOfRows``, conditions ``EQ``/``IN``/...).

Where the vendor is silent, the fake's choices:

- The community-side feed is not published by Higher Logic; the fake reads ours
  (``docs/occ-feed.openapi.json``): ``GET {feed}/lists`` and ``GET {feed}/lists/{ListKey}/members``
  with ``HLIAMKey``/``HLPassword`` headers, paging by ``after`` and, on a resync, ``since`` (the
  ``Version`` of the last sync): only changes are transferred.
- The buttons are HTTP calls under ``/_ui/`` (``POST /_ui/groups/refresh``, ``POST /_ui/groups/{id}/sync``,
  ``GET /_ui/groups/{id}`` for the Info panel, ``POST /_ui/mailings``, ``POST /_ui/campaigns``,
  ``POST /_ui/clock/hour`` to run the hourly pass now, ``DELETE /_ui/groups/{id}``,
  ``POST /_ui/subscribers/unsubscribe``).
- A target group deleted here is recreated (same name, same folder, never synced) by the next
  Refresh, campaign hour or mailing that needs its list; a sync of a list the community no longer
  offers fails with that reason in the Info panel.
- Grids: ``interest_target_group`` (``brand_ID``, ``is_deleted``, ``target_group_id``,
  ``target_group_name``, plus ``folder_name`` and ``subscriber_count``), ``upload_history``
  (``upload_id``, ``status``, ``action``, ``interest_name``, ``total_rows``, ``succeeded``, ``failed``), and
  ``target_group_subscriber`` (``target_group_id``, ``email``, ``remote_id``, ``status``) for the
  reconciliation.
- A partner ``Subscribe``/``BulkUpload`` naming an interest that does not exist creates it in
  ``Online Community``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import os
import time

import aiohttp
from aiohttp import web

from core.fakes import FakeServer, fake_main
from core.lists import FOLDER, email_key, valid_email

from .aapi import (GRID_MAX_ROWS, SUBSCRIBE_MAX, AapiError, fault_envelope, grid_response, result_envelope,
                   unwrap)


class FakeInformz(FakeServer):
    path = "/aapi/InformzService.svc"

    def __init__(self, brand_id: str = "9999", brand: str = "Demo", user: str = "partner",
                 password: str = "partner-password", hour_s: float = 3600.0, bulk_delay_s: float = 0.2) -> None:
        self.brand_id, self.brand, self.user, self.password = brand_id, brand, user, password
        self.hour_s, self.bulk_delay_s = hour_s, bulk_delay_s
        self.integration = {"active": False, "iam_key": None, "password": None, "feed_url": None}
        self.folders: dict[str, int] = {}
        self.groups: dict[int, dict] = {}
        self.subscribers: dict[str, dict] = {}      # e-mail (lower case) -> subscriber
        self.campaigns: dict[int, dict] = {}
        self.mailings: list[dict] = []
        self.uploads: dict[int, dict] = {}
        self.feed_requests: list[dict] = []
        self._ids = itertools.count(208900)
        self._hourly: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()

    latency = 0.0

    def control(self, spec: dict) -> None:
        """``latency_ms``: answer every partner API call this much later."""
        if "latency_ms" in spec:
            self.latency = float(spec["latency_ms"]) / 1000

    # ------------------------------------------------------------------ model
    def folder(self, name: str = FOLDER) -> int:
        if name not in self.folders:
            self.folders[name] = next(self._ids)
        return self.folders[name]

    def new_group(self, name: str, list_key: str | None, folder: str = FOLDER) -> dict:
        self.folder(folder)
        g = {"id": next(self._ids), "name": name, "folder": folder, "list_key": list_key, "state": "never",
             "version": None, "members": {}, "rejected": [], "last_sync": None, "error": None, "syncs": 0,
             "last_transfer": None}
        self.groups[g["id"]] = g
        return g

    def group_of_list(self, list_key: str) -> dict | None:
        return next((g for g in self.groups.values() if g["list_key"] == list_key), None)

    def group_named(self, name: str) -> dict | None:
        return next((g for g in self.groups.values() if g["name"] == name), None)

    def emails(self, g: dict) -> set[str]:
        """The group's distinct subscriber addresses (members sharing an e-mail are one subscriber)."""
        return set(g["members"].values())

    def count(self, g: dict) -> int:
        """Subscribers a mailing to the group reaches: distinct e-mails, not unsubscribed."""
        return sum(1 for e in self.emails(g) if self.subscribers.get(e, {}).get("status") == "subscribed")

    def upsert_subscriber(self, email: str, remote_id: str | None, first=None, last=None) -> str:
        k = email_key(email)
        s = self.subscribers.get(k)
        if s is None:
            s = self.subscribers[k] = {"email": email.strip(), "remote_id": remote_id, "status": "subscribed"}
        if remote_id:
            s["remote_id"] = remote_id
        if first is not None:
            s["first_name"] = first
        if last is not None:
            s["last_name"] = last
        return k

    def info(self, g: dict) -> dict:
        return {"id": g["id"], "name": g["name"], "folder": g["folder"], "list_key": g["list_key"],
                "state": g["state"], "in_progress": g["state"] == "in_progress", "last_sync": g["last_sync"],
                "syncs": g["syncs"], "error": g["error"], "members": len(g["members"]),
                "last_transfer": g["last_transfer"],
                "subscribers": len(self.emails(g)), "count": self.count(g),
                "unsubscribed": sorted(e for e in self.emails(g) if self.subscribers.get(e, {}).get("status")
                                       != "subscribed"),
                "rejected": g["rejected"], "remote_ids": sorted(g["members"])}

    # ------------------------------------------------------------------ the community feed
    async def _feed(self, session: aiohttp.ClientSession, path: str, params: dict | None = None) -> dict:
        i = self.integration
        if not i["active"] or not i["feed_url"]:
            raise RuntimeError("the connection is not active (Integration Settings)")
        headers = {"HLIAMKey": i["iam_key"] or "", "HLPassword": i["password"] or ""}
        url = i["feed_url"].rstrip("/") + path
        async with session.get(url, params=params or {}, headers=headers) as resp:
            self.feed_requests.append({"path": path, "params": dict(params or {}), "status": resp.status})
            if resp.status != 200:
                raise RuntimeError(f"the community answered {resp.status}: {(await resp.text())[:200]}")
            return await resp.json()

    async def refresh(self) -> list[dict]:
        """Refresh Target Group List: a target group (never synced) for each list the community offers."""
        async with aiohttp.ClientSession() as s:
            doc = await self._feed(s, "/lists")
        folder = doc.get("Folder") or FOLDER
        self.folder(folder)
        offered = []
        for lst in doc.get("Lists", []):
            g = self.group_of_list(lst["ListKey"])
            if g is None:
                g = self.new_group(lst["TargetGroupName"], lst["ListKey"], folder)
            else:
                g["name"] = lst["TargetGroupName"]
            offered.append(self.info(g))
        return offered

    async def sync(self, g: dict) -> dict:
        """Sync Target Group Now (never synced) / Resync Now: the list's members, only changes when the
        group has a version to start from."""
        g["state"], g["error"] = "in_progress", None
        try:
            async with aiohttp.ClientSession() as s:
                since = g["version"] if g["members"] or g["version"] else None
                params: dict = {"limit": "1000"}
                if since:
                    params["since"] = since
                full, members, removed, version = None, {}, [], None
                while True:
                    page = await self._feed(s, f"/lists/{g['list_key']}/members", params)
                    if full is None:
                        full, version = bool(page.get("Full", True)), page.get("Version")
                    for m in page.get("Members", []):
                        members[m["RemoteId"]] = m
                    removed += page.get("Removed", [])
                    if not page.get("HasMoreMembers"):
                        break
                    params = {**params, "after": page["Next"]}
            current = {} if full else dict(g["members"])
            rejected = [] if full else [r for r in g["rejected"] if r["remote_id"] not in members
                                        and r["remote_id"] not in removed]
            for rid in removed:
                current.pop(rid, None)
            for rid, m in members.items():
                email = m.get("Email")
                if not valid_email(email):
                    current.pop(rid, None)
                    rejected = [r for r in rejected if r["remote_id"] != rid]
                    rejected.append({"remote_id": rid, "email": email,
                                     "reason": "no e-mail address" if not email else "malformed e-mail address"})
                    continue
                rejected = [r for r in rejected if r["remote_id"] != rid]
                current[rid] = self.upsert_subscriber(email, rid, m.get("FirstName"), m.get("LastName"))
            g["members"], g["rejected"], g["version"] = current, rejected, version
            g["last_transfer"] = {"full": full, "members": len(members), "removed": len(removed)}
            g["state"], g["last_sync"], g["syncs"] = "synced", time.time(), g["syncs"] + 1
        except Exception as exc:  # noqa: BLE001 - a failed sync shows in the Info panel, as the vendor's does
            g["state"], g["error"] = "failed", f"{type(exc).__name__}: {exc}"
        return self.info(g)

    async def ensure_group(self, list_key: str, name: str) -> dict:
        """The group of a list, recreated (never synced) if it was deleted here."""
        g = self.group_of_list(list_key)
        return g if g is not None else self.new_group(name, list_key)

    async def hour(self) -> list[dict]:
        """The hourly pass: every running campaign's target groups are resynced."""
        done = []
        for c in self.campaigns.values():
            if not c["running"]:
                continue
            for list_key, name in c["lists"]:
                g = await self.ensure_group(list_key, name)
                done.append(await self.sync(g))
        return done

    async def _hourly_loop(self) -> None:
        while True:
            await asyncio.sleep(self.hour_s)
            await self.hour()

    # ------------------------------------------------------------------ the buttons
    async def ui_integration(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            i = self.integration
            return web.json_response({"active": i["active"], "iam_key": i["iam_key"], "feed_url": i["feed_url"]})
        body = await request.json()
        for k in ("active", "iam_key", "password", "feed_url"):
            if k in body:
                self.integration[k] = body[k]
        return web.json_response({"ok": True})

    async def ui_groups(self, request: web.Request) -> web.Response:
        folder = request.query.get("folder")
        return web.json_response([self.info(g) for g in self.groups.values() if folder is None or g["folder"] == folder])

    async def ui_folders(self, request: web.Request) -> web.Response:
        return web.json_response([{"id": i, "name": n} for n, i in self.folders.items()])

    async def ui_refresh(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(await self.refresh())
        except RuntimeError as exc:
            return web.json_response({"error": str(exc)}, status=409)

    def _group(self, request: web.Request) -> dict:
        try:
            g = self.groups.get(int(request.match_info["id"]))
        except ValueError:
            g = None
        if g is None:
            raise web.HTTPNotFound(text="no such target group")
        return g

    async def ui_group(self, request: web.Request) -> web.Response:
        g = self._group(request)
        if request.method == "DELETE":
            del self.groups[g["id"]]
            return web.json_response({"deleted": g["id"]})
        return web.json_response(self.info(g))

    async def ui_sync(self, request: web.Request) -> web.Response:
        """Sync Target Group Now / Resync Now: answers at once, "in progress", the sync runs on
        (``?wait=1`` waits for it)."""
        g = self._group(request)
        if g["state"] == "in_progress":
            return web.json_response(self.info(g), status=202)
        task = asyncio.ensure_future(self.sync(g))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if request.query.get("wait"):
            return web.json_response(await task)
        await asyncio.sleep(0)
        return web.json_response(self.info(g), status=202)

    async def ui_unsubscribe(self, request: web.Request) -> web.Response:
        body = await request.json()
        s = self.subscribers.get(email_key(body.get("email")) or "")
        if s is None:
            raise web.HTTPNotFound(text="no such subscriber")
        s["status"] = "unsubscribed"
        return web.json_response(s)

    async def ui_mailing(self, request: web.Request) -> web.Response:
        """A mailing sent to target groups: each resynced just before (sync on send)."""
        body = await request.json()
        recipients: set[str] = set()
        for gid in body.get("target_groups", []):
            g = self.groups.get(int(gid))
            if g is None:
                return web.json_response({"error": f"target group {gid} does not exist"}, status=404)
            if g["list_key"]:
                await self.sync(g)
            recipients |= {e for e in self.emails(g) if self.subscribers[e]["status"] == "subscribed"}
        m = {"id": len(self.mailings) + 1, "at": time.time(), "recipients": sorted(recipients)}
        self.mailings.append(m)
        return web.json_response(m)

    async def ui_campaign(self, request: web.Request) -> web.Response:
        body = await request.json()
        lists = []
        for gid in body.get("target_groups", []):
            g = self.groups.get(int(gid))
            if g is None or not g["list_key"]:
                return web.json_response({"error": f"target group {gid}: not a community target group"}, status=404)
            lists.append((g["list_key"], g["name"]))
        c = {"id": len(self.campaigns) + 1, "lists": lists, "running": True}
        self.campaigns[c["id"]] = c
        return web.json_response(c)

    async def ui_campaign_stop(self, request: web.Request) -> web.Response:
        c = self.campaigns.get(int(request.match_info["id"]))
        if c is None:
            raise web.HTTPNotFound(text="no such campaign")
        c["running"] = False
        return web.json_response(c)

    async def ui_hour(self, request: web.Request) -> web.Response:
        return web.json_response(await self.hour())

    # ------------------------------------------------------------------ the partner API
    async def soap(self, request: web.Request) -> web.Response:
        body = await request.text()
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            doc = unwrap(body, "x")
            self._check_credentials(doc)
            if doc.tag == "ActionRequest":
                out = await self._action(doc)
            elif doc.tag == "GridRequest":
                out = self._grid(doc)
            else:
                raise AapiError("UnknownRequest", f"{doc.tag}: an ActionRequest or a GridRequest")
        except AapiError as exc:
            return web.Response(text=fault_envelope(exc.code, exc.message, exc.reason), status=500,
                                content_type="text/xml")
        return web.Response(text=result_envelope(out), content_type="text/xml")

    def _check_credentials(self, doc) -> None:
        brand = doc.find("Brand")
        if brand is None or brand.get("id") != self.brand_id or doc.findtext("User") != self.user \
                or doc.findtext("Password") != self.password:
            raise AapiError("AuthenticationFailed", "the brand, user or password is wrong")

    def _interest(self, name: str) -> dict:
        return self.group_named(name) or self.new_group(name, None)

    def _apply(self, g: dict, action: str, rows: list[dict]) -> tuple[int, list[dict]]:
        ok, failed = 0, []
        if action == "ReplaceAllSubscribers":
            g["members"] = {}
        for r in rows:
            email, rid = r.get("email"), r.get("remote_id") or r.get("email")
            if not valid_email(email):
                failed.append({"email": email or "", "reason": "malformed e-mail address"})
                continue
            k = email_key(email)
            if action in ("AddOrUpdateSubscribers", "ReplaceAllSubscribers"):
                g["members"][rid] = self.upsert_subscriber(email, r.get("remote_id"), r.get("first"), r.get("last"))
            elif action == "RemoveSubscribers":
                g["members"] = {m: e for m, e in g["members"].items() if e != k}
            elif action in ("UnsubscribeSubscribers", "ResubscribeSubscribers"):
                if k in self.subscribers:
                    self.subscribers[k]["status"] = "unsubscribed" if action[0] == "U" else "subscribed"
            else:
                raise AapiError("InvalidAction", f"{action}: not an action")
            ok += 1
        return ok, failed

    async def _action(self, doc) -> str:
        sub = doc.find("Subscribe")
        if sub is not None:
            action = sub.findtext("InterestDetails/InterestAction") or ""
            if action not in ("AddOrUpdateSubscribers", "ReplaceAllSubscribers"):
                raise AapiError("InvalidAction", f"Subscribe takes AddOrUpdateSubscribers or ReplaceAllSubscribers, "
                                                 f"not {action!r}")
            rows = [{"email": s.findtext("Email"), "remote_id": s.findtext("ID"),
                     "first": s.findtext("Fields/Field[@element='First_Name']"),
                     "last": s.findtext("Fields/Field[@element='Last_Name']")} for s in sub.iter("Subscriber")]
            if len(rows) > SUBSCRIBE_MAX:
                raise AapiError("TooManySubscribers", f"{len(rows)} subscribers: Subscribe takes {SUBSCRIBE_MAX} at "
                                                      f"most (use BulkUpload)")
            ok, failed = 0, []
            for name in [n.text or "" for n in sub.iter("InterestName")]:
                o, f = self._apply(self._interest(name), action, rows)
                ok, failed = ok + o, failed + f
            fails = "".join(f"<Subscriber><Email>{x['email']}</Email><Reason>{x['reason']}</Reason></Subscriber>"
                            for x in failed)
            return f"<ActionResponse><Subscribe><Success>{ok}</Success><Failed>{fails}</Failed></Subscribe></ActionResponse>"
        bulk = doc.find("BulkUpload")
        if bulk is None:
            raise AapiError("UnknownAction", "the ActionRequest holds neither Subscribe nor BulkUpload")
        action = bulk.findtext("Action") or ""
        names = [n.text or "" for n in bulk.iter("InterestName")]
        cols = {int(d.get("ColumnIndex", "0")): (d.get("FieldType"), d.get("FieldName"))
                for d in bulk.iter("FieldDefinition")}
        if ("Email", None) not in cols.values():
            raise AapiError("InvalidFieldDefinitions", "a column of FieldType Email is required")
        rows = []
        for line in csv.reader(io.StringIO(bulk.findtext("Data") or "")):
            r: dict = {}
            for i, v in enumerate(line, 1):
                kind, name = cols.get(i, (None, None))
                if kind == "Email":
                    r["email"] = v
                elif kind == "RemoteID":
                    r["remote_id"] = v
                elif name == "First_Name":
                    r["first"] = v
                elif name == "Last_Name":
                    r["last"] = v
            rows.append(r)
        uid = next(self._ids)
        self.uploads[uid] = {"upload_id": uid, "status": "Pending", "action": action, "interest_name": ",".join(names),
                             "total_rows": len(rows), "succeeded": 0, "failed": 0}

        async def run() -> None:
            await asyncio.sleep(self.bulk_delay_s)
            u = self.uploads[uid]
            u["status"] = "Processing"
            try:
                for name in names:
                    ok, failed = self._apply(self._interest(name), action, rows)
                    u["succeeded"] += ok
                    u["failed"] += len(failed)
                u["status"] = "Complete"
            except AapiError as exc:
                u["status"], u["error"] = "Failed", exc.message

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return f"<ActionResponse><BulkUpload><UploadID>{uid}</UploadID></BulkUpload></ActionResponse>"

    def _grid(self, doc) -> str:
        grid = doc.find("Grid")
        kind = grid.get("type") if grid is not None else None
        try:
            start = int(grid.findtext("StartRow") or "1")
            n = int(grid.findtext("NumberOfRows") or str(GRID_MAX_ROWS))
        except ValueError:
            raise AapiError("InvalidGrid", "StartRow and NumberOfRows are whole numbers") from None
        if n > GRID_MAX_ROWS or n < 1 or start < 1:
            raise AapiError("InvalidGrid", f"NumberOfRows is 1 to {GRID_MAX_ROWS}; StartRow from 1")
        if kind == "interest_target_group":
            rows = [{"brand_ID": self.brand_id, "is_deleted": "false", "target_group_id": g["id"],
                     "target_group_name": g["name"], "folder_name": g["folder"], "subscriber_count": self.count(g)}
                    for g in self.groups.values()]
        elif kind == "upload_history":
            rows = list(self.uploads.values())
        elif kind == "target_group_subscriber":
            rows = [{"target_group_id": g["id"], "email": self.subscribers[e]["email"],
                     "remote_id": self.subscribers[e].get("remote_id") or "", "status": self.subscribers[e]["status"]}
                    for g in self.groups.values() for e in sorted(self.emails(g))]
        else:
            raise AapiError("UnknownGrid", f"{kind!r}: interest_target_group, upload_history or target_group_subscriber")
        for c in grid.iter("Condition"):
            f, op, v = c.findtext("Field"), (c.findtext("SetOperator") or "EQ").upper(), c.findtext("Value") or ""
            vals = set(v.split(",")) if op == "IN" else {v}
            if op in ("EQ", "IN"):
                rows = [r for r in rows if str(r.get(f)) in vals]
            elif op == "NE":
                rows = [r for r in rows if str(r.get(f)) != v]
            else:
                raise AapiError("InvalidCondition", f"{op}: the fake takes EQ, IN and NE")
        fields = [d.text for d in grid.iter("DataElement")] or None
        page = rows[start - 1:start - 1 + n]
        if fields:
            page = [{k: r.get(k, "") for k in fields} for r in page]
        return grid_response(kind, page, start)

    # ------------------------------------------------------------------ serving
    def listing(self) -> list:
        return [self.info(g) for g in self.groups.values()]

    async def handle_stats(self, request: web.Request) -> web.Response:
        """``GET /_stats``: ``stored`` counts the subscribers of every target group."""
        return web.json_response({"stored": sum(len(self.emails(g)) for g in self.groups.values()),
                                  "groups": len(self.groups), "subscribers": len(self.subscribers),
                                  "feed_requests": len(self.feed_requests), "uploads": len(self.uploads)})

    async def handle_listing(self, request: web.Request) -> web.Response:
        return web.json_response(self.listing())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(self.path, self.soap)
        r = app.router
        r.add_get("/_stats", self.handle_stats)
        r.add_get("/", self.handle_listing)
        r.add_get("/_ui/integration", self.ui_integration)
        r.add_put("/_ui/integration", self.ui_integration)
        r.add_get("/_ui/folders", self.ui_folders)
        r.add_get("/_ui/groups", self.ui_groups)
        r.add_post("/_ui/groups/refresh", self.ui_refresh)
        r.add_get("/_ui/groups/{id}", self.ui_group)
        r.add_delete("/_ui/groups/{id}", self.ui_group)
        r.add_post("/_ui/groups/{id}/sync", self.ui_sync)
        r.add_post("/_ui/subscribers/unsubscribe", self.ui_unsubscribe)
        r.add_post("/_ui/mailings", self.ui_mailing)
        r.add_post("/_ui/campaigns", self.ui_campaign)
        r.add_post("/_ui/campaigns/{id}/stop", self.ui_campaign_stop)
        r.add_post("/_ui/clock/hour", self.ui_hour)
        return app

    async def start(self, *a, **kw):
        out = await super().start(*a, **kw)
        if self.hour_s > 0:
            self._hourly = asyncio.ensure_future(self._hourly_loop())
        return out

    async def stop(self) -> None:
        if self._hourly is not None:
            self._hourly.cancel()
        for t in list(self._tasks):
            t.cancel()
        await super().stop()


def main() -> None:
    def make(args):
        fake = FakeInformz(password=os.environ.get("ACTIVITY_SYNC_INFORMZ_PASSWORD", "partner-password"))
        if os.environ.get("ACTIVITY_SYNC_OCC_FEED_URL"):
            fake.integration.update(active=True, feed_url=os.environ["ACTIVITY_SYNC_OCC_FEED_URL"],
                                    iam_key=os.environ.get("ACTIVITY_SYNC_OCC_IAMKEY"),
                                    password=os.environ.get("ACTIVITY_SYNC_OCC_PASSWORD"))
        return fake

    fake_main("sinks.providers.informz.fake", "A fake Thrive Marketing Professional (Informz)", 8099, make,
              "fake Thrive Marketing Professional on {base_url} (partner API {base_url}/aapi/InformzService.svc, "
              "buttons under {base_url}/_ui/)")


if __name__ == "__main__":
    main()
