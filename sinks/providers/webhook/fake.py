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

Faults (fail, throttle, latency, reject a customer's records) come from the shared base,
:class:`core.fakes.FaultyFake`; a rejected record answers 400 "unknown customer".

``GET /`` shows what it stored (for a person), ``GET /activities`` the same as JSON,
``GET /_stats`` counters, ``POST /_reset`` forgets everything.

    python -m sinks.providers.webhook.fake [--port 8085] [--secret-env ACTIVITY_SYNC_WEBHOOK_SECRET]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import time
from collections import deque

from aiohttp import web

from core.fakes import FaultyFake

from .sink import SIGNATURE_HEADER, verify


class FakeCRM(FaultyFake):
    path = "/activities"

    def __init__(self, secret: bytes | None = None, max_batch: int = 1000) -> None:
        self.secret = secret
        self.max_batch = max_batch
        super().__init__()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        self.stored: dict[str, dict] = {}
        self.order: list[str] = []
        self.bodies: deque[bytes] = deque(maxlen=20)  # the last request bodies, as received
        self.duplicates = 0
        self.rejected = 0
        self.serving = 0          # requests being answered now
        self.max_concurrent = 0   # the most at once

    def received(self) -> list[dict]:
        return [self.stored[k] for k in self.order]

    def stored_keys(self) -> list[str]:
        return list(self.order)

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.stored), "duplicates": self.duplicates,
                "rejected": self.rejected, "max_concurrent": self.max_concurrent}

    # ------------------------------------------------------------------ HTTP
    async def handle_activities(self, request: web.Request) -> web.Response:
        now = time.time()
        body = await request.read()
        self.bodies.append(body)
        self.serving += 1
        self.max_concurrent = max(self.max_concurrent, self.serving)
        try:
            response, n = await self._handle(request, body, now)
        finally:
            self.serving -= 1
        self.log(response.status, n, started=now)
        return response

    async def _handle(self, request: web.Request, body: bytes, now: float):
        if self.secret is not None and not verify(self.secret, body, request.headers.get(SIGNATURE_HEADER)):
            return web.json_response({"error": "invalid or missing signature"}, status=401), 0
        fault = await self.faults()
        if fault is not None:
            return fault, 0
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
        app.router.add_get("/", self.handle_index)
        self.control_routes(app)
        return app


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m sinks.providers.webhook.fake", description="A fake CRM webhook receiver")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8085)
    ap.add_argument("--secret-env", default="ACTIVITY_SYNC_WEBHOOK_SECRET",
                    help="environment variable holding the HMAC secret (unset: signatures not checked)")
    ap.add_argument("--latency-ms", type=float, default=0)
    args = ap.parse_args()
    secret = os.environ.get(args.secret_env)
    crm = FakeCRM(secret.encode() if secret else None)
    crm.control({"latency_ms": args.latency_ms})

    crm.serve_forever(args.host, args.port, "fake CRM on {base_url}/ (POST /activities)")


if __name__ == "__main__":
    main()
