"""Activity details: the activity's properties as key-value pairs, and their single-text-field forms.

AMS/CRMs store the details in one text field because their shape differs per activity; the
seed's write-back method takes them as XML key-value pairs, and JSON is offered beside it.
"""

from __future__ import annotations

import json
import re
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
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def details_pairs(event: dict) -> list[dict]:
    """Every property but the envelope, in the event's order, as ``{"name", "value"}`` pairs."""
    return [{"name": k, "value": detail_value(v)} for k, v in event.items() if k not in _ENVELOPE]


def details_json(event: dict) -> str:
    """The properties (envelope left out) as one JSON object, types kept."""
    return json.dumps({k: v for k, v in event.items() if k not in _ENVELOPE}, ensure_ascii=False,
                      separators=(",", ":"))


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
