"""Community lists on the admin server: the lists' definitions, members and member states as the admin
sees them, the List Builder's API (super admins change lists), and the **list feed** the marketing
platform pulls (the Online Community Connection).

The feed is ours to define (Higher Logic does not publish the one Thrive Marketing Professional reads);
its OpenAPI document is ``GET /occ/v1/openapi.json`` (``docs/occ-feed.openapi.json``). It
authenticates as the community's REST API does, with the headers ``HLIAMKey`` and ``HLPassword``
(the connection's credentials, issued by ``activity-sync lists connection`` or the admin page,
stored as an scrypt hash); a connection sees its own tenant's lists only.

- ``GET /occ/v1/lists``: the lists offered (enabled, named ``Informz ...``): ``ListKey``,
  ``ListName``, ``TargetGroupName`` (without the prefix), ``MemberCount``, ``Version``.
- ``GET /occ/v1/lists/{ListKey}/members?limit=&after=&since=``: the members (``RemoteId``: the
  Legacy Contact Key, ``Email``, ``FirstName``, ``LastName``), sorted by RemoteId, paged by ``after``
  (the page's ``Next``). Without ``since`` (or with a token that is too old or of another list) the
  answer is the whole list (``Full: true``); with the ``Version`` of an earlier sync, only the
  members who joined or changed since (``Members``) and left (``Removed``). Keep the first page's
  ``Version`` for the next resync.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import time

from aiohttp import web

from core.lists import FOLDER, ListError, check_password, evaluate, parse_connection, target_group_name

#: a change token older than this answers the whole list (list.members keeps tombstones 7 days)
TOKEN_MAX_AGE_S = 6 * 24 * 3600


class ListsView:
    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}            # tenant -> id -> ListDef
        self.connections: dict[str, object] = {}   # tenant -> Connection
        self.members: dict[tuple[str, str], dict[str, tuple[int, dict | None]]] = {}
        self.high: dict[tuple[str, str], tuple[int, int]] = {}  # (tenant, list) -> (partition, offset)
        self.states: dict[str, dict[str, dict]] = {}  # tenant -> member -> state (lists.state)
        self._verified: dict[str, str] = {}
        self._sorted: dict[tuple[str, str], tuple[int, list[str]]] = {}

    # ------------------------------------------------------------------ followers
    def config_record(self, key: str, value: bytes | None) -> None:
        from core.lists import parse_list

        if key.startswith("list:"):
            _, tenant, lid = key.split(":", 2)
            d = self.defs.setdefault(tenant, {})
            if value is None:
                d.pop(lid, None)
            else:
                try:
                    d[lid] = parse_list(json.loads(value))
                except (ValueError, ListError):
                    d.pop(lid, None)
        elif key.startswith("occ:"):
            tenant = key.split(":", 1)[1]
            if value is None:
                self.connections.pop(tenant, None)
            else:
                try:
                    self.connections[tenant] = parse_connection(json.loads(value))
                except (ValueError, ListError):
                    self.connections.pop(tenant, None)
            self._verified.clear()

    def member_record(self, m) -> None:
        if not m.key:
            return
        tenant, lid, member = m.key.decode(errors="replace").split("|", 2)
        rec = json.loads(m.value) if m.value else None
        self.members.setdefault((tenant, lid), {})[member] = (m.offset, rec)
        self.high[(tenant, lid)] = (m.partition, m.offset)

    def state_record(self, m) -> None:
        if not m.key:
            return
        tenant, _, member = m.key.decode(errors="replace").partition("|")
        if m.value is None:
            self.states.get(tenant, {}).pop(member, None)
            return
        try:
            self.states.setdefault(tenant, {})[member] = json.loads(m.value)
        except ValueError:
            pass

    # ------------------------------------------------------------------ reads
    def current(self, tenant: str, lid: str) -> dict[str, dict]:
        return {m: rec for m, (_, rec) in self.members.get((tenant, lid), {}).items() if rec is not None}

    def sorted_ids(self, tenant: str, lid: str) -> list[str]:
        """The list's member ids (current and left), sorted; rebuilt only when the list changed."""
        key = (tenant, lid)
        version = self.high.get(key, (0, -1))[1]
        cached = self._sorted.get(key)
        if cached is None or cached[0] != version:
            cached = self._sorted[key] = (version, sorted(self.members.get(key, {})))
        return cached[1]

    def count(self, tenant: str, lid: str) -> int:
        return sum(1 for _, rec in self.members.get((tenant, lid), {}).values() if rec is not None)

    def token(self, tenant: str, lid: str) -> str:
        p, o = self.high.get((tenant, lid), (0, -1))
        raw = json.dumps({"l": f"{tenant}|{lid}", "p": p, "o": o, "t": int(time.time())}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def parse_token(self, tenant: str, lid: str, token: str) -> int | None:
        try:
            d = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (ValueError, TypeError):
            return None
        if not isinstance(d, dict) or d.get("l") != f"{tenant}|{lid}" or not isinstance(d.get("o"), int):
            return None
        if time.time() - float(d.get("t") or 0) > TOKEN_MAX_AGE_S:
            return None
        return d["o"]

    def preview(self, tenant: str, criteria, sample: int = 10) -> dict:
        from core.lists import ListDef, parse_criteria

        crit = parse_criteria(criteria)
        probe = ListDef(tenant, "preview", "preview", crit, criteria)
        now = time.time()
        found = sorted(m for m, st in self.states.get(tenant, {}).items() if evaluate([probe], st, now)[0])
        return {"tenant": tenant, "count": len(found), "members_evaluated": len(self.states.get(tenant, {})),
                "sample": found[:sample]}

    # ------------------------------------------------------------------ the feed's authentication
    def authenticate(self, iam_key: str | None, password: str | None):
        """The connection whose IAMKey and password these are (None: wrong or missing)."""
        if not iam_key or not password:
            return None
        conn = next((c for c in self.connections.values() if c.iam_key == iam_key), None)
        if conn is None:
            check_password(password, "scrypt$16384$8$1$00$00")  # the same work whether the key exists or not
            return None
        digest = hashlib.sha256(f"{conn.password_hash}|{password}".encode()).hexdigest()
        if self._verified.get(conn.tenant) == digest:
            return conn
        if not check_password(password, conn.password_hash):
            return None
        self._verified[conn.tenant] = digest
        return conn


def member_of_feed(rec: dict, directory, tenant: str) -> dict:
    email = rec.get("email")
    first, last = rec.get("first_name"), rec.get("last_name")
    if not email and directory is not None:  # the member directory (the Push API's contacts) knows the e-mail
        from core.directory import emails_of

        entry = directory.get(tenant, rec["member"])
        if entry:
            email = (emails_of(entry) or [None])[0]
            d = entry.get("details") or {}
            first, last = first or d.get("FirstName"), last or d.get("LastName")
    return {"RemoteId": rec["member"], "Email": email, "FirstName": first, "LastName": last}


# ----------------------------------------------------------------------------- the feed (aiohttp)

def _err(status: int, message: str) -> web.Response:
    return web.json_response({"Message": message}, status=status)


def feed_routes(app: web.Application, view_of, directory_of) -> None:
    """``/occ/v1/`` on the admin server; ``view_of(request)`` answers the :class:`ListsView`."""

    def connection(request: web.Request):
        conn = view_of(request).authenticate(request.headers.get("HLIAMKey"), request.headers.get("HLPassword"))
        if conn is None:
            raise web.HTTPUnauthorized(text=json.dumps({"Message": "HLIAMKey and HLPassword are missing or wrong"}),
                                       content_type="application/json")
        if not conn.active:
            raise web.HTTPForbidden(text=json.dumps({"Message": "the connection is not active for this community"}),
                                    content_type="application/json")
        return conn

    async def lists(request: web.Request) -> web.Response:
        conn = connection(request)
        view = view_of(request)
        out = []
        for lid, d in sorted(view.defs.get(conn.tenant, {}).items()):
            if not d.enabled or target_group_name(d.name) is None:
                continue
            out.append({"ListKey": lid, "ListName": d.name, "TargetGroupName": target_group_name(d.name),
                        "MemberCount": view.count(conn.tenant, lid), "Version": view.token(conn.tenant, lid)})
        return web.json_response({"Folder": FOLDER, "Lists": out})

    async def members(request: web.Request) -> web.Response:
        conn = connection(request)
        view = view_of(request)
        lid = request.match_info["key"]
        d = view.defs.get(conn.tenant, {}).get(lid)
        if d is None or not d.enabled or target_group_name(d.name) is None:
            return _err(404, f"no list {lid!r} offered to the marketing platform")
        try:
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return _err(400, "limit: a whole number from 1 to 5000")
        if not 1 <= limit <= 5000:
            return _err(400, "limit: a whole number from 1 to 5000")
        after = request.query.get("after") or ""
        since = request.query.get("since")
        base = view.parse_token(conn.tenant, lid, since) if since else None
        version = view.token(conn.tenant, lid)
        entries = view.members.get((conn.tenant, lid), {})
        ids = view.sorted_ids(conn.tenant, lid)
        page: list = []
        more = False
        for m in ids[bisect.bisect_right(ids, after) if after else 0:]:
            off, rec = entries[m]
            if (rec is None) if base is None else off <= base:
                continue  # not a member (whole list), or unchanged since the caller's version
            if len(page) == limit:
                more = True
                break
            page.append((m, rec))
        directory = directory_of(request)
        return web.json_response({
            "ListKey": lid, "TargetGroupName": target_group_name(d.name), "Full": base is None,
            "Members": [member_of_feed(rec, directory, conn.tenant) for _, rec in page if rec is not None],
            "Removed": [m for m, rec in page if rec is None],
            "HasMoreMembers": more, "Next": page[-1][0] if more else None, "Version": version,
            "MemberCount": view.count(conn.tenant, lid)})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(FEED_OPENAPI)

    app.router.add_get("/occ/v1/lists", lists)
    app.router.add_get("/occ/v1/lists/{key}/members", members)
    app.router.add_get("/occ/v1/openapi.json", openapi)


_MEMBER = {"type": "object", "required": ["RemoteId"], "properties": {
    "RemoteId": {"type": "string", "description": "the member's Legacy Contact Key (Remote ID in the platform)"},
    "Email": {"type": ["string", "null"]}, "FirstName": {"type": ["string", "null"]},
    "LastName": {"type": ["string", "null"]}}}
_AUTH = [{"HLIAMKey": [], "HLPassword": []}]
FEED_OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "activity-sync list feed (Online Community Connection)", "version": "1",
             "description": "The lists a marketing platform (Thrive Marketing Professional, formerly Informz) "
                            "pulls as target groups. Higher Logic does not publish the feed it reads: this one is "
                            "activity-sync's own. Only lists named 'Informz ...' are offered; the target group's "
                            "name drops the prefix; target groups go to the folder 'Online Community'."},
    "components": {"securitySchemes": {
        "HLIAMKey": {"type": "apiKey", "in": "header", "name": "HLIAMKey", "description": "the connection's IAMKey"},
        "HLPassword": {"type": "apiKey", "in": "header", "name": "HLPassword"}},
        "schemas": {"Member": _MEMBER}},
    "security": _AUTH,
    "paths": {
        "/occ/v1/lists": {"get": {"summary": "The lists offered (Refresh Target Group List)", "responses": {
            "200": {"description": "the offered lists", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"Folder": {"type": "string"}, "Lists": {"type": "array", "items": {
                    "type": "object", "properties": {
                        "ListKey": {"type": "string"}, "ListName": {"type": "string"},
                        "TargetGroupName": {"type": "string"}, "MemberCount": {"type": "integer"},
                        "Version": {"type": "string", "description": "the list's change token now"}}}}}}}}},
            "401": {"description": "HLIAMKey/HLPassword missing or wrong"},
            "403": {"description": "the connection is not active"}}}},
        "/occ/v1/lists/{ListKey}/members": {"get": {
            "summary": "A list's members (Sync Target Group Now / Resync Now)",
            "parameters": [
                {"name": "ListKey", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000,
                                                            "default": 1000}},
                {"name": "after", "in": "query", "schema": {"type": "string"},
                 "description": "the previous page's Next (members are sorted by RemoteId)"},
                {"name": "since", "in": "query", "schema": {"type": "string"},
                 "description": "the Version of the first page of the last sync: only changes since (Full false); "
                                "a token too old or of another list answers the whole list (Full true)"}],
            "responses": {"200": {"description": "a page", "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "ListKey": {"type": "string"}, "TargetGroupName": {"type": "string"},
                    "Full": {"type": "boolean", "description": "true: these pages are the whole list (replace); "
                                                              "false: changes to apply"},
                    "Members": {"type": "array", "items": {"$ref": "#/components/schemas/Member"}},
                    "Removed": {"type": "array", "items": {"type": "string"}, "description": "RemoteIds that left"},
                    "HasMoreMembers": {"type": "boolean"}, "Next": {"type": ["string", "null"]},
                    "Version": {"type": "string"}, "MemberCount": {"type": "integer"}}}}}},
                "400": {"description": "a bad parameter"}, "401": {"description": "not authenticated"},
                "404": {"description": "no such list offered"}}}}}}
