"""Activity description templates: static text with ``{Property}`` merge variables.

A template is compiled once, when it is saved or loaded, into literal text and variable names.
Rendering only looks names up in the activity's properties and joins strings: no ``eval``, no
``str.format`` (so no attribute access, indexing, conversions or format specs), nothing a
template can make run. ``{{`` and ``}}`` stand for literal braces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .details import detail_value

MAX_TEMPLATE_CHARS = 500  # before merging, as the seed's Activity Description limits it
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|\{|\}")


class TemplateError(ValueError):
    """A template that cannot be saved; the message names what is wrong."""


@dataclass(frozen=True)
class Template:
    source: str
    parts: tuple[tuple[bool, str], ...]  # (is_variable, text-or-name)

    @property
    def variables(self) -> frozenset[str]:
        return frozenset(t for is_var, t in self.parts if is_var)

    def render(self, properties: dict) -> str:
        """Merge the activity's properties; a property the event lacks (or null) renders empty."""
        out = []
        for is_var, text in self.parts:
            if is_var:
                v = detail_value(properties.get(text))
                if v is not None:
                    out.append(v)
            else:
                out.append(text)
        return "".join(out)


def compile_template(source: str, known: frozenset[str] | set[str] | None = None,
                     aliases: dict[str, str] | None = None, where: str = "template") -> Template:
    """Parse and check a template; ``known`` is the activity's property names (None: do not check)."""
    if not isinstance(source, str):
        raise TemplateError(f"{where}: must be text")
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"{where}: {len(source)} characters, at most {MAX_TEMPLATE_CHARS} before merging")
    parts: list[tuple[bool, str]] = []
    literal: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(source):
        literal.append(source[pos:m.start()])
        pos = m.end()
        tok = m.group(0)
        if tok == "{{":
            literal.append("{")
        elif tok == "}}":
            literal.append("}")
        elif tok in ("{", "}"):
            raise TemplateError(f"{where}: unbalanced {tok!r} at position {m.start()} (write {tok * 2} for a literal brace)")
        else:
            name = m.group(1).strip()
            if not _NAME.fullmatch(name):
                raise TemplateError(
                    f"{where}: merge variable {{{m.group(1)}}} is not a property name "
                    "(letters, digits and _ only; no attributes, indexes, conversions or format specs)")
            if known is not None and name not in known:
                hint = ""
                if aliases and name in aliases:
                    hint = f"; {name} is an alias, use the actual property name {aliases[name]}"
                raise TemplateError(f"{where}: merge variable {{{name}}} names a property the activity does not have{hint}")
            if literal:
                parts.append((False, "".join(literal)))
                literal = []
            parts.append((True, name))
    literal.append(source[pos:])
    if "".join(literal):
        parts.append((False, "".join(literal)))
    return Template(source, tuple(parts))
