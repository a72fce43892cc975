"""The configurable HTTP sink: for AMSs whose write API is the association's own endpoint.

What it sends is configuration (:mod:`.settings`): URL and method; authentication (fixed headers
whose secret values come from a file or the environment, HTTP Basic, a static bearer token, or
OAuth 2.0 client credentials per RFC 6749 section 4.4, the token kept until its ``expires_in`` or
a 401); the body as a JSON or XML template or form fields (:mod:`.template`); one activity per
request (``concurrency`` at once, :func:`sinks.http.write_each`) or a batch per request.

How it reads the answer: a status in ``success_statuses`` (default any 2xx) or
``duplicate_statuses`` (default 409: the receiver already has it) is success; otherwise 429 and
5xx are retriable (Retry-After honoured), 401 renews the token (oauth2) or waits (others), 413
splits a batch, any other 4xx is that request's records' own refusal. In batch mode with
``results_path``, the JSON answer's per-record results (matched by ``result_key_field``, else in
order) fail records one by one.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Sequence
from urllib.parse import quote, quote_plus

from sinks import mapping
from sinks.contract import (AuthExpired, BatchRefused, Delivery, FatalError, RecordFailure, RetriableError,
                            SetupError, SinkError)
from sinks.http import HttpResponse, HttpSink, Token, classify_http, each_rounds, write_each

from . import template as T


def text_of(value) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def walk(doc, tokens):
    """The value ``tokens`` (object keys, array indexes) lead to in ``doc``; None where there is none."""
    for token in tokens:
        if isinstance(doc, dict):
            doc = doc.get(token)
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            return None
    return doc


def pointer(doc, ptr: str):
    """RFC 6901: the value a JSON pointer names in ``doc``."""
    return walk(doc, (t.replace("~1", "/").replace("~0", "~") for t in ptr.split("/")[1:]))


def xml_results(text: str, path: str) -> list[dict] | None:
    """An XML answer's per-record results: the elements a dotted path of names leads to from the root
    (``Results.Result``: the root is Results, each Result a record), each as {child name: text}."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return None
    names = path.split(".")
    if _local(root.tag) != names[0]:
        return None
    level = [root]
    for name in names[1:]:
        level = [child for el in level for child in el if _local(child.tag) == name]
    return [{_local(c.tag): (c.text or "").strip() for c in el} for el in level]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def dig(doc, path: str):
    """The value a dotted path (``results.0.status``) names in ``doc``."""
    return walk(doc, path.split("."))


class ConfigurableHttpSink(HttpSink):
    provider = "http"

    async def setup(self) -> None:
        s = self.ctx.settings
        self.static_headers = {**s.headers}
        if s.auth == "headers":
            self.static_headers.update(s.secret_headers())
        elif s.auth == "basic":
            pair = f"{s.username}:{s.secret('password')}".encode()
            self.static_headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif s.auth == "bearer":
            self.static_headers["Authorization"] = f"Bearer {s.secret('bearer_token')}"
        elif s.auth == "oauth2":
            self._client_secret = s.secret("oauth_client_secret")
        if s.body_format == "json":
            self._template, self._wrapper = s.json_template(), s.json_wrapper()


    def request_rounds(self, n: int) -> int:
        s = self.ctx.settings
        return 1 if s.mode == "batch" else each_rounds(n, s.concurrency)

    # ------------------------------------------------------------------ auth
    async def authenticate(self) -> Token | None:
        s = self.ctx.settings
        if s.auth != "oauth2":
            return None
        form = {"grant_type": "client_credentials", **s.oauth_params}
        headers = {"Accept": "application/json"}
        if s.oauth_client_auth == "basic":  # RFC 6749 2.3.1: both form-urlencoded, then Basic
            pair = f"{quote_plus(s.oauth_client_id)}:{quote_plus(self._client_secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form.update(client_id=s.oauth_client_id, client_secret=self._client_secret)
        if s.oauth_scope:
            form["scope"] = s.oauth_scope
        resp = await self.request("POST", s.oauth_endpoint, data=form, headers=headers, classify=False)
        body = resp.json(default={})
        if resp.status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = body.get("error") if isinstance(body, dict) else None
            raise RetriableError(f"token request refused (HTTP {resp.status}){': ' + str(error) if error else ''}",
                                 status=resp.status)
        expires = body.get("expires_in")
        return Token(body["access_token"], time.monotonic() + float(expires) if expires else None)

    async def headers(self) -> dict:
        h = dict(self.static_headers)
        if self.ctx.settings.auth == "oauth2":
            h["Authorization"] = f"Bearer {(await self.token()).value}"
        return h

    # ------------------------------------------------------------------ answers
    def classify(self, resp: HttpResponse) -> SinkError | None:
        s = self.ctx.settings
        if resp.status in s.duplicate_statuses:
            return None
        if s.success_statuses:
            if resp.status in s.success_statuses:
                return self.body_says(resp)
        elif 200 <= resp.status < 300:
            return self.body_says(resp)
        if resp.status in s.setup_statuses:
            return SetupError(f"HTTP {resp.status}: {resp.text[:300]}", status=resp.status)
        err = classify_http(resp.status, resp.text[:300], resp.headers.get("Retry-After"))
        if err is None:  # a 2xx outside success_statuses
            return RetriableError(f"HTTP {resp.status} is not one of success_statuses {s.success_statuses}",
                                  status=resp.status)
        if isinstance(err, AuthExpired) and s.auth != "oauth2":
            return RetriableError(str(err), status=401)  # nothing to renew: wait for the operator
        return err

    def body_says(self, resp: HttpResponse) -> SinkError | None:
        """A 2xx whose body says the request failed (``success_pointer`` / ``error_pointer``): that
        request's records' own refusal (in batch mode the runner splits it to find the one)."""
        s = self.ctx.settings
        if not (s.success_pointer or s.error_pointer):
            return None
        doc = resp.json(default=None)
        if s.error_pointer:
            err = pointer(doc, s.error_pointer)
            if err not in (None, "", False, [], {}):
                return self.refused(resp, f"the answer says it failed: {str(err)[:300]}")
        if s.success_pointer:
            got = pointer(doc, s.success_pointer)
            if got != s.success_value:
                return self.refused(resp, f"the answer's {s.success_pointer} is {json.dumps(got)[:100]}, not "
                                          f"{json.dumps(s.success_value)}")
        return None

    def refused(self, resp: HttpResponse, text: str) -> SinkError:
        error = FatalError(f"HTTP {resp.status}: {text}", status=resp.status)
        return BatchRefused(str(error), status=resp.status) if self.ctx.settings.mode == "batch" else error

    # ------------------------------------------------------------------ per record
    def url_for(self, d: Delivery | None) -> str:
        """The URL with its placeholders rendered for one record, each value URL-encoded (mode one)."""
        s = self.ctx.settings
        if d is None or "{{" not in s.url:
            return s.url
        return T.PLACEHOLDER.sub(lambda m: quote(text_of(mapping.value(m.group(1), d)), safe=""), s.url)

    def headers_for(self, headers: dict, d: Delivery | None) -> dict:
        if d is None:
            return headers
        out = dict(headers)
        for k, v in self.ctx.settings.headers.items():
            if "{{" in v:  # one line: a value's line breaks would start another header
                out[k] = T.PLACEHOLDER.sub(lambda m: " ".join(text_of(mapping.value(m.group(1), d)).split()), v)
        return out

    # ------------------------------------------------------------------ bodies
    def render(self, d: Delivery):
        s = self.ctx.settings
        if s.body_format == "json":
            return T.render_json(self._template, d)
        if s.body_format == "xml":
            return T.render_xml(s.template, d)
        return T.render_form(s.form_fields, d)

    async def send(self, payload, d: Delivery | None = None) -> HttpResponse:
        s = self.ctx.settings
        headers = self.headers_for(await self.headers(), d)
        url = self.url_for(d)
        if s.body_format == "json":
            data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json")
            return await self.request(s.method, url, data=data, headers=headers)
        if s.body_format == "xml":
            headers.setdefault("Content-Type", "application/xml; charset=utf-8")
            return await self.request(s.method, url, data=('<?xml version="1.0" encoding="utf-8"?>' + payload)
                                      .encode(), headers=headers)
        return await self.request(s.method, url, data=payload, headers=headers)

    # ------------------------------------------------------------------ write
    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        if not batch:
            return []
        s = self.ctx.settings
        if s.mode == "one":
            return await write_each(batch, self.guarded_write, s.concurrency)
        failures, items, index = [], [], []
        for i, d in enumerate(batch):
            if (error := self.no_customer(d)) is not None:
                failures.append(RecordFailure(i, error))
                continue
            items.append(self.render(d))
            index.append(i)
        if not items:
            return failures
        body = T.wrap_json(self._wrapper, items) if s.body_format == "json" else T.wrap_xml(s.xml_wrapper(), items)
        resp = await self.send(body)
        if s.results_path:
            failures += self.read_results(resp, [batch[i] for i in index], index)
        return sorted(failures, key=lambda f: f.index)

    async def write_one(self, d: Delivery) -> None:
        await self.send(self.render(d), d)

    def read_results(self, resp: HttpResponse, sent: list[Delivery], index: list[int]) -> list[RecordFailure]:
        s = self.ctx.settings
        results = xml_results(resp.text, s.results_path) if s.body_format == "xml" else dig(resp.json(), s.results_path)
        if not isinstance(results, list):
            raise RetriableError(f"the answer has no list at {s.results_path!r}")
        if s.result_key_field:
            by_key = {str(r.get(s.result_key_field)): r for r in results if isinstance(r, dict)}
            picked = [by_key.get(d.activity_key) for d in sent]
        else:
            picked = results + [None] * (len(sent) - len(results))
        out = []
        for pos, r in zip(index, picked):
            if not isinstance(r, dict):
                out.append(RecordFailure(pos, RetriableError("the receiver gave no result for this record")))
                continue
            status, error = r.get(s.result_status_field), str(r.get(s.result_error_field) or "")
            if isinstance(status, bool):
                err = None if status else classify_http(400, error)
            else:
                try:
                    code = int(status) if status is not None else 200
                except (TypeError, ValueError):
                    code = 500
                err = None if code in s.duplicate_statuses else classify_http(code, error)
            if err is not None:
                out.append(RecordFailure(pos, err))
        return out
