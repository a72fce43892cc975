"""The admin HTTP API and page (aiohttp): ``activity-sync admin``.

Every ``/api/v1/`` call needs an API key (:mod:`.keys`): none or a wrong one is 401, a read-only key
changing something is 403, another tenant's endpoint is 404. State-changing calls must be JSON
(``Content-Type: application/json``, which a cross-site form cannot send without a preflight that
is never granted) and, when the browser says where it comes from (``Origin``), come from this
server. The page is served with a Content-Security-Policy that allows only this origin, and keeps
the key in the tab's sessionStorage (never a cookie). Keys are never logged.
"""

from __future__ import annotations

import json
import logging
from importlib import resources

from aiohttp import web

from .keys import ApiKey, authenticate
from .openapi import document
from .state import AdminError, AdminState

log = logging.getLogger("activity_sync.admin")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
STATE = web.AppKey("state", AdminState)
KEYS = web.AppKey("keys", list)
WHO = web.RequestKey("key", ApiKey) if hasattr(web, "RequestKey") else "key"
SUBSCRIBED = ("all", "subscribed", "unsubscribed")


def error(status: int, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": message, **({"field": field} if field else {})}, status=status)


@web.middleware
async def security(request: web.Request, handler):
    try:
        resp = await handler(request)
    except AdminError as exc:
        resp = web.json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/"):
            raise
        resp = error(exc.status, exc.reason or "error")
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("X-Frame-Options", "DENY")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith("/api/"):
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


@web.middleware
async def access(request: web.Request, handler):
    if not request.path.startswith("/api/v1/") or request.path == "/api/v1/openapi.json":
        return await handler(request)
    auth = request.headers.get("Authorization", "")
    presented = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("X-API-Key")
    key = authenticate(request.app[KEYS], presented)
    if key is None:
        return error(401, "an API key is required (Authorization: Bearer <key>); this one is missing or wrong")
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        origin = request.headers.get("Origin")
        if origin and origin != f"{request.scheme}://{request.host}":
            return error(403, f"cross-site request from {origin} refused")
        if request.method != "DELETE" and request.content_type != "application/json":
            return error(400, "state-changing calls take Content-Type: application/json")
    request[WHO] = key
    return await handler(request)


async def body_of(request: web.Request) -> dict:
    try:
        doc = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise AdminError(400, "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise AdminError(400, "the body must be a JSON object")
    return doc


def _limit(request: web.Request, default: int = 500) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise AdminError(422, "limit: a whole number from 1 to 10000", "limit")
    return int(raw)


def _key(request: web.Request) -> ApiKey:
    return request[WHO]


class Handlers:
    async def openapi(self, request):
        return web.json_response(document())

    async def providers(self, request):
        return web.json_response(request.app[STATE].providers())

    async def activities(self, request):
        return web.json_response(request.app[STATE].activities_catalog())

    async def list_endpoints(self, request):
        return web.json_response(request.app[STATE].endpoints(_key(request)))

    async def create_endpoint(self, request):
        return web.json_response(await request.app[STATE].create_endpoint(_key(request), await body_of(request)),
                                 status=201)

    async def get_endpoint(self, request):
        return web.json_response(request.app[STATE].endpoint(_key(request), request.match_info["name"]))

    async def put_endpoint(self, request):
        return web.json_response(await request.app[STATE].update_endpoint(
            _key(request), request.match_info["name"], await body_of(request)))

    async def delete_endpoint(self, request):
        dry = request.query.get("dry_run", "false").lower()
        if dry not in ("true", "false", "1", "0"):
            raise AdminError(422, "dry_run: true or false", "dry_run")
        return web.json_response(await request.app[STATE].delete_endpoint(
            _key(request), request.match_info["name"], dry in ("true", "1")))

    async def subscriptions(self, request):
        subscribed = request.query.get("subscribed", "all")
        if subscribed not in SUBSCRIBED:
            raise AdminError(422, f"subscribed: one of {', '.join(SUBSCRIBED)}", "subscribed")
        return web.json_response(request.app[STATE].subscriptions(
            _key(request), request.query.get("name"), request.query.getall("endpoint", []),
            request.query.getall("category", []), subscribed))

    async def whoami(self, request):
        key = _key(request)
        return web.json_response({"id": key.id, "role": key.role, "tenants": list(key.tenants)})

    async def categories(self, request):
        return web.json_response(list(request.app[STATE].catalog.categories))

    async def put_activity_code(self, request):
        return web.json_response(await request.app[STATE].put_activity_code(
            _key(request), request.match_info["code"], await body_of(request)))

    async def retire_activity_code(self, request):
        return web.json_response(await request.app[STATE].retire_activity_code(_key(request), request.match_info["code"]))

    async def put_subscription(self, request):
        return web.json_response(await request.app[STATE].put_subscription(
            _key(request), request.match_info["code"], request.match_info["endpoint"], await body_of(request)))

    async def delete_subscription(self, request):
        return web.json_response(await request.app[STATE].delete_subscription(
            _key(request), request.match_info["code"], request.match_info["endpoint"]))

    async def preview(self, request):
        body = await body_of(request)
        code, text, endpoint = body.get("activity_code"), body.get("description"), body.get("endpoint")
        if not isinstance(code, str):
            raise AdminError(422, "activity_code is required", "activity_code")
        if endpoint is not None and not isinstance(endpoint, str):
            raise AdminError(422, "endpoint must be a name", "endpoint")
        return web.json_response(request.app[STATE].preview(_key(request), code, text, endpoint))

    async def status(self, request):
        return web.json_response(request.app[STATE].status(_key(request)))

    async def source_status(self, request):
        return web.json_response(request.app[STATE].source_status(_key(request)))

    async def score_tenants(self, request):
        return web.json_response(request.app[STATE].score_tenants(_key(request)))

    async def report_card(self, request):
        from core.scoring import report_csv, report_html

        q = request.query
        card = request.app[STATE].report_card(_key(request), q.get("tenant"), q.get("period"))
        fmt = q.get("format", "json")
        name = f"report-card-{card['tenant']}-{card['period']}"
        if fmt == "csv":
            return web.Response(text=report_csv(card), content_type="text/csv",
                                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
        if fmt == "html":
            return web.Response(text=report_html(card), content_type="text/html",
                                headers={"Content-Disposition": f'inline; filename="{name}.html"'})
        if fmt != "json":
            return error(422, "format: json, csv or html", "format")
        return web.json_response(card)

    async def put_scoring_model(self, request):
        return web.json_response(await request.app[STATE].put_scoring_model(
            _key(request), request.match_info["tenant"], await body_of(request)))

    async def member_page(self, request):
        q = request.query
        return web.json_response(request.app[STATE].member_page(_key(request), q.get("tenant"),
                                                                request.match_info["member"], q.get("category")))

    async def anmc_report(self, request):
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return error(422, "limit must be a whole number", "limit")
        if not 1 <= limit <= 1000:
            return error(422, "limit is 1 to 1000", "limit")
        return web.json_response(request.app[STATE].anmc_report(_key(request), limit))

    async def lists(self, request):
        return web.json_response(request.app[STATE].list_summaries(_key(request), request.query.get("tenant")))

    async def put_list(self, request):
        m = request.match_info
        return web.json_response(await request.app[STATE].put_list(_key(request), m["tenant"], m["id"],
                                                                   await body_of(request)))

    async def delete_list(self, request):
        m = request.match_info
        return web.json_response(await request.app[STATE].delete_list(_key(request), m["tenant"], m["id"]))

    async def preview_list(self, request):
        body = await body_of(request)
        return web.json_response(request.app[STATE].preview_list(_key(request), body.get("tenant"),
                                                                 body.get("criteria")))

    async def reconcile_list(self, request):
        m = request.match_info
        return web.json_response(await request.app[STATE].reconcile_list(_key(request), m["tenant"], m["id"]))

    async def list_connection(self, request):
        return web.json_response({"connection": request.app[STATE].list_connection(
            _key(request), request.match_info["tenant"])})

    async def issue_list_connection(self, request):
        body = await body_of(request)
        active = body.get("active", True)
        if not isinstance(active, bool):
            return error(422, "active: true or false", "active")
        return web.json_response(await request.app[STATE].issue_list_connection(
            _key(request), request.match_info["tenant"], active))

    async def dead_letters(self, request):
        return web.json_response(await request.app[STATE].dead_letters(
            _key(request), request.query.get("endpoint") or None, _limit(request)))

    async def replay(self, request):
        return web.json_response(await request.app[STATE].replay(_key(request), await body_of(request)))

    async def audit(self, request):
        return web.json_response(request.app[STATE].audit_entries(_key(request), _limit(request, 200)))

    async def contacts(self, request):
        q = request.query
        return web.json_response(request.app[STATE].contacts(
            _key(request), q.get("tenant") or None, q.get("contact_id") or None, q.get("email") or None,
            q.get("phone") or None, q.get("name") or None, _limit(request, 100)))

    async def ingest_keys(self, request):
        return web.json_response(request.app[STATE].list_ingest_keys(_key(request)))

    async def issue_ingest_key(self, request):
        return web.json_response(await request.app[STATE].issue_ingest_key(_key(request), await body_of(request)),
                                 status=201)

    async def revoke_ingest_key(self, request):
        return web.json_response(await request.app[STATE].revoke_ingest_key(_key(request), request.match_info["id"]))

    async def healthz(self, request):
        return web.json_response({"alive": True})

    async def readyz(self, request):
        ok = request.app[STATE].ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def page(self, request):
        return web.Response(text=_static("index.html"), content_type="text/html")

    async def static(self, request):
        name = request.match_info["file"]
        if name not in ("app.js", "app.css", "chart.umd.js"):
            raise web.HTTPNotFound()
        ctype = "text/javascript" if name.endswith(".js") else "text/css"
        # Chart.js (MIT, static/vendor/chart.js-LICENSE.md) is served from here: no third-party CDN
        return web.Response(text=_static(f"vendor/{name}" if name == "chart.umd.js" else name), content_type=ctype)


def _static(name: str) -> str:
    return resources.files("activity_sync.admin").joinpath("static", name).read_text()


def make_app(state: AdminState, keys: list[ApiKey]) -> web.Application:
    app = web.Application(middlewares=[security, access], client_max_size=1024 * 1024)
    app[STATE] = state
    app[KEYS] = keys
    h = Handlers()
    r = app.router
    r.add_get("/api/v1/openapi.json", h.openapi)
    r.add_get("/api/v1/providers", h.providers)
    r.add_get("/api/v1/activities", h.activities)
    r.add_put("/api/v1/activities/{code}", h.put_activity_code)
    r.add_get("/api/v1/categories", h.categories)
    r.add_get("/api/v1/whoami", h.whoami)
    r.add_delete("/api/v1/activities/{code}", h.retire_activity_code)
    r.add_get("/api/v1/endpoints", h.list_endpoints)
    r.add_post("/api/v1/endpoints", h.create_endpoint)
    r.add_get("/api/v1/endpoints/{name}", h.get_endpoint)
    r.add_put("/api/v1/endpoints/{name}", h.put_endpoint)
    r.add_patch("/api/v1/endpoints/{name}", h.put_endpoint)
    r.add_delete("/api/v1/endpoints/{name}", h.delete_endpoint)
    r.add_get("/api/v1/subscriptions", h.subscriptions)
    r.add_put("/api/v1/subscriptions/{code}/{endpoint}", h.put_subscription)
    r.add_delete("/api/v1/subscriptions/{code}/{endpoint}", h.delete_subscription)
    r.add_post("/api/v1/preview", h.preview)
    r.add_get("/api/v1/status", h.status)
    r.add_get("/api/v1/sources/status", h.source_status)
    r.add_get("/api/v1/anmc/report", h.anmc_report)
    r.add_get("/api/v1/scores", h.score_tenants)
    r.add_get("/api/v1/scores/report", h.report_card)
    r.add_get("/api/v1/scores/members/{member}", h.member_page)
    r.add_put("/api/v1/scores/models/{tenant}", h.put_scoring_model)
    r.add_get("/api/v1/lists", h.lists)
    r.add_post("/api/v1/lists/preview", h.preview_list)
    r.add_put("/api/v1/lists/{tenant}/{id}", h.put_list)
    r.add_delete("/api/v1/lists/{tenant}/{id}", h.delete_list)
    r.add_get("/api/v1/lists/{tenant}/{id}/reconciliation", h.reconcile_list)
    r.add_get("/api/v1/list-connections/{tenant}", h.list_connection)
    r.add_post("/api/v1/list-connections/{tenant}", h.issue_list_connection)
    r.add_get("/api/v1/dead-letters", h.dead_letters)
    r.add_post("/api/v1/replay", h.replay)
    r.add_get("/api/v1/audit", h.audit)
    r.add_get("/api/v1/contacts", h.contacts)
    r.add_get("/api/v1/ingest-keys", h.ingest_keys)
    r.add_post("/api/v1/ingest-keys", h.issue_ingest_key)
    r.add_delete("/api/v1/ingest-keys/{id}", h.revoke_ingest_key)
    r.add_get("/healthz", h.healthz)
    r.add_get("/readyz", h.readyz)
    r.add_get("/", h.page)
    r.add_get("/static/{file}", h.static)
    from .lists import feed_routes

    feed_routes(app, lambda request: request.app[STATE].lists, lambda request: request.app[STATE].directory)
    return app


async def serve(settings, host: str, port: int, keys: list[ApiKey]):
    """Start the admin server; answer (runner, state, port)."""
    from core.config import catalog_for

    state = AdminState(settings, catalog_for(settings))
    await state.start()
    runner = web.AppRunner(make_app(state, keys), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]
    return runner, state, actual


def main(host: str, port: int) -> int:
    import asyncio

    from core.errors import UsageError
    from core.settings import Settings

    from .keys import load_keys

    keys = load_keys()
    if not keys:
        raise UsageError("no admin API key: set ACTIVITY_SYNC_ADMIN_KEY (and ACTIVITY_SYNC_ADMIN_READ_KEY), or "
                         "ACTIVITY_SYNC_ADMIN_KEYS_FILE with 'id admin|read tenants secret' lines")
    settings = Settings.from_env()

    async def run() -> None:
        runner, state, actual = await serve(settings, host, port, keys)
        print(f"admin page and API on http://{host}:{actual}/ (OpenAPI: /api/v1/openapi.json)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await state.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


__all__ = ["make_app", "serve", "main", "json"]
