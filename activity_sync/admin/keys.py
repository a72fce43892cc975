"""API keys of the admin API: from the environment or a file, compared in constant time, never logged.

``ACTIVITY_SYNC_ADMIN_KEYS_FILE`` (or ``ACTIVITY_SYNC_ADMIN_KEYS``) holds one key a line::

    # id     role    tenants     secret
    root     super   *           7d2a…           # an admin who may also change community lists
    ops      admin   *           4c1f…           # every tenant, may change things
    hug-ro   read    HUG         9a7e…           # reads the HUG tenant's endpoints only
    acme     admin   ACME,ACME2  0b3d…

``ACTIVITY_SYNC_ADMIN_KEY`` and ``ACTIVITY_SYNC_ADMIN_READ_KEY`` are shorthands for one super admin key
and one read-only key over every tenant. A request sends ``Authorization: Bearer <secret>`` (or
``X-API-Key``). Every key is compared (``hmac.compare_digest``) whatever the outcome, so timing
says nothing of which came close.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from core.envvars import EnvError
from core.logs import register_secret

ALL = "*"


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: str                                  # "super", "admin" or "read"
    tenants: tuple[str, ...] = (ALL,)
    secret: str = field(default="", repr=False)

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "super")

    @property
    def super_admin(self) -> bool:
        """Super admins also create and change community lists and the marketing connection."""
        return self.role == "super"

    def sees(self, tenants) -> bool:
        """Whether this key may see an endpoint serving ``tenants`` (all of them must be the key's)."""
        if ALL in self.tenants:
            return True
        return bool(tenants) and ALL not in tenants and set(tenants) <= set(self.tenants)

    @property
    def tenant_label(self) -> str:
        return ",".join(self.tenants)


def parse_keys(text: str, where: str) -> list[ApiKey]:
    keys = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 4 or parts[1] not in ("super", "admin", "read") or len(parts[3]) < 16:
            raise EnvError(f"{where} line {n}: 'id super|admin|read tenants secret' (tenants: * or A,B; a secret of "
                           f"16 characters or more)")
        keys.append(ApiKey(parts[0], parts[1], tuple(t for t in parts[2].split(",") if t), parts[3]))
    return keys


def load_keys(env=os.environ) -> list[ApiKey]:
    keys: list[ApiKey] = []
    if env.get("ACTIVITY_SYNC_ADMIN_KEYS_FILE"):
        path = Path(env["ACTIVITY_SYNC_ADMIN_KEYS_FILE"])
        keys += parse_keys(path.read_text(), f"ACTIVITY_SYNC_ADMIN_KEYS_FILE {path}")
    if env.get("ACTIVITY_SYNC_ADMIN_KEYS"):
        keys += parse_keys(env["ACTIVITY_SYNC_ADMIN_KEYS"], "ACTIVITY_SYNC_ADMIN_KEYS")
    for var, role in (("ACTIVITY_SYNC_ADMIN_KEY", "super"), ("ACTIVITY_SYNC_ADMIN_READ_KEY", "read")):
        if env.get(var):
            if len(env[var]) < 16:
                raise EnvError(f"{var}: a secret of 16 characters or more")
            keys.append(ApiKey("admin" if role == "super" else role, role, (ALL,), env[var]))
    for k in keys:
        register_secret(k.secret)
    return keys


def authenticate(keys: list[ApiKey], presented: str | None) -> ApiKey | None:
    """The key whose secret is ``presented`` (constant time per key, every key compared)."""
    found = None
    given = (presented or "").encode()
    for k in keys:
        if hmac.compare_digest(given, k.secret.encode()) and found is None:
            found = k
    return found
