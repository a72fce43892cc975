"""Push API keys: one per tenant and origin system, issued once, stored hashed on ``push.keys``.

A key reads ``<id>.<secret>``: the id names the record, the secret (32 random bytes, URL-safe
base64) is shown once when the key is issued and never stored: the record on the compacted
``push.keys`` topic holds its SHA-256 (a random 256-bit secret needs no slow hash: there is
nothing to guess from). Each record also names the key's tenant and its ``origin``: the endpoint
(the AMS/CRM the pushes come from) that the contact changes it pushes are never written back to.
A tombstone revokes a key. Checking a presented key hashes it and compares with
``hmac.compare_digest`` (against a dummy hash when the id is unknown), so timing tells nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass

KEY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
KEY_ID_RULE = "lower-case letters, digits and '-', at most 40, starting with a letter or digit"
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_DUMMY = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class IngestKey:
    id: str
    tenant: str
    origin: str | None
    sha256: str
    created_at: int  # milliseconds since the epoch

    def record(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    def public(self) -> dict:
        """What may be shown: everything but the hash."""
        return {"id": self.id, "tenant": self.tenant, "origin": self.origin, "created_at": self.created_at}


def check_key_fields(key_id: str, tenant: str, origin: str | None) -> None:
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise ValueError(f"key id {str(key_id)[:60]!r}: {KEY_ID_RULE}")
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        raise ValueError(f"tenant {str(tenant)[:60]!r}: letters, digits, '_', '.', '-', at most 100")
    if origin is not None and (not isinstance(origin, str) or not TENANT.fullmatch(origin)):
        raise ValueError(f"origin {str(origin)[:60]!r}: an endpoint name (letters, digits, '_', '.', '-')")


def new_key(key_id: str, tenant: str, origin: str | None) -> tuple[IngestKey, str]:
    """A new key: its record and the secret to hand over (``<id>.<secret>``), shown once."""
    check_key_fields(key_id, tenant, origin)
    secret = secrets.token_urlsafe(32)
    presented = f"{key_id}.{secret}"
    return IngestKey(key_id, tenant, origin, _hash(presented), int(time.time() * 1000)), presented


def _hash(presented: str) -> str:
    return hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()


def key_from_record(value: bytes) -> IngestKey:
    d = json.loads(value)
    key = IngestKey(d["id"], d["tenant"], d.get("origin"), d["sha256"], int(d["created_at"]))
    check_key_fields(key.id, key.tenant, key.origin)
    if not re.fullmatch(r"[0-9a-f]{64}", key.sha256):
        raise ValueError("sha256 is not a SHA-256 hex digest")
    return key


class KeyRing:
    """The keys in force (fed by the ``push.keys`` records)."""

    def __init__(self) -> None:
        self.keys: dict[str, IngestKey] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        kid = key.decode()
        if value is None:
            self.keys.pop(kid, None)
            return
        rec = key_from_record(value)
        if rec.id != kid:
            raise ValueError(f"record {kid!r} holds key {rec.id!r}")
        self.keys[kid] = rec

    def authenticate(self, presented: str | None) -> IngestKey | None:
        if not presented or len(presented) > 200:
            return None
        kid = presented.split(".", 1)[0]
        known = self.keys.get(kid)
        ok = hmac.compare_digest(_hash(presented), known.sha256 if known else _DUMMY)
        return known if ok and known is not None else None
