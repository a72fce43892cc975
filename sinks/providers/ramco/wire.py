"""RAMCO's ``AttributeValues`` format: ``name=#text#,num=5``, strings between the delimiter.

A string that contains the delimiter cannot be sent as it is. The sink picks, for each request, a
delimiter that none of its values contains (``StringDelimiter`` names it, as the API allows); only
if every candidate occurs does it fall back to ``#`` with each ``#`` inside a value written as
``Iw==`` (base64 of ``#``), as the public pyramco client does and the API decodes.
"""

from __future__ import annotations

CANDIDATES = "#|~^`¦"
ESCAPED_HASH = "Iw=="


def choose_delimiter(values) -> str:
    texts = [v for v in values if isinstance(v, str)]
    for d in CANDIDATES:
        if not any(d in t for t in texts):
            return d
    return "#"


def encode(values: dict[str, object], delimiter: str) -> str:
    parts = []
    for name, v in values.items():
        if v is None:
            continue
        if isinstance(v, bool):
            parts.append(f"{name}={'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            parts.append(f"{name}={v}")
        else:
            text = str(v)
            if delimiter in text:
                if delimiter != "#":
                    raise ValueError(f"{name}: the value contains the delimiter {delimiter!r}")
                text = text.replace("#", ESCAPED_HASH)
            parts.append(f"{name}={delimiter}{text}{delimiter}")
    return ",".join(parts)


def decode(text: str, delimiter: str = "#") -> dict[str, object]:
    """Parse ``AttributeValues`` (the fake's side); raises ValueError on a malformed string."""
    out: dict[str, object] = {}
    i, n = 0, len(text)
    while i < n:
        eq = text.find("=", i)
        if eq < 0:
            raise ValueError(f"expected name=value at {i}")
        name = text[i:eq].strip()
        if not name:
            raise ValueError(f"empty attribute name at {i}")
        j = eq + 1
        if text.startswith(delimiter, j):
            end = text.find(delimiter, j + len(delimiter))
            if end < 0:
                raise ValueError(f"{name}: unterminated string")
            value: object = text[j + len(delimiter):end]
            if delimiter == "#":
                value = str(value).replace(ESCAPED_HASH, "#")
            j = end + len(delimiter)
        else:
            end = text.find(",", j)
            end = n if end < 0 else end
            raw = text[j:end].strip()
            try:
                value = int(raw) if raw.lstrip("-").isdigit() else float(raw) if raw not in ("true", "false") \
                    else raw == "true"
            except ValueError:
                raise ValueError(f"{name}: {raw!r} is neither a number nor a delimited string") from None
            j = end
        out[name] = value
        if j < n:
            if text[j] != ",":
                raise ValueError(f"expected ',' after {name}")
            j += 1
        i = j
    return out
