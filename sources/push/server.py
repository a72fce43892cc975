"""``activity-sync ingest``: the Push API v2 server (``POST /v2/contactinfo``, ``POST /v2/list``).

A request goes through, in this order, and stops at the first answer:

1. ``ApiKey`` checked against ``push.keys`` (401, the body unread);
2. ``Content-Type`` ``application/json`` or ``text/json`` (UTF-8), no ``Content-Encoding`` (415);
3. load: at most ``ACTIVITY_SYNC_INGEST_MAX_IN_FLIGHT`` requests at once (429, Retry-After);
4. size: a ``Content-Length`` over the limit is refused before a byte is read, a chunked body as
   soon as it passes the limit (413);
5. strict JSON, a JSON array, at most :data:`~sources.push.model.MAX_OBJECTS` objects (400/413);
6. every object validated (:mod:`sources.push.model`); any invalid object: 400 (413 for a limit)
   listing each problem, and **nothing of the request is stored** (all or nothing: the AMS fixes
   and resends the request, and never has to work out which half landed);
7. every record produced (``acks=all``) and acknowledged within ``ACTIVITY_SYNC_INGEST_WRITE_TIMEOUT_S``:
   200 with one result per object; else 503 with Retry-After (a retry is safe: a contact is a full
   record and list modes are set operations, so a repeat leaves the same state).

Records are keyed ``tenant|ContactId`` / ``tenant|ListId``: one contact's pushes land in one
partition, in the order they were acknowledged (aiokafka keeps one request in flight per partition).
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from aiohttp import web

from core.avro import SingleObjectCodec
from core.compacted import CompactedTopic
from core.configtable import ConfigTable
from core.partitioner import MemoPartitioner
from core.envelope import MalformedEvent, parse_json
from core.envvars import env_float, env_int
from core.routing import Routing
from core.settings import Settings
from core.topics import MAX_EVENT_TOPIC_BYTES, Topics

from . import metrics
from . import model as M
from .keys import KeyRing
from .openapi import document

log = logging.getLogger("activity_sync.ingest")
JSON_TYPES = ("application/json", "text/json")


def _answer(status: int, body: dict, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json", headers=headers)


def _error(status: int, error: str, problems=(), headers=None, count: int | None = None) -> web.Response:
    body: dict = {"error": error, "stored": 0}
    if problems:
        body["problem_count"] = count if count is not None else len(problems)
        body["problems"] = [p.as_json() if isinstance(p, M.Problem) else p for p in problems][:M.MAX_PROBLEMS]
    return _answer(status, body, headers)


class Ingest:
    """The server's state: the producer, the keys, the tenants' settings."""

    def __init__(self, settings: Settings, catalog, topics: Topics | None = None) -> None:
        self.settings = settings
        self.topics = topics or Topics(settings.topic_prefix)
        self.ring = KeyRing()
        self.keys = CompactedTopic(settings.kafka, self.topics.push_keys, self.ring.apply)
        self.routing = Routing(catalog)
        self.config = ConfigTable(settings.kafka, self.topics.config, self.routing)
        self.contact_codec = SingleObjectCodec(name="push_contact")
        self.list_codec = SingleObjectCodec(name="push_list")
        self.max_in_flight = env_int("ACTIVITY_SYNC_INGEST_MAX_IN_FLIGHT", 256, 1, 100_000)
        self.write_timeout = env_float("ACTIVITY_SYNC_INGEST_WRITE_TIMEOUT_S", 10.0, 0.1, 600)
        self.in_flight = 0
        self.producer = None
        self.started = False

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(
            acks="all", linger_ms=2, max_batch_size=1024 * 1024, max_request_size=MAX_EVENT_TOPIC_BYTES + 65536,
            request_timeout_ms=int(self.write_timeout * 1000) + 5000, retry_backoff_ms=200,
            client_id="activity-sync-ingest", partitioner=MemoPartitioner(), **self.settings.kafka.aiokafka_kwargs())
        await self.producer.start()
        await self.keys.start()
        await self.config.start()
        await self.keys.wait_ready()
        await self.config.wait_ready()
        self.started = True

    async def stop(self) -> None:
        for svc in (self.keys, self.config):
            try:
                await svc.stop()
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
        if self.producer is not None:
            await self.producer.stop()

    # ------------------------------------------------------------------ the app

    def app(self) -> web.Application:
        app = web.Application(client_max_size=M.MAX_BODY_BYTES + 1)
        app.router.add_post("/v2/contactinfo", self.contactinfo)
        app.router.add_post("/v2/list", self.lists)
        app.router.add_get("/v2/openapi.json", self.openapi)
        app.middlewares.append(_json_errors)
        return app

    async def openapi(self, request: web.Request) -> web.Response:
        return _answer(200, document())

    async def contactinfo(self, request: web.Request) -> web.Response:
        return await self._handle(request, "contactinfo")

    async def lists(self, request: web.Request) -> web.Response:
        return await self._handle(request, "list")

    async def _handle(self, request: web.Request, path: str) -> web.Response:
        started = time.monotonic()
        resp = await self._answer(request, path)
        metrics.REQUESTS.labels(path, str(resp.status)).inc()
        metrics.SECONDS.labels(path).observe(time.monotonic() - started)
        return resp

    async def _answer(self, request: web.Request, path: str) -> web.Response:
        key = self.ring.authenticate(request.headers.get("ApiKey"))
        if key is None:
            return _error(401, "The API Key is not valid: send the tenant's key in the ApiKey header "
                               "(activity-sync ingest-keys issues one).")
        ctype = request.headers.get("Content-Type", "")
        mime, _, params = ctype.partition(";")
        if mime.strip().lower() not in JSON_TYPES:
            return _error(415, f"Content-Type {ctype[:80]!r} is not accepted: application/json or text/json")
        charset = [p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";") if "=" in p
                   and p.split("=", 1)[0].strip().lower() == "charset"]
        if charset and charset[0] not in ("utf-8", "utf8"):
            return _error(415, f"charset {charset[0][:40]!r} is not accepted: JSON is UTF-8")
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            return _error(415, f"Content-Encoding {encoding[:40]!r} is not accepted: send the body uncompressed")
        if self.in_flight >= self.max_in_flight:
            return _error(429, f"the server is handling {self.in_flight} requests: retry after 1 second",
                          headers={"Retry-After": "1"})
        if request.content_length is not None and request.content_length > M.MAX_BODY_BYTES:
            return _error(413, f"the body is {request.content_length} bytes, the limit is {M.MAX_BODY_BYTES}")
        self.in_flight += 1
        metrics.IN_FLIGHT.inc()
        try:
            return await self._push(request, path, key)
        finally:
            self.in_flight -= 1
            metrics.IN_FLIGHT.dec()

    async def _push(self, request: web.Request, path: str, key) -> web.Response:
        body = bytearray()
        async for chunk in request.content.iter_chunked(256 * 1024):
            body += chunk
            if len(body) > M.MAX_BODY_BYTES:
                return _error(413, f"the body is over the limit of {M.MAX_BODY_BYTES} bytes")
        try:
            data = parse_json(bytes(body))
        except MalformedEvent as exc:
            return _error(400, f"the body is not JSON this API accepts: {exc}")
        if not isinstance(data, list):
            return _error(400, "the body must be a JSON array of objects")
        if len(data) > M.MAX_OBJECTS:
            return _error(413, f"{len(data)} objects in one request, the limit is {M.MAX_OBJECTS}")
        essentials = self.routing.tenant(key.tenant).community_essentials
        check = M.contact_info if path == "contactinfo" else M.list_object
        records, problems = [], []
        for i, obj in enumerate(data):
            rec, probs = check(i, obj, essentials=essentials)
            if probs:
                problems += probs
            elif not problems:
                records.append(rec)
        if problems:
            metrics.OBJECTS.labels(path, "invalid").inc(len({p.index for p in problems}))
            status = 413 if any(p.limit for p in problems) else 400
            return _error(status, f"{len({p.index for p in problems})} of {len(data)} objects are invalid: "
                                  f"nothing of this request was stored", problems, count=len(problems))
        now = int(time.time() * 1000)
        envelope = {"tenant_code": key.tenant, "origin": key.origin, "key_id": key.id, "received_at": now}
        if path == "contactinfo":
            topic, codec, ident = self.topics.push_contacts, self.contact_codec, lambda r: r["ContactDetails"]["ContactId"]
        else:
            topic, codec, ident = self.topics.push_lists, self.list_codec, lambda r: r["ListId"]
        ids = [ident(r) for r in records]
        try:
            await asyncio.wait_for(self._write(topic, codec, key.tenant, envelope, records, ids), self.write_timeout)
        except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - any failed write is a 503, never a 200
            metrics.KAFKA_FAILURES.inc()
            log.warning("push of %d objects for %s not acknowledged: %s: %s", len(records), key.tenant,
                        type(exc).__name__, str(exc)[:200])
            return _error(503, "Kafka did not acknowledge the write: retry after 5 seconds (a retry is safe)",
                          headers={"Retry-After": "5"})
        metrics.OBJECTS.labels(path, "stored").inc(len(records))
        return _answer(200, {"stored": len(records),
                             "results": [{"index": i, "id": v, "status": "stored"} for i, v in enumerate(ids)]})

    async def _write(self, topic, codec, tenant, envelope, records, ids) -> None:
        send = self.producer.send
        futures = []
        for rec, ident in zip(records, ids):
            futures.append(await send(topic, codec.encode({**envelope, **rec}), key=f"{tenant}|{ident}".encode()))
        await asyncio.gather(*futures)


@web.middleware
async def _json_errors(request: web.Request, handler):
    """aiohttp's own answers (404, 405, 413) as JSON, like ours; never a 500 page for input."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        reason = {404: "no such path: POST /v2/contactinfo or /v2/list (GET /v2/openapi.json)",
                  405: "only POST"}.get(exc.status, exc.reason)
        return _error(exc.status, reason, headers=headers)
    except Exception:  # noqa: BLE001 - logged with its traceback, answered 500 without one
        log.exception("ingest request failed")
        return _error(500, "internal error (logged)")


async def serve(settings: Settings, catalog, host: str, port: int, ready=None) -> None:
    """Run the server until cancelled; ``ready(url)`` once it listens."""
    ingest = Ingest(settings, catalog)
    await ingest.start()
    runner = web.AppRunner(ingest.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]  # the port chosen when 0 was asked
    url = f"http://{host}:{actual}/v2"
    log.info("Push API on %s", url)
    if ready is not None:
        ready(url, ingest)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await ingest.stop()
