"""Raw events: decode, validate the envelope, parse dates. Pure functions, no Kafka.

A raw event is a JSON object. Required envelope: ``ActivityKey``, ``ActivityCode``,
``ActivityDate``, ``TenantCode`` (non-empty strings); everything else is the activity's
properties. Anything else raises a :class:`MalformedEvent` subclass whose name is the reason
recorded in the dead-letter headers and the ``reason`` label of the metric.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import orjson

ENVELOPE = ("ActivityKey", "ActivityCode", "ActivityDate", "TenantCode")


class MalformedEvent(ValueError):
    """Input that can never be enriched: it goes to the dead-letter topic, never retried."""


class EventTooLarge(MalformedEvent):
    pass


class NotJson(MalformedEvent):
    pass


class NotAnObject(MalformedEvent):
    pass


class MissingField(MalformedEvent):
    pass


class InvalidField(MalformedEvent):
    pass


class BadDate(MalformedEvent):
    pass


# ISO 8601 as the seeds write it: .NET round-trip ("2016-06-13T20:10:53.4628857Z", seven fraction
# digits), whole seconds ("2016-06-13T20:10:53Z"), the Push API's "yyyy-MM-ddTHH:mm:ss.fffZ" and
# "yyyy-MM-ddTHH:mm:ss.fffzzz" (offset "+05:30"), also "+0530" and "+05".
_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_date(text: object, field: str = "ActivityDate") -> datetime:
    """Parse an ISO 8601 date-time with a UTC designator or offset; answer it in UTC.

    Fractions beyond microseconds (the seven digits .NET writes) are truncated to microseconds.
    A date without ``Z`` or an offset is refused: its instant is unknown.
    """
    if not isinstance(text, str):
        raise BadDate(f"{field} must be an ISO 8601 string, got {type(text).__name__}")
    m = _DATE.fullmatch(text.strip())
    if not m:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?", text.strip()):
            raise BadDate(f"{field} {text[:60]!r} has no UTC designator or offset (add Z or +hh:mm)")
        raise BadDate(f"{field} {text[:60]!r} is not an ISO 8601 date-time")
    y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
    micros = int((frac or "0")[:6].ljust(6, "0"))
    try:
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micros, tzinfo=timezone.utc)
    except ValueError as exc:
        raise BadDate(f"{field} {text[:60]!r}: {exc}") from None
    if not z:
        oh_i, om_i = int(oh), int(om or 0)
        if oh_i > 18 or om_i > 59:
            raise BadDate(f"{field} {text[:60]!r}: offset out of range")
        offset = timedelta(hours=oh_i, minutes=om_i)
        try:
            dt = dt - offset if sign == "+" else dt + offset
        except OverflowError:
            raise BadDate(f"{field} {text[:60]!r}: out of range once its offset is applied") from None
    return dt


def to_micros(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso_utc(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decode_event(raw: bytes | None, max_bytes: int) -> dict:
    """Bytes from ``activity.raw`` to a validated event dict (envelope checked, date not yet parsed)."""
    if raw is None:
        raise NotJson("empty message (no value)")
    if len(raw) > max_bytes:
        raise EventTooLarge(f"event is {len(raw)} bytes, the limit is {max_bytes}")
    event = parse_json(raw)
    if type(event) is not dict:
        raise NotAnObject(f"event must be a JSON object, got a JSON {_json_kind(event)}")
    validate_envelope(event)
    return event


def parse_json(raw: bytes):
    """Bytes to JSON data by the strict rules of :func:`parse_json_strict`, fast.

    orjson parses (about 15x faster than the standard library with the checks as hooks); its
    answer is used only when it is certainly what the strict parser answers: no duplicate key
    (counted, see :func:`_plainly_parsed`), every whole number within 64 bits, nesting within
    ``MAX_DEPTH``. Anything else, and anything orjson refuses, goes through the strict parser,
    which raises the precise reason (or accepts, by its own rules). Raises :class:`MalformedEvent`.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return parse_json_strict(raw)
    if type(value) is dict or type(value) is list:
        if not _plainly_parsed(raw, value):
            return parse_json_strict(raw)
    elif type(value) is int and not MIN_WHOLE <= value <= MAX_WHOLE:
        return parse_json_strict(raw)
    return value


def decode_strict(raw: bytes) -> dict:
    """The reference parser for events: :func:`parse_json_strict`, a JSON object, then the envelope."""
    event = parse_json_strict(raw)
    if not isinstance(event, dict):
        raise NotAnObject(f"event must be a JSON object, got a JSON {_json_kind(event)}")
    validate_envelope(event)
    return event


def parse_json_strict(raw: bytes):
    """The reference parser: UTF-8 text, RFC 8259 JSON, unique keys, finite numbers, whole numbers
    within 64 bits, nesting within ``MAX_DEPTH``, no lone surrogate."""
    try:
        text = raw.decode("utf-8")  # JSON is UTF-8; json.loads(bytes) would guess UTF-16/32 too
    except UnicodeDecodeError as exc:
        raise NotJson(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_whole,
                           object_pairs_hook=_unique_keys)
    except RecursionError:
        raise NotJson(f"not JSON this pipeline accepts: nested deeper than {MAX_DEPTH} levels") from None
    except MalformedEvent:
        raise
    except ValueError as exc:
        raise NotJson(f"not JSON: {exc}") from None
    if isinstance(value, (dict, list)):
        _check_tree(value)
    elif isinstance(value, str) and _SURROGATE.search(value):
        raise InvalidField("the text holds a lone surrogate: not valid Unicode")
    return value


def _plainly_parsed(raw: bytes, event: dict) -> bool:
    """Whether orjson's answer for ``raw`` is certainly the strict parser's.

    orjson keeps the last of duplicate keys silently, reads a whole number beyond 64 bits as a
    float, and nests deeper than we allow. Duplicates are found by counting colons: outside
    strings JSON has a colon only after a key, and orjson writes none of its own, so the text
    orjson writes back has as many colons as the raw text unless a key (and whatever its value
    held) was dropped. A string spelling a colon as ``\\u003a`` would upset the count: then the
    answer is "not certain". Lone surrogates and non-finite numbers orjson refuses itself.
    """
    if _ESCAPED_COLON.search(raw) is not None:
        return False
    if orjson.dumps(event).count(b":") != raw.count(b":"):
        return False
    return _within_limits(event, 1)


_ESCAPED_COLON = re.compile(rb"\\u003[aA]")
_TEXT_KINDS = frozenset((str, bool, type(None)))


def _within_limits(node, depth: int) -> bool:
    """Whole numbers within 64 bits (a float as large may have been one), nesting within MAX_DEPTH."""
    values = node.values() if type(node) is dict else node
    if _TEXT_KINDS.issuperset(map(type, values)):
        return True
    for v in values:
        t = type(v)
        if t is int:
            if not MIN_WHOLE <= v <= MAX_WHOLE:
                return False
        elif t is float:
            if v >= 9.2e18 or v <= -9.2e18:
                return False
        elif t is dict or t is list:
            if depth >= MAX_DEPTH or v and not _within_limits(v, depth + 1):
                return False
    return True


MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class _DuplicateKey(ValueError):
    pass


def _no_constant(name: str):
    raise NotJson(f"not JSON: {name} is not a JSON number (RFC 8259 has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NotJson(f"not JSON this pipeline accepts: the number {text[:40]} overflows a double")
    return value


#: whole numbers an event may hold: a 64-bit signed integer (an Avro long, and what the providers'
#: JSON readers carry); a larger one cannot be written anywhere as the number it is
MIN_WHOLE, MAX_WHOLE = -2 ** 63, 2 ** 63 - 1


def _whole(text: str) -> int:
    if len(text) > 20 or not MIN_WHOLE <= int(text) <= MAX_WHOLE:
        raise NotJson(f"not JSON this pipeline accepts: the whole number {text[:40]}{'…' if len(text) > 40 else ''} "
                      f"is outside the 64-bit range")
    return int(text)


def _unique_keys(pairs: list) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise InvalidField(f"property {k[:60]!r} appears twice in one object (which one is meant is unknown)")
        out[k] = v
    return out


def _check_tree(event) -> None:
    """Depth at most MAX_DEPTH, and no lone surrogate (text that is not Unicode) in any key or string."""
    stack = [(event, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise NotJson(f"not JSON this pipeline accepts: nested deeper than {MAX_DEPTH} levels (at {path[:80]})")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            where = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and _SURROGATE.search(k):
                raise InvalidField(f"a property name holds a lone surrogate ({_esc(k)}): not valid Unicode")
            if isinstance(v, str):
                if _SURROGATE.search(v):
                    raise InvalidField(f"{_esc(where)} holds a lone surrogate: not valid Unicode")
            elif isinstance(v, (dict, list)):
                stack.append((v, depth + 1, where))


def _esc(text: str) -> str:
    return text[:60].encode("ascii", "backslashreplace").decode()


def validate_envelope(event: dict) -> None:
    for name in ENVELOPE:
        if name not in event:
            raise MissingField(f"required envelope field {name} is missing")
        value = event[name]
        if not isinstance(value, str):
            raise InvalidField(f"envelope field {name} must be a string, got {_json_kind(value)}")
        if not value.strip():
            raise InvalidField(f"envelope field {name} is empty")
        if len(value) > 256:
            raise InvalidField(f"envelope field {name} is longer than 256 characters")
        if _CONTROL.search(value):
            raise InvalidField(f"envelope field {name} holds a control character ({_esc(value)})")


def _json_kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")
