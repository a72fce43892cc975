"""Community lists (the List Builder's Custom User Lists): definitions, criteria, a member's state. Pure.

A **list** (``lists:`` in a config document, ``list:<tenant>:<id>`` on ``activity.config``) names the
members of one tenant who match its **criteria**, a tree of:

- ``activity: {codes: [..], categories: [..], at_least: 1, at_most: N, within: 30d | from: .., to: ..}``:
  the member did activities of those codes or categories at least / at most so many times, within the
  last ``within`` (``90d``, ``12h``; ``within_days: 90`` says the same) or between two dates (UTC, both
  days included), or ever;
- ``never: {codes: [..], categories: [..], within: 90d}``: none of them (in that window), for example
  "has not logged in for 90 days";
- ``score: {at_least: 10, at_most: 50}``: the member's engagement score (the scoring stage's);
- ``member_of: {community: <CommunityKey or CommunityName>}``: joined the community and not left it;
- ``all: [..]``, ``any: [..]``, ``not: {..}``.

With ``push: true``, each member joining or leaving the list is also an activity (``CommunityListJoin``,
``CommunityListLeave``) for the endpoints subscribed to it: the ``informz`` provider writes them to
the marketing platform's target group within seconds.

A **member's state** (:func:`apply_activity`) keeps per activity code its total and the dates of its
newest :data:`KEEP_PER_CODE` activities of the last :data:`HORIZON_DAYS` days (so a window of up to
400 days counts up to 200 activities), the communities joined, the score, the member's e-mail and
names as the activities last carried them, and the keys of its recent activities (an activity
delivered twice counts once). :func:`due` says when a time window next changes the answer without
a new activity: the stage's timer re-evaluates the member then.

Lists whose name begins with ``Informz`` are offered to the marketing platform (the Online Community
Connection), their target group named without the prefix (:func:`target_group_name`).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from .settingsmodel import parse_duration

HORIZON_DAYS = 400
KEEP_PER_CODE = 200
KEEP_KEYS = 64
PREFIX = "Informz"
FOLDER = "Online Community"
JOIN_CODES = ("CommunityMemberJoin", "CommunityMemberAdd", "ContactGroupJoin")
LEAVE_CODES = ("CommunityMemberLeave", "CommunityMemberRemove", "CommunityMemberDelete", "ContactGroupLeave")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# an address a mail system accepts: one @, a dot-atom local part, a domain of labels with a dot
_EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
                    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")


class ListError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def valid_email(text) -> bool:
    return isinstance(text, str) and len(text) <= 254 and _EMAIL.fullmatch(text) is not None


def email_key(text) -> str | None:
    return text.strip().lower() if isinstance(text, str) and text.strip() else None


# ----------------------------------------------------------------------------- criteria

@dataclass(frozen=True)
class Activity:
    codes: frozenset = frozenset()
    categories: frozenset = frozenset()
    at_least: int = 1
    at_most: int | None = None
    within_s: float | None = None
    start: float | None = None     # epoch seconds, inclusive
    end: float | None = None       # epoch seconds, exclusive (the day after ``to``)

    def _names(self, st: dict) -> list[str]:
        codes = st.get("codes", {})
        if not self.categories:
            return [c for c in self.codes if c in codes]
        cc = st.get("cc", {})
        return [c for c in codes if c in self.codes or cc.get(c) in self.categories]

    def count(self, st: dict, now: float) -> int:
        n = 0
        codes = st.get("codes", {})
        for code in self._names(st):
            total, times = codes[code]
            if self.within_s is None and self.start is None:
                n += total
            elif self.within_s is not None:
                n += len(times) - bisect.bisect_left(times, now - self.within_s)
            else:
                n += bisect.bisect_left(times, self.end or float("inf")) - bisect.bisect_left(times, self.start)
        return n

    def test(self, st: dict, now: float) -> bool:
        n = self.count(st, now)
        return n >= self.at_least and (self.at_most is None or n <= self.at_most)

    def due(self, st: dict, now: float) -> float | None:
        """When the oldest matching activity inside the window leaves it (the count drops then)."""
        if self.within_s is None:
            return None
        first = None
        codes = st.get("codes", {})
        for code in self._names(st):
            times = codes[code][1]
            i = bisect.bisect_left(times, now - self.within_s)
            if i < len(times) and (first is None or times[i] < first):
                first = times[i]
        return None if first is None else first + self.within_s


@dataclass(frozen=True)
class Score:
    at_least: float | None = None
    at_most: float | None = None

    def test(self, st: dict, now: float) -> bool:
        s = st.get("score")
        if s is None:
            return False
        return (self.at_least is None or s >= self.at_least) and (self.at_most is None or s <= self.at_most)


@dataclass(frozen=True)
class MemberOf:
    community: str

    def test(self, st: dict, now: float) -> bool:
        return bool(st.get("comm", {}).get(self.community.lower()))


@dataclass(frozen=True)
class Node:
    op: str                      # all, any, not
    parts: tuple = ()

    def test(self, st: dict, now: float) -> bool:
        if self.op == "all":
            return all(p.test(st, now) for p in self.parts)
        if self.op == "any":
            return any(p.test(st, now) for p in self.parts)
        return not self.parts[0].test(st, now)


def mentions(c) -> tuple[frozenset, frozenset, bool, bool]:
    """``(codes, categories, score, member_of)`` a criteria tree looks at: an activity of another code
    and category cannot change its answer (time can: the timer re-evaluates)."""
    if isinstance(c, Node):
        parts = [mentions(p) for p in c.parts]
        return (frozenset().union(*(p[0] for p in parts)), frozenset().union(*(p[1] for p in parts)),
                any(p[2] for p in parts), any(p[3] for p in parts))
    if isinstance(c, Activity):
        return c.codes, c.categories, False, False
    return frozenset(), frozenset(), isinstance(c, Score), isinstance(c, MemberOf)


def windowed(c) -> list[Activity]:
    if isinstance(c, Node):
        return [w for p in c.parts for w in windowed(p)]
    return [c] if isinstance(c, Activity) and c.within_s is not None else []


def _strs(v, where: str) -> frozenset:
    if v is None:
        return frozenset()
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ListError(f"{where}: a list of names", where)
    return frozenset(x.strip() for x in v)


def _count(v, where: str, default):
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1_000_000:
        raise ListError(f"{where}: a whole number from 0", where)
    return v


def _day(v, where: str) -> float:
    try:
        d = dt.date.fromisoformat(str(v)) if not isinstance(v, dt.date) else v
    except ValueError:
        raise ListError(f"{where}: a date such as 2026-01-31", where) from None
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp()


def _activity(d, where: str, never: bool = False) -> Activity:
    allowed = {"codes", "categories", "within", "within_days", "from", "to"} | (set() if never else {"at_least",
                                                                                                   "at_most"})
    if not isinstance(d, dict):
        raise ListError(f"{where}: a mapping such as {{codes: [Login], within: 90d}}", where)
    for k in d:
        if k not in allowed:
            raise ListError(f"{where}.{k}: unknown (known: {', '.join(sorted(allowed))})", f"{where}.{k}")
    codes, cats = _strs(d.get("codes"), f"{where}.codes"), _strs(d.get("categories"), f"{where}.categories")
    if not codes and not cats:
        raise ListError(f"{where}: name codes or categories", f"{where}.codes")
    within = None
    if d.get("within") is not None and d.get("within_days") is not None:
        raise ListError(f"{where}: within or within_days, not both", f"{where}.within")
    if d.get("within") is not None:
        try:
            within = parse_duration(d["within"], most=HORIZON_DAYS * 86400)
        except ValueError as exc:
            raise ListError(f"{where}.within: {exc}", f"{where}.within") from None
    if d.get("within_days") is not None:
        v = d["within_days"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= HORIZON_DAYS:
            raise ListError(f"{where}.within_days: a number of days from 1 to {HORIZON_DAYS}", f"{where}.within_days")
        within = float(v) * 86400
    start = _day(d["from"], f"{where}.from") if d.get("from") is not None else None
    end = _day(d["to"], f"{where}.to") + 86400 if d.get("to") is not None else None
    if (start is not None or end is not None) and within is not None:
        raise ListError(f"{where}: a window (within) or dates (from/to), not both", f"{where}.within")
    if end is not None and start is None:
        start = 0.0
    if start is not None and end is not None and end <= start:
        raise ListError(f"{where}.to: on or after from", f"{where}.to")
    if never:
        return Activity(codes, cats, 0, 0, within, start, end)
    at_least = _count(d.get("at_least"), f"{where}.at_least", 1)
    at_most = _count(d.get("at_most"), f"{where}.at_most", None)
    if at_most is not None and at_most < at_least:
        raise ListError(f"{where}.at_most: at least at_least ({at_least})", f"{where}.at_most")
    if (within is not None or start is not None) and max(at_least, at_most or 0) > KEEP_PER_CODE:
        raise ListError(f"{where}: within a window, counts up to {KEEP_PER_CODE}", f"{where}.at_least")
    return Activity(codes, cats, at_least, at_most, within, start, end)


def parse_criteria(d, where: str = "criteria", depth: int = 0):
    if depth > 8:
        raise ListError(f"{where}: nested too deep (8 levels at most)", where)
    if not isinstance(d, dict) or len(d) != 1:
        raise ListError(f"{where}: one of activity, never, score, member_of, all, any, not (a mapping with one key)",
                        where)
    (kind, v), = d.items()
    at = f"{where}.{kind}"
    if kind in ("all", "any"):
        if not isinstance(v, list) or not v or len(v) > 50:
            raise ListError(f"{at}: a list of 1 to 50 criteria", at)
        return Node(kind, tuple(parse_criteria(x, f"{at}[{i}]", depth + 1) for i, x in enumerate(v)))
    if kind == "not":
        return Node("not", (parse_criteria(v, at, depth + 1),))
    if kind == "activity":
        return _activity(v, at)
    if kind == "never":
        return _activity(v, at, never=True)
    if kind == "score":
        if not isinstance(v, dict) or not v or set(v) - {"at_least", "at_most"}:
            raise ListError(f"{at}: {{at_least: N}} and/or {{at_most: N}}", at)
        for k, x in v.items():
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise ListError(f"{at}.{k}: a number", f"{at}.{k}")
        return Score(v.get("at_least"), v.get("at_most"))
    if kind == "member_of":
        if not isinstance(v, dict) or set(v) != {"community"} or not isinstance(v["community"], str) \
                or not v["community"].strip():
            raise ListError(f"{at}: {{community: <CommunityKey or CommunityName>}}", at)
        return MemberOf(v["community"].strip())
    raise ListError(f"{where}: unknown criterion {kind!r} (activity, never, score, member_of, all, any, not)", where)


# ----------------------------------------------------------------------------- a list

def slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    return (s or "list")[:100]


def target_group_name(name: str) -> str | None:
    """The target group a list becomes (``Informz Has Started…`` -> ``Has Started…``); None: not offered."""
    if not name.startswith(PREFIX):
        return None
    return name[len(PREFIX):].strip() or None


@dataclass(frozen=True)
class ListDef:
    tenant: str
    id: str
    name: str
    criteria: object = field(compare=False)
    raw: dict = field(compare=False, default_factory=dict)
    description: str = ""
    enabled: bool = True
    push: bool = False

    def key(self) -> str:
        return f"list:{self.tenant}:{self.id}"

    def record(self) -> dict:
        return {"tenant": self.tenant, "id": self.id, "name": self.name, "description": self.description,
                "enabled": self.enabled, "push": self.push, "criteria": self.raw}

    @property
    def target_group(self) -> str | None:
        return target_group_name(self.name)

    @property
    def windows(self) -> list[Activity]:
        w = self.__dict__.get("_windows")
        if w is None:
            w = windowed(self.criteria)
            object.__setattr__(self, "_windows", w)
        return w

    @property
    def looks_at(self) -> tuple[frozenset, frozenset, bool, bool]:
        m = self.__dict__.get("_looks_at")
        if m is None:
            m = mentions(self.criteria)
            object.__setattr__(self, "_looks_at", m)
        return m

    def affected_by(self, code: str | None, category: str | None, score: bool = False) -> bool:
        """Whether an activity of ``code`` (or a new score) may change who is in the list."""
        codes, cats, by_score, by_community = self.looks_at
        if score:
            return by_score
        return code in codes or category in cats or (by_community and (code in JOIN_CODES or code in LEAVE_CODES))

    def test(self, st: dict, now: float) -> bool:
        return self.enabled and self.criteria.test(st, now)


def parse_list(d) -> ListDef:
    if not isinstance(d, dict):
        raise ListError("a list must be a mapping (tenant, name, criteria)")
    known = {"tenant", "id", "name", "description", "enabled", "push", "criteria"}
    for k in d:
        if k not in known:
            raise ListError(f"list {d.get('name', '?')}: {k}: unknown (known: {', '.join(sorted(known))})", k)
    for k in ("tenant", "name"):
        if not isinstance(d.get(k), str) or not d[k].strip() or len(d[k]) > 200:
            raise ListError(f"list {d.get('name', '?')}: {k}: required, 1 to 200 characters", k)
    lid = d.get("id") if d.get("id") is not None else slug(d["name"])
    if not isinstance(lid, str) or not _ID.fullmatch(lid):
        raise ListError(f"list {d['name']}: id: letters, digits, '.', '_' and '-' (100 at most)", "id")
    for k in ("enabled", "push"):
        if not isinstance(d.get(k, k == "enabled"), bool):
            raise ListError(f"list {d['name']}: {k}: true or false", k)
    if not isinstance(d.get("description", ""), str):
        raise ListError(f"list {d['name']}: description: text", "description")
    if "criteria" not in d:
        raise ListError(f"list {d['name']}: criteria: required", "criteria")
    try:
        crit = parse_criteria(d["criteria"])
    except ListError as exc:
        raise ListError(f"list {d['name']}: {exc}", exc.field) from None
    return ListDef(d["tenant"].strip(), lid, d["name"].strip(), crit, d["criteria"], d.get("description", ""),
                   d.get("enabled", True), d.get("push", False))


# ----------------------------------------------------------------------------- a member's state

def new_state(tenant: str, member: str) -> dict:
    return {"t": tenant, "m": member, "codes": {}, "cc": {}, "comm": {}, "score": None, "keys": [],
            "email": None, "first": None, "last": None, "lists": [], "due": None}


def _community_names(details: dict) -> list[str]:
    return [v.lower() for k in ("CommunityKey", "CommunityName", "GroupKey", "GroupName")
            if isinstance(v := details.get(k), str) and v]


def apply_activity(st: dict, key: str, code: str, category: str, when: float, details: dict,
                   now: float) -> bool:
    """One activity on a member's state (in place); False when it was counted before (its key is among
    the member's last :data:`KEEP_KEYS`, kept as 12-hex-digit digests: a redelivery repeats recent records)."""
    key = hashlib.blake2b(key.encode(), digest_size=6).hexdigest()
    if key in st["keys"]:
        return False
    st["keys"].append(key)
    del st["keys"][:-KEEP_KEYS]
    total, times = st["codes"].get(code, (0, []))
    times = list(times)
    bisect.insort(times, when)
    horizon = now - HORIZON_DAYS * 86400
    times = [t for t in times[-KEEP_PER_CODE:] if t >= horizon]
    st["codes"][code] = [total + 1, times]
    st["cc"][code] = category
    if code in JOIN_CODES or code in LEAVE_CODES:
        for c in _community_names(details):
            st["comm"][c] = 1 if code in JOIN_CODES else 0
    for role in ("Author", "Member", "Contact", "AccessedBy", "Agent", ""):
        email = next((details[role + s] for s in ("Email", "EmailAddress", "PrimaryEmailAddress")
                      if isinstance(details.get(role + s), str) and details[role + s].strip()), None)
        if email is not None:
            st["email"] = email.strip()
            if isinstance(details.get(role + "FirstName"), str):
                st["first"] = details[role + "FirstName"]
            if isinstance(details.get(role + "LastName"), str):
                st["last"] = details[role + "LastName"]
            break
    return True


def evaluate(lists: list[ListDef], st: dict, now: float) -> tuple[set[str], float | None]:
    """The ids of ``lists`` the member is in now, and when a window next changes that (or None)."""
    ins = {x.id for x in lists if x.test(st, now)}
    dues = [d for x in lists if x.enabled for w in x.windows if (d := w.due(st, now)) is not None]
    return ins, (min(dues) if dues else None)


# ----------------------------------------------------------------------------- the connection's credentials

@dataclass(frozen=True)
class Connection:
    """The Online Community Connection of one tenant (``occ:<tenant>`` on ``activity.config``): Active, the
    IAMKey and the password's scrypt hash (the password itself is shown once, when issued)."""
    tenant: str
    active: bool
    iam_key: str
    password_hash: str
    issued_at: float = 0.0

    def key(self) -> str:
        return f"occ:{self.tenant}"

    def record(self) -> dict:
        return {"tenant": self.tenant, "active": self.active, "iam_key": self.iam_key,
                "password_hash": self.password_hash, "issued_at": self.issued_at}

    def public(self) -> dict:
        return {"tenant": self.tenant, "active": self.active, "iam_key": self.iam_key, "issued_at": self.issued_at}


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${h.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, h = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), h)


def issue_connection(tenant: str, active: bool = True) -> tuple[Connection, str]:
    """New credentials: the connection (hash only) and the password, to show once."""
    import time
    import uuid

    password = secrets.token_urlsafe(24)
    return Connection(tenant, active, str(uuid.uuid4()), hash_password(password), time.time()), password


def parse_connection(d) -> Connection:
    if not isinstance(d, dict) or not all(isinstance(d.get(k), str) and d[k] for k in ("tenant", "iam_key",
                                                                                       "password_hash")):
        raise ListError("an occ record has tenant, iam_key, password_hash")
    return Connection(d["tenant"], bool(d.get("active", True)), d["iam_key"], d["password_hash"],
                      float(d.get("issued_at") or 0))
