"""The base of the project's fake external APIs: a loopback aiohttp server, and fault injection.

Every provider's fake (``sinks/providers/<name>/fake.py``) and every source's (``sources/<kind>/fake.py``) extends :class:`FaultyFake`, so
tests, the demo and benchmarks drive faults the same way for every vendor, in-process
(``fake.control({...})``) or over HTTP (``POST /_control``):

    {"fail": {"status": 503, "count": 5}}           # the next 5 write requests answer 503
    {"fail": {"status": 503, "seconds": 3}}         # every write request for 3 s answers 503
    {"throttle": {"retry_after": 2, "count": 1}}    # 429 + Retry-After (a vendor may answer otherwise)
    {"latency_ms": 20}                              # every write request waits this long
    {"slow": {"ms": 1500, "count": 1}}              # only the next request is this slow (a timeout)
    {"reject_customers": ["c-123"]}                 # those records fail as the vendor fails one record
    {"expire_tokens": true}                         # every token issued so far is refused from now on

Counters every fake keeps: ``requests`` (each write request: time, status, record count),
``early`` (write requests that arrived while a Retry-After the fake sent was still running),
``token_requests``. How a fault looks on the wire (the status, the error body, whether a
Retry-After is sent) is the vendor's: a subclass overrides :meth:`FaultyFake.fault_response`
and :meth:`FaultyFake.throttle_response`.

Production code never imports this module.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import ssl
import tempfile
import time

from aiohttp import web


def test_tls(ca_file: str | os.PathLike | None = None, client_certs_to: str | os.PathLike | None = None
             ) -> tuple[ssl.SSLContext, str]:
    """A certificate authority made now (``trustme``) and a certificate it signed for 127.0.0.1 and
    localhost: the server's SSL context, and the path of the CA's PEM (the client trusts it with
    ``ca_file``/``verify``). For fakes of APIs that are HTTPS-only for their clients."""
    import trustme

    ca = trustme.CA(organization_name="activity-sync test CA")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    if ca_file is None:
        fd, ca_file = tempfile.mkstemp(prefix="activity-sync-test-ca-", suffix=".pem")
        os.close(fd)
    ca.cert_pem.write_to_path(str(ca_file))
    if client_certs_to is not None:  # mutual TLS: only a client with a certificate of this CA gets in
        ca.configure_trust(server)
        server.verify_mode = ssl.CERT_REQUIRED
        client = ca.issue_cert("client.activity-sync.test")
        client.cert_chain_pems[0].write_to_path(f"{client_certs_to}/client.pem")
        client.private_key_pem.write_to_path(f"{client_certs_to}/client.key")
    return server, str(ca_file)


class FakeServer:
    """Subclasses build their routes in ``app()``; ``start`` serves them on a free port by default.

    ``start(tls=True)`` serves HTTPS with a certificate from a CA made at start; ``ca_file`` is
    then the CA's PEM for clients to trust (written where ``ca_file=`` says, else a temp file).
    """

    path = "/"
    _runner: web.AppRunner | None = None
    port: int | None = None
    scheme = "http"
    ca_file: str | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0, tls: bool = False, ca_file=None,
                    client_certs_to=None):
        """``client_certs_to``: a directory; mutual TLS, a client certificate and key written there."""
        context = None
        if tls:
            context, self.ca_file = test_tls(ca_file, client_certs_to)
            self.scheme = "https"
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    def serve_forever(self, host: str, port: int, banner: str, **start) -> None:
        """For a fake's ``python -m`` entry point: serve until Ctrl-C or SIGTERM, printing ``banner``
        (formatted with ``base_url`` and ``ca_file``) once listening."""
        async def serve() -> None:
            await self.start(host, port, **start)
            print(banner.format(base_url=self.base_url, ca_file=self.ca_file), flush=True)
            await asyncio.Event().wait()

        try:
            asyncio.run(serve())
        except KeyboardInterrupt:
            pass

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class FaultyFake(FakeServer):
    """A fake vendor API with the shared fault injection, request log and token bookkeeping."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: list[dict] = []
        self.early = 0
        self.token_requests = 0
        self.tokens: set[str] = set()
        self.reject_customers: set[str] = set()
        self.latency = 0.0
        self._fail_status = 503
        self._fail_count = 0
        self._fail_until = 0.0
        self._throttle_count = 0
        self._throttle_retry_after = 1.0
        self._throttled_until = 0.0
        self._slow_count = 0
        self._slow_s = 0.0

    # ------------------------------------------------------------------ control
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
        if "slow" in spec:
            self._slow_s = float(spec["slow"].get("ms", 1000)) / 1000
            self._slow_count = int(spec["slow"].get("count", 1))
        if "reject_customers" in spec:
            self.reject_customers = set(spec["reject_customers"] or [])
        if spec.get("expire_tokens"):
            self.tokens.clear()

    # ------------------------------------------------------------------ tokens
    def issue_token(self) -> str:
        self.token_requests += 1
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return token

    def token_valid(self, token: str | None) -> bool:
        return bool(token) and token in self.tokens

    # ------------------------------------------------------------------ faults
    def fault_response(self, status: int) -> web.Response:
        """How this vendor answers a failing request (override for the vendor's error body)."""
        return web.json_response({"error": "service unavailable"}, status=status)

    def throttle_response(self, retry_after: float) -> web.Response:
        """How this vendor answers over its limit (override: not every vendor sends 429 + Retry-After)."""
        return web.json_response({"error": "rate limit exceeded"}, status=429,
                                 headers={"Retry-After": f"{retry_after:g}"})

    async def faults(self) -> web.Response | None:
        """Call first in a write handler: the injected fault's answer, or None to go on."""
        if time.time() < self._throttled_until:
            self.early += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._slow_count > 0:
            self._slow_count -= 1
            await asyncio.sleep(self._slow_s)
        if self._throttle_count > 0:
            self._throttle_count -= 1
            self._throttled_until = time.time() + self._throttle_retry_after
            return self.throttle_response(self._throttle_retry_after)
        if self._fail_count > 0 or time.time() < self._fail_until:
            self._fail_count = max(0, self._fail_count - 1)
            return self.fault_response(self._fail_status)
        return None

    async def fault_or_json(self, request: web.Request, invalid: dict) -> tuple[web.Response | None, object]:
        """A write handler's start after its auth check: the injected fault's answer, or the JSON
        body (a body that is not JSON answers 400 with the vendor's ``invalid`` error body)."""
        fault = await self.faults()
        if fault is not None:
            self.log(fault.status)
            return fault, None
        try:
            body = await request.json()
        except ValueError:
            self.log(400)
            return web.json_response(invalid, status=400), None
        return None, body

    def log(self, status: int, records: int = 0, started: float | None = None) -> None:
        """One write request answered: when it came (``started``) and ended (``at``), status, records."""
        now = time.time()
        self.requests.append({"at": now, "started": started or now, "status": status, "records": records})

    def stats(self) -> dict:
        ok = [r for r in self.requests if 200 <= r["status"] < 300]
        return {"requests": len(self.requests), "early_requests": self.early, "token_requests": self.token_requests,
                "mean_request_records": sum(r["records"] for r in ok) / len(ok) if ok else 0.0,
                "statuses": {str(s): sum(1 for r in self.requests if r["status"] == s)
                             for s in sorted({r["status"] for r in self.requests})}}

    # ------------------------------------------------------------------ HTTP control routes
    async def handle_control(self, request: web.Request) -> web.Response:
        self.control(await request.json())
        return web.json_response({"ok": True})

    async def handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def handle_requests(self, request: web.Request) -> web.Response:
        """``GET /_requests``: every write request, when it came and ended, its status and records."""
        return web.json_response(self.requests)

    def listing(self) -> list:
        """What the fake stored, as plain JSON rows (``GET /activities`` and ``GET /``)."""
        return []

    async def handle_listing(self, request: web.Request) -> web.Response:
        return web.json_response(self.listing())

    def listing_routes(self, app: web.Application) -> None:
        """``GET /activities`` and ``GET /`` list what was stored; plus the control routes."""
        app.router.add_get("/activities", self.handle_listing)
        app.router.add_get("/", self.handle_listing)
        self.control_routes(app)

    def control_routes(self, app: web.Application) -> None:
        app.router.add_post("/_control", self.handle_control)
        app.router.add_post("/_reset", self.handle_reset)
        app.router.add_get("/_stats", self.handle_stats)
        app.router.add_get("/_requests", self.handle_requests)


def fake_main(module: str, description: str, port: int, make, banner: str, username: str | None = None,
              extra=None) -> None:
    """A fake's ``python -m`` entry point: ``--host``, ``--port``, ``--latency-ms`` (and ``--username``,
    plus what ``extra(parser)`` adds); ``make(args)`` builds the fake, which then serves until stopped."""
    ap = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=port, help=f"port to listen on (default {port})")
    if username is not None:
        ap.add_argument("--username", default=username, help=f"the user the fake accepts (default {username})")
    ap.add_argument("--latency-ms", type=float, default=0, help="answer every write request this much later")
    if extra is not None:
        extra(ap)
    args = ap.parse_args()
    fake = make(args)
    fake.control({"latency_ms": args.latency_ms})
    fake.serve_forever(args.host, args.port, banner)
