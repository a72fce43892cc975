"""The shared base of HTTP providers: everything about talking HTTP that is not one vendor's.

:class:`HttpSink` owns the ``aiohttp`` session (opened at start, closed at stop), the request
timeout, turning connection errors and timeouts into :class:`RetriableError`, classifying the
status (:func:`classify_http`; a provider overrides :meth:`HttpSink.classify` only for its
body-level codes), ``Retry-After``, counting every answer for metrics, and a token cache:
a provider with a token implements :meth:`HttpSink.authenticate`; :meth:`HttpSink.token` hands
out the cached one (renewed shortly before a known expiry), and the runner's one retry after
:class:`AuthExpired` calls :meth:`HttpSink.reauthenticate`, which drops it and asks again.

    class MySink(HttpSink):
        provider = "my-crm"
        async def authenticate(self) -> Token: ...          # optional
        async def write(self, batch):
            resp = await self.request("POST", url, json=..., headers=await self.auth_headers())
            ... per-record results from resp.json() ...
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Sequence

import aiohttp

from core.http import HttpResponse, Token, TokenCache, parse_retry_after, without_query  # noqa: F401 (re-exported)

from .contract import (AuthExpired, Delivery, FatalError, PayloadTooLarge, RecordFailure, RetriableError, Sink,
                       SinkContext, SinkError, Throttled)


def classify_http(status: int, message: str = "", retry_after: str | None = None) -> SinkError | None:
    """The default HTTP classification: None for 2xx, else the error the status means.

    429 throttled (Retry-After in seconds or an HTTP date); 408, 425 and 5xx retriable;
    401 auth expired; any other 4xx fatal. A provider overrides this only for body-level codes.
    """
    if 200 <= status < 300:
        return None
    text = f"HTTP {status}" + (f": {message[:500]}" if message else "")
    if status == 429:
        return Throttled(text, status=status, retry_after=parse_retry_after(retry_after))
    if status in (408, 425) or status >= 500:
        return RetriableError(text, status=status, retry_after=parse_retry_after(retry_after))
    if status == 401:
        return AuthExpired(text, status=status)
    if status == 413:
        return PayloadTooLarge(text, status=status)
    return FatalError(text, status=status)


class HttpSink(Sink):
    """Base of HTTP providers: session, timeouts, classification, Retry-After, metrics, token cache."""

    #: renew a token this long before its known expiry
    renew_before_s = 60.0

    async def start(self, ctx: SinkContext) -> None:
        await super().start(ctx)
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ctx.settings.timeout_s),
                                             connector=aiohttp.TCPConnector(ssl=self.ssl_context()))
        self._tokens = TokenCache(self.authenticate, self.renew_before_s)
        await self.setup()

    def ssl_context(self):
        """TLS verification: the system's CAs, plus ``settings.ca_file`` when the endpoint names one
        (a private CA, a TLS-inspecting proxy, or the test CA of a fake)."""
        s = self.ctx.settings
        ca, cert, key = (getattr(s, n, None) for n in ("ca_file", "client_cert_file", "client_key_file"))
        if not (ca or cert):
            return True
        import ssl

        context = ssl.create_default_context()
        try:
            if ca:
                context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise LookupError(f"settings.ca_file {ca}: {exc}") from None
        try:
            if cert:  # mutual TLS: the client's certificate, for the token endpoint and the API alike
                context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise LookupError(f"settings.client_cert_file {cert} / client_key_file {key}: {exc}") from None
        return context

    async def setup(self) -> None:
        """Provider start-up after the session exists (read secrets, build URLs)."""

    async def stop(self) -> None:
        session = getattr(self, "session", None)
        if session is not None and not session.closed:
            await session.close()

    # ------------------------------------------------------------------ tokens
    async def authenticate(self) -> Token | None:
        """Get a new token from the API (providers with tokens override this)."""
        return None

    async def token(self) -> Token | None:
        return await self._tokens.get()

    @property
    def token_requests(self) -> int:
        return self._tokens.requests

    async def reauthenticate(self) -> None:
        """After an :class:`AuthExpired`: forget the token and get a new one (the runner then retries once)."""
        self._tokens.forget()
        await self._tokens.get()

    # ------------------------------------------------------------------ requests
    def classify(self, resp: HttpResponse) -> SinkError | None:
        """The error an answer means (None: success). Override for a vendor's body-level codes."""
        return classify_http(resp.status, resp.text, resp.headers.get("Retry-After"))

    async def request(self, method: str, url: str, *, classify: bool = True, **kwargs) -> HttpResponse:
        """One request; raises the :class:`SinkError` its answer means (unless ``classify=False``)."""
        try:
            async with self.session.request(method, url, **kwargs) as r:
                resp = HttpResponse(r.status, r.headers, await r.text())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.ctx.observe_http("error")
            name = type(exc).__name__
            raise RetriableError(f"{name}: {without_query(str(exc))}" if str(exc) else name) from None
        self.ctx.observe_http(resp.status)
        if classify:
            error = self.classify(resp)
            if error is not None:
                raise error
        return resp

    async def guarded_write(self, d: Delivery) -> None:
        """One record: refused without a customer ID, skipped when the duplicate guard finds it written."""
        error = self.no_customer(d)
        if error is not None:
            raise error
        if self.duplicate_guard() and await self.already_written(d):
            return
        await self.write_one(d)


class PerRecordSink(HttpSink):
    """Base of providers whose API takes one record per request (iMIS, Aptify, Personify): a batch
    becomes that many requests, at most ``settings.concurrency`` at a time.

    The first request of a write goes alone (a canary): an expired token, a throttle or a server
    that is down then costs one request, not ``concurrency``. After any retriable answer no new
    request starts; the records not yet sent are returned with that error, and the runner tries
    them again in-process (after the Retry-After, or a new token) and then on the retry tiers.
    A record's own refusal (a 4xx) fails that record alone.

        class MySink(PerRecordSink):
            async def write_one(self, d: Delivery) -> None: ...   # raise SinkError on failure
    """

    async def write_one(self, d: Delivery) -> None:
        raise NotImplementedError

    def request_rounds(self, n: int) -> int:
        return each_rounds(n, self.ctx.settings.concurrency)

    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        return await write_each(batch, self.guarded_write, self.ctx.settings.concurrency)



def each_rounds(n: int, concurrency: int) -> int:
    """The requests one after another of a :func:`write_each` of ``n`` records: the canary, then
    rounds of ``concurrency``."""
    return 1 + -(-max(0, n - 1) // max(1, concurrency))


async def write_each(batch: Sequence[Delivery], one: Callable[[Delivery], Awaitable[None]],
                     concurrency: int) -> list[RecordFailure]:
    """One call of ``one`` per record (see :class:`PerRecordSink`); failures by record index."""
    failures: list[RecordFailure] = []
    stop: list[SinkError] = []
    sem = asyncio.Semaphore(max(1, concurrency))

    async def run(i: int, d: Delivery) -> None:
        async with sem:
            if stop:
                failures.append(RecordFailure(i, stop[0]))
                return
            try:
                await one(d)
            except SinkError as exc:
                failures.append(RecordFailure(i, exc))
                if exc.retriable and not stop:
                    stop.append(exc)

    if batch:
        await run(0, batch[0])
        await asyncio.gather(*(run(i, d) for i, d in enumerate(batch) if i))
    return sorted(failures, key=lambda f: f.index)
