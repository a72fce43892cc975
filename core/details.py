"""Activity details: the activity's properties as key-value pairs, and their single-text-field forms.

AMS/CRMs store the details in one text field because their shape differs per activity; the
seed's write-back method takes them as XML key-value pairs, and JSON is offered beside it.
"""

from __future__ import annotations

import json
import re

import orjson
from xml.sax.saxutils import escape, quoteattr

from .envelope import ENVELOPE

_ENVELOPE = frozenset(ENVELOPE)
# Characters XML 1.0 cannot carry at all, not even escaped: replaced, never passed through.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def detail_value(value: object) -> str | None:
    """One property value as text: strings as they are, JSON literals for the rest."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    return _dumps(value)


def _dumps(value: object) -> str:
    """Compact JSON, UTF-8 as it is. orjson, except for text it refuses (a lone surrogate, which a
    decoded event cannot hold but a caller's dict may): the standard library writes it escaped."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def details_pairs(event: dict) -> list[dict]:
    """Every property but the envelope, in the event's order, as ``{"name", "value"}`` pairs."""
    return [{"name": k, "value": detail_value(v)} for k, v in event.items() if k not in _ENVELOPE]


def details_json(event: dict) -> str:
    """The properties (envelope left out) as one JSON object, types kept."""
    return _dumps({k: v for k, v in event.items() if k not in _ENVELOPE})


_NEEDS_WORK = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_NAMES: dict[str, str] = {}  # property names repeat across events: quote each once


def _xml_text(text: str) -> str:
    if _NEEDS_WORK.search(text) is None:  # the common case: nothing to escape or replace
        return text
    return escape(_XML_ILLEGAL.sub("\ufffd", text))


def _xml_name(name: str) -> str:
    q = _NAMES.get(name)
    if q is None:
        q = quoteattr(_XML_ILLEGAL.sub("\ufffd", name))
        if len(_NAMES) < 10000:
            _NAMES[name] = q
    return q


def details_xml(pairs: list[dict]) -> str:
    """``<Details><Detail Name="Subject">Annual Conference</Detail>…</Details>``; a null is ``Null="true"``.

    Names go in an attribute (a property name is data, not markup); every value is escaped and
    characters XML cannot represent are replaced by U+FFFD.
    """
    out = ["<Details>"]
    for p in pairs:
        name = _xml_name(p["name"])
        value = p["value"]
        if value is None:
            out.append(f'<Detail Name={name} Null="true"/>')
        else:
            out.append(f"<Detail Name={name}>{_xml_text(value)}</Detail>")
    out.append("</Details>")
    return "".join(out)


_TAGS: dict[str, tuple[str, str]] = {}  # name -> (opening tag, null element), bounded as _NAMES


def _tags(name: str) -> tuple[str, str]:
    tags = _TAGS.get(name)
    if tags is None:
        q = _xml_name(name)
        tags = (f"<Detail Name={q}>", f'<Detail Name={q} Null="true"/>')
        if len(_TAGS) < 10000:
            _TAGS[name] = tags
    return tags


def _xml_illegal_in(text: str) -> bool:
    """Whether orjson's JSON text may hold a character XML cannot carry: a control character (orjson
    writes those as \\b, \\f or \\u00XX) or a non-character. A false "may" (an escaped backslash
    before a ``b``) only sends the event down the careful path. Substring tests (memchr-fast), not
    a regular expression: this runs on every event."""
    return ("\\u00" in text or "\\b" in text or "\\f" in text or "\ufffe" in text or "\uffff" in text)


def render_details(event: dict) -> tuple[list[dict], str, str]:
    """``(details_pairs(event), details_json(event), details_xml(pairs))`` from one walk.

    What the XML needs is decided once, on the JSON text: no character XML cannot carry (the common
    case), then values are only escaped, and only when the text holds ``&``, ``<`` or ``>``.
    """
    props = dict(event)
    for name in _ENVELOPE:
        props.pop(name, None)
    try:
        text = orjson.dumps(props).decode()
        careful = _xml_illegal_in(text)
    except TypeError:  # a lone surrogate (see _dumps): every value checked on its own
        text, careful = _dumps(props), True
    values = [v if type(v) is str else detail_value(v) for v in props.values()]
    pairs = [{"name": k, "value": v} for k, v in zip(props, values)]
    tags = _TAGS
    tagged = [tags.get(k) or _tags(k) for k in props]
    if careful:
        body = [t[1] if v is None else f"{t[0]}{_xml_text(v)}</Detail>" for t, v in zip(tagged, values)]
    elif "&" in text or "<" in text or ">" in text:
        body = [t[1] if v is None else
                f"{t[0]}{v.replace('&', '&amp;').replace('>', '&gt;').replace('<', '&lt;')}</Detail>"
                for t, v in zip(tagged, values)]
    else:
        body = [t[1] if v is None else f"{t[0]}{v}</Detail>" for t, v in zip(tagged, values)]
    return pairs, text, "<Details>" + "".join(body) + "</Details>"
