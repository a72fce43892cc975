"""OData pieces both the Dataverse sink and its fake need: alternate-key segments and ``$batch``
multipart bodies (OData Version 4.01 Part 1, section 11.7 "Batch Requests"; Dataverse Web API,
"Execute batch operations using the Web API")."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CRLF = "\r\n"
_BOUNDARY = re.compile(r'boundary="?([^";,\s]+)"?', re.I)


def quote_key(value: str) -> str:
    """An OData string literal: single quotes, a quote inside doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def boundary_of(content_type: str | None) -> str | None:
    m = _BOUNDARY.search(content_type or "")
    return m.group(1) if m else None


@dataclass
class Part:
    """One part of a multipart/mixed body: its MIME headers, then (for application/http) the
    embedded request or response: start line, headers and body."""

    headers: dict[str, str]
    start_line: str = ""
    http_headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    changeset: list["Part"] | None = None  # a nested multipart/mixed (an OData changeset)


def _headers(block: str) -> dict[str, str]:
    out = {}
    for line in block.split("\n"):
        line = line.rstrip("\r")
        if ":" in line:
            k, _, v = line.partition(":")
            out[k.strip().lower()] = v.strip()
    return out


def parse_multipart(body: str, boundary: str) -> list[Part]:
    """The parts of a multipart/mixed body (nested changesets parsed too); raises ValueError if it is
    not one."""
    delimiter = f"--{boundary}"
    if delimiter not in body:
        raise ValueError(f"no part delimited by {delimiter!r}")
    chunks = body.split(delimiter)
    parts: list[Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith("--"):
            break  # the close delimiter
        chunk = chunk.lstrip("\r\n") if chunk.startswith(("\r\n", "\n")) else chunk
        head, sep, rest = _split_blank(chunk)
        if not sep:
            raise ValueError("a part without a blank line after its headers")
        headers = _headers(head)
        ctype = headers.get("content-type", "")
        if ctype.lower().startswith("multipart/mixed"):
            inner = boundary_of(ctype)
            if not inner:
                raise ValueError("a changeset without a boundary")
            parts.append(Part(headers, changeset=parse_multipart(rest, inner)))
            continue
        start, sep2, after = rest.partition("\n")
        http_head, _, http_body = _split_blank(after)
        parts.append(Part(headers, start.strip(), _headers(http_head), http_body.rstrip("\r\n")))
    return parts


def _split_blank(text: str) -> tuple[str, str, str]:
    for sep in ("\r\n\r\n", "\n\n"):
        if sep in text:
            head, _, rest = text.partition(sep)
            return head, sep, rest
    return text, "", ""


def request_part(boundary: str, method: str, url: str, body: str | None, content_id: int | None = None,
                 headers: dict[str, str] | None = None) -> str:
    lines = [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id is not None:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"{method} {url} HTTP/1.1"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body is not None:
        lines.append("Content-Type: application/json; type=entry")
    lines += ["", body or ""]
    return CRLF.join(lines) + CRLF


def response_part(boundary: str, status: int, reason: str, headers: dict[str, str], body: str,
                  content_id: str | None = None) -> str:
    lines = [f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += ["", body]
    return CRLF.join(lines) + CRLF


def status_of(part: Part) -> int:
    """The status of an embedded response (``HTTP/1.1 204 No Content``)."""
    bits = part.start_line.split()
    if len(bits) < 2 or not bits[1].isdigit():
        raise ValueError(f"not an HTTP status line: {part.start_line!r}")
    return int(bits[1])
