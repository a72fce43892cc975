"""Body templates of the configurable HTTP sink: placeholders ``{{source}}`` over a delivery.

A source is any of :data:`sinks.mapping.SOURCES` (``activity_key``, ``customer_id``,
``description:200``, ``detail:Subject`` …). Rendering only looks names up (no expressions, no
format strings), and escapes for the body's format:

- **JSON**: the template is parsed as JSON once. A string that is exactly ``"{{source}}"`` becomes
  the value with its type (``null`` when the activity has none); placeholders inside a longer
  string are replaced by the value's text. Nothing is ever spliced into JSON text, so no value can
  break out of its string.
- **XML**: the template must be well-formed; values are XML-escaped (and characters XML forbids
  replaced) where they are put.
- **Form**: ``form_fields`` name the source of each field; the form encoder escapes.

A batch's items go where its wrapper says ``{{items}}``: the JSON array in place of that string,
or the items' XML one after another.
"""

from __future__ import annotations

import json
import re
from typing import Any
from xml.etree import ElementTree

from sinks import mapping
from sinks.contract import Delivery

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z0-9_]+)*)\s*\}\}")
ITEMS = "items"
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def sources_in(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def check_sources(text: str, allow_items: bool = False) -> None:
    for src in sources_in(text):
        if allow_items and src == ITEMS:
            continue
        mapping.check_fields({"{{" + src + "}}": src})


def parse_json_template(text: str, allow_items: bool = False) -> Any:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc}); placeholders go inside strings: \"{{{{customer_id}}}}\"") from None
    check_sources(text, allow_items)
    return doc


def check_xml_template(text: str, allow_items: bool = False) -> None:
    check_sources(text, allow_items)
    sample = PLACEHOLDER.sub(lambda m: "<x/>" if m.group(1) == ITEMS else "x", text)
    try:
        ElementTree.fromstring(sample)
    except ElementTree.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None


def _value(src: str, d: Delivery):
    return mapping.value(src, d)


def render_json(doc: Any, d: Delivery) -> Any:
    if isinstance(doc, str):
        m = PLACEHOLDER.fullmatch(doc.strip())
        if m:
            return _value(m.group(1), d)
        return PLACEHOLDER.sub(lambda m: _text(_value(m.group(1), d)), doc)
    if isinstance(doc, list):
        return [render_json(x, d) for x in doc]
    if isinstance(doc, dict):
        return {k: render_json(v, d) for k, v in doc.items()}
    return doc


def wrap_json(wrapper: Any, items: list) -> Any:
    if isinstance(wrapper, str):
        m = PLACEHOLDER.fullmatch(wrapper.strip())
        return items if m and m.group(1) == ITEMS else wrapper
    if isinstance(wrapper, list):
        return [wrap_json(x, items) for x in wrapper]
    if isinstance(wrapper, dict):
        return {k: wrap_json(v, items) for k, v in wrapper.items()}
    return wrapper


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def xml_escape(v) -> str:
    text = _XML_ILLEGAL.sub("\ufffd", _text(v))
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def render_xml(text: str, d: Delivery) -> str:
    return PLACEHOLDER.sub(lambda m: xml_escape(_value(m.group(1), d)), text)


def wrap_xml(wrapper: str, items: list[str]) -> str:
    return PLACEHOLDER.sub(lambda m: "".join(items) if m.group(1) == ITEMS else m.group(0), wrapper)


def render_form(fields: dict[str, str], d: Delivery) -> dict[str, str]:
    return {k: _text(mapping.value(src, d)) for k, src in fields.items()}
