"""What every HTTP client of the project shares, sinks and sources alike: ``Retry-After``, hiding
query strings from errors, a plain response record, and the OAuth2 token cache.

:class:`TokenCache` is the one token helper: it hands out a cached token, asks for a new one a
little before a known expiry (``renew_before_s``), lets one caller at a time ask, and after a 401
:meth:`TokenCache.refresh` drops the token and asks once more (the caller then retries once).
:func:`client_credentials` is the OAuth2 client-credentials grant (RFC 6749 4.4) most vendors use.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After is delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


_QUERY = re.compile(r"((?:https?|wss?)://[^\s'\"?#]+)\?[^\s'\"#]*")


def without_query(text: str) -> str:
    """Text with every URL's query string hidden: a client error names the URL it requested, and some
    APIs take a credential there (Aptify's sign-in takes the password in the query string)."""
    return _QUERY.sub(r"\1?[query hidden]", text)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Any  # multidict of the response headers
    text: str

    def json(self, default=None):
        try:
            return json.loads(self.text) if self.text else default
        except ValueError:
            return default


@dataclass
class Token:
    """An access token; ``expires_at`` (monotonic seconds) None when the API does not say."""

    value: str = field(repr=False)
    expires_at: float | None = None
    extra: dict = field(default_factory=dict, repr=False)  # e.g. Salesforce's instance_url


class TokenCache:
    """A cached token from ``fetch`` (an async callable answering a :class:`Token`, or None for an
    API without tokens): renewed ``renew_before_s`` before a known expiry, one fetch at a time."""

    def __init__(self, fetch: Callable[[], Awaitable[Token | None]], renew_before_s: float = 60.0) -> None:
        self.fetch = fetch
        self.renew_before_s = renew_before_s
        self.requests = 0          # tokens asked for
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Token | None:
        async with self._lock:
            t = self._token
            if t is None or (t.expires_at is not None and time.monotonic() >= t.expires_at - self.renew_before_s):
                self.requests += 1
                self._token = await self.fetch()
            return self._token

    async def refresh(self, stale: Token | None = None) -> Token | None:
        """After a 401: forget the token and get a new one. With ``stale`` (the token that was refused),
        a token another caller renewed meanwhile is kept, so concurrent 401s cost one request."""
        async with self._lock:
            if stale is None or self._token is stale:
                self._token = None
        return await self.get()

    def forget(self) -> None:
        self._token = None

    def set(self, token: Token | None) -> None:
        """For APIs whose every answer hands out the next token (netFORUM xWeb)."""
        self._token = token


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` value for HTTP Basic (RFC 7617)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bearer_or_basic(token: str | None, user: str | None, password: str | None) -> dict:
    """The ``Authorization`` header of an API that takes a Bearer token or HTTP Basic (Mobile Commons)."""
    return {"Authorization": f"Bearer {token}" if token else basic_auth(user or "", password or "")}


class TokenRefused(Exception):
    """The token endpoint refused the credentials (``status`` its HTTP status; 0: no answer)."""

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


async def client_credentials(session, token_url: str, client_id: str, client_secret: str, *,
                             basic: bool = True, scope: str | None = None,
                             headers: dict | None = None) -> Token:
    """The OAuth2 client-credentials grant (RFC 6749 4.4) with ``session`` (aiohttp): the client
    authenticates with HTTP Basic (``basic``, the RFC's preference) or in the form body; ``expires_in``
    becomes :attr:`Token.expires_at`. Raises :class:`TokenRefused` for a refusal or an answer with
    no ``access_token``; connection errors are the caller's to classify."""
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    headers = dict(headers or {})
    if basic:
        headers["Authorization"] = basic_auth(client_id, client_secret)
    else:
        form.update(client_id=client_id, client_secret=client_secret)
    async with session.post(token_url, data=form, headers=headers) as r:
        text = await r.text()
        status, retry_after = r.status, parse_retry_after(r.headers.get("Retry-After"))
    try:
        body = json.loads(text) if text else {}
    except ValueError:
        body = {}
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        error = body.get("error") if isinstance(body, dict) else None
        raise TokenRefused(f"token endpoint answered HTTP {status}" + (f": {error}" if error else ""),
                           status, retry_after)
    expires_in = body.get("expires_in")
    expires_at = (time.monotonic() + float(expires_in)
                  if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) else None)
    return Token(body["access_token"], expires_at, {k: v for k, v in body.items() if k != "access_token"})
