"""Generic HTTP webhook sink: a JSON batch POST, signed, one idempotency key per activity.

Request (``POST <url>``)::

    Content-Type: application/json
    Idempotency-Key: <sha256 of the batch's ActivityKeys>          # the batch as a whole
    X-Activity-Sync-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>
    X-Activity-Sync-Timestamp: <unix seconds, also inside the body>

    {"endpoint": "crm", "sent_at": 1732380000,
     "activities": [{"idempotency_key": "<ActivityKey>", "activity_key": ..., "customer_id": ...,
                     "activity_code": ..., "category": ..., "activity_date": "2016-06-13T20:10:53.462885Z",
                     "link_url": ..., "description": ..., "writeback_code1": ..., "writeback_code2": ...,
                     "tenant_code": ..., "details": "<Details>…</Details>", "details_format": "xml"}]}

Response: any 2xx accepts the whole batch, unless its JSON body has ``results``: one entry per
activity (``{"idempotency_key", "status", "error"}``, ``status`` an HTTP status for that record),
so a receiver can refuse one record (400) and accept the rest. A receiver must treat a repeated
``idempotency_key`` as already done (answer 200): the pipeline delivers at least once, and that
key is what keeps a redelivery from becoming a duplicate. Whole-request statuses are classified
by :func:`sinks.http.classify_http` (429 + Retry-After, 5xx and 408 retriable, other 4xx fatal).

The signature follows the common webhook convention (GitHub's ``X-Hub-Signature-256``: HMAC-SHA256
of the raw body, hex, ``sha256=`` prefix); the receiver compares it in constant time.

Settings: :class:`~sinks.providers.webhook.settings.WebhookSettings` (``url``, where the HMAC
secret is, ``details_format``, extra headers and where secret headers are; batch at most 1000).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Sequence

import orjson

from sinks.contract import Delivery, RecordFailure, RetriableError
from sinks.http import HttpSink, classify_http

SIGNATURE_HEADER = "X-Activity-Sync-Signature-256"
TIMESTAMP_HEADER = "X-Activity-Sync-Timestamp"


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(sign(secret, body), header)


def activity_json(d: Delivery, details_format: str) -> dict:
    return {
        "idempotency_key": d.activity_key,
        "activity_key": d.activity_key,
        "customer_id": d.customer_id,
        "contact_key": d.contact_key,
        "activity_code": d.activity_code,
        "category": d.category,
        "activity_date": d.activity_date_iso,
        "link_url": d.link_url,
        "description": d.description,
        "writeback_code1": d.writeback_code1,
        "writeback_code2": d.writeback_code2,
        "tenant_code": d.tenant_code,
        "details": d.details_xml if details_format == "xml" else d.details_json,
        "details_format": details_format,
    }


class WebhookSink(HttpSink):
    provider = "webhook"

    async def setup(self) -> None:
        s = self.ctx.settings
        self.headers = {**s.headers, **s.secret_headers()}
        secret = s.secret("hmac_secret")
        self.secret = secret.encode() if secret else None

    async def write(self, batch: Sequence[Delivery]) -> list[RecordFailure]:
        if not batch:
            return []
        failures: list[RecordFailure] = []
        items, index = [], []
        for i, d in enumerate(batch):
            if (error := self.no_customer(d)) is not None:
                failures.append(RecordFailure(i, error))
                continue
            items.append(activity_json(d, self.ctx.settings.details_format))
            index.append(i)
        if not items:
            return failures
        now = int(time.time())
        doc = {"endpoint": self.ctx.endpoint, "sent_at": now, "activities": items}
        try:
            body = orjson.dumps(doc)  # compact UTF-8, as the standard library's below writes it
        except TypeError:  # text orjson refuses (a lone surrogate): the standard library escapes it
            body = json.dumps(doc, separators=(",", ":")).encode()
        headers = {**self.headers, "Content-Type": "application/json", TIMESTAMP_HEADER: str(now),
                   "Idempotency-Key": hashlib.sha256("\n".join(x["idempotency_key"] for x in items).encode()).hexdigest()}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        resp = await self.request("POST", self.ctx.settings.url, data=body, headers=headers)
        results = _results(resp.text)
        if results is not None:
            by_key = {r.get("idempotency_key"): r for r in results if isinstance(r, dict)}
            for pos, item in zip(index, items):
                r = by_key.get(item["idempotency_key"])
                if r is None:
                    failures.append(RecordFailure(pos, RetriableError("receiver gave no result for this record")))
                    continue
                err = classify_http(int(r.get("status", 200)), str(r.get("error") or ""))
                if err is not None:
                    failures.append(RecordFailure(pos, err))
        return failures


def _results(text: str) -> list | None:
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("results"), list):
        return doc["results"]
    return None


__all__ = ["WebhookSink", "sign", "verify", "SIGNATURE_HEADER", "TIMESTAMP_HEADER"]
