"""A fake CRM that receives the webhook sink's batches, for tests, the demo and the benchmark.

It behaves like a careful real webhook receiver, following the public conventions the webhook
sink follows:

- signature: HMAC-SHA256 of the raw body, hex, ``sha256=`` prefix, compared in constant time
  (GitHub Docs, "Validating webhook deliveries"); a bad or missing one answers 401;
- idempotency: a repeated ``idempotency_key`` is not stored again and answers 200 ``duplicate``
  (Stripe API reference, "Idempotent requests");
- throttling: 429 Too Many Requests with ``Retry-After`` in seconds (RFC 6585 section 4,
  RFC 9110 section 10.2.3); requests arriving before the named time are counted as ``early``;
- per-record results: 200 with ``{"results": [{"idempotency_key", "status", "error"}]}``, a
  record it cannot take (no customer ID, an unknown customer) gets status 400 and the rest are
  stored; more than ``max_batch`` activities answer 413; a body that is not JSON answers 400.

It can be told to fail, throttle or slow down, over HTTP (``POST /_control``) or in-process:

    {"fail": {"status": 503, "count": 5}}       # the next 5 requests answer 503
    {"fail": {"status": 503, "seconds": 3}}     # every request for 3 s answers 503
    {"throttle": {"retry_after": 2, "count": 1}}
    {"latency_ms": 20}
    {"reject_customers": ["c-123"]}             # those records answer 400 "unknown customer"

``GET /`` shows what it stored (for a person), ``GET /activities`` the same as JSON,
``GET /_stats`` counters, ``POST /_reset`` forgets everything.

    python -m sinks.fake_crm [--port 8085] [--secret-env ACTIVITY_SYNC_WEBHOOK_SECRET]
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import time
from collections import deque

from aiohttp import web

from streams.fakeserver import FakeServer

from .webhook import SIGNATURE_HEADER, verify


class FakeCRM(FakeServer):
    path = "/activities"

    def __init__(self, secret: bytes | None = None, max_batch: int = 1000) -> None:
        self.secret = secret
        self.max_batch = max_batch
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        self.stored: dict[str, dict] = {}
        self.order: list[str] = []
        self.requests: list[dict] = []  # {"at", "status", "n"}
        self.bodies: deque[bytes] = deque(maxlen=20)  # the last request bodies, as received
        self.duplicates = 0
        self.early = 0
        self.rejected = 0
        self._fail_status = 503
        self._fail_count = 0
        self._fail_until = 0.0
        self._throttle_count = 0
        self._throttle_retry_after = 1.0
        self._throttled_until = 0.0
        self.latency = 0.0
        self.reject_customers: set[str] = set()

    def control(self, spec: dict) -> None:
        if "fail" in spec:
            f = spec["fail"] or {}
            self._fail_status = int(f.get("status", 503))
            self._fail_count = int(f.get("count", 0))
            self._fail_until = time.time() + float(f.get("seconds", 0)) if f.get("seconds") else 0.0
        if "throttle" in spec:
            t = spec["throttle"] or {}
            self._throttle_retry_after = float(t.get("retry_after", 1))
            self._throttle_count = int(t.get("count", 1))
        if "latency_ms" in spec:
            self.latency = float(spec["latency_ms"]) / 1000
        if "reject_customers" in spec:
            self.reject_customers = set(spec["reject_customers"] or [])

    def received(self) -> list[dict]:
        return [self.stored[k] for k in self.order]

    def stats(self) -> dict:
        return {"stored": len(self.stored), "requests": len(self.requests), "duplicates": self.duplicates,
                "early_requests": self.early, "rejected": self.rejected,
                "statuses": {str(s): sum(1 for r in self.requests if r["status"] == s)
                             for s in sorted({r["status"] for r in self.requests})}}

    # ------------------------------------------------------------------ HTTP
    async def handle_activities(self, request: web.Request) -> web.Response:
        now = time.time()
        if now < self._throttled_until:
            self.early += 1
        body = await request.read()
        self.bodies.append(body)
        status, response = await self._handle(request, body, now)
        self.requests.append({"at": now, "status": status.status, "n": response})
        return status

    async def _handle(self, request: web.Request, body: bytes, now: float):
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.secret is not None and not verify(self.secret, body, request.headers.get(SIGNATURE_HEADER)):
            return web.json_response({"error": "invalid or missing signature"}, status=401), 0
        if self._throttle_count > 0:
            self._throttle_count -= 1
            self._throttled_until = time.time() + self._throttle_retry_after
            return web.json_response({"error": "rate limit exceeded"}, status=429,
                                     headers={"Retry-After": f"{self._throttle_retry_after:g}"}), 0
        if self._fail_count > 0 or time.time() < self._fail_until:
            self._fail_count = max(0, self._fail_count - 1)
            return web.json_response({"error": "service unavailable"}, status=self._fail_status), 0
        if not request.content_type.endswith("json"):
            return web.json_response({"error": "Content-Type must be application/json"}, status=415), 0
        try:
            doc = json.loads(body)
            items = doc["activities"]
            assert isinstance(items, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            return web.json_response({"error": "body must be {\"activities\": [...]}"}, status=400), 0
        if len(items) > self.max_batch:
            return web.json_response({"error": f"at most {self.max_batch} activities a request"}, status=413), 0
        results = []
        for item in items:
            results.append(self._store(item, now))
        return web.json_response({"results": results}), len(items)

    def _store(self, item: dict, now: float) -> dict:
        key = item.get("idempotency_key") if isinstance(item, dict) else None
        if not key:
            self.rejected += 1
            return {"idempotency_key": key, "status": 400, "error": "idempotency_key is required"}
        missing = [f for f in ("activity_code", "activity_date", "description") if not item.get(f)]
        if missing:
            self.rejected += 1
            return {"idempotency_key": key, "status": 400, "error": f"missing {', '.join(missing)}"}
        if not item.get("customer_id") or item["customer_id"] in self.reject_customers:
            self.rejected += 1
            return {"idempotency_key": key, "status": 400,
                    "error": f"unknown customer {item.get('customer_id')!r}"}
        if key in self.stored:
            self.duplicates += 1
            return {"idempotency_key": key, "status": 200, "result": "duplicate"}
        self.stored[key] = dict(item, received_at=now)
        self.order.append(key)
        return {"idempotency_key": key, "status": 201, "result": "created"}

    async def handle_list(self, request: web.Request) -> web.Response:
        return web.json_response(self.received())

    async def handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def handle_control(self, request: web.Request) -> web.Response:
        self.control(await request.json())
        return web.json_response({"ok": True})

    async def handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def handle_index(self, request: web.Request) -> web.Response:
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(r.get(c) or ''))}</td>" for c in
                             ("activity_date", "customer_id", "activity_code", "writeback_code1",
                              "writeback_code2", "description", "link_url")) + "</tr>"
            for r in reversed(self.received()[-500:]))
        s = self.stats()
        page = (f"<!doctype html><html><head><meta charset=utf-8><title>Fake CRM</title>"
                f"<meta http-equiv=refresh content=3><style>body{{font:14px sans-serif}}td,th{{padding:2px 8px;"
                f"border-bottom:1px solid #ddd;text-align:left}}</style></head><body>"
                f"<h1>Fake CRM: activities received</h1><p>{s['stored']} stored, {s['duplicates']} duplicates "
                f"ignored, {s['rejected']} rejected, {s['requests']} requests</p><table><tr><th>Activity date (UTC)"
                f"</th><th>Customer ID</th><th>Code</th><th>Write-back 1</th><th>Write-back 2</th>"
                f"<th>Description</th><th>Link</th></tr>{rows}</table></body></html>")
        return web.Response(text=page, content_type="text/html")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/activities", self.handle_activities)
        app.router.add_get("/activities", self.handle_list)
        app.router.add_get("/_stats", self.handle_stats)
        app.router.add_post("/_control", self.handle_control)
        app.router.add_post("/_reset", self.handle_reset)
        app.router.add_get("/", self.handle_index)
        return app


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m sinks.fake_crm", description="A fake CRM webhook receiver")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8085)
    ap.add_argument("--secret-env", default="ACTIVITY_SYNC_WEBHOOK_SECRET",
                    help="environment variable holding the HMAC secret (unset: signatures not checked)")
    ap.add_argument("--latency-ms", type=float, default=0)
    args = ap.parse_args()
    secret = os.environ.get(args.secret_env)
    crm = FakeCRM(secret.encode() if secret else None)
    crm.control({"latency_ms": args.latency_ms})

    async def serve() -> None:
        await crm.start(args.host, args.port)
        print(f"fake CRM on http://{args.host}:{crm.port}/ (POST /activities)", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
