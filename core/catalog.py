"""The activity catalog: category, customer-key choice and known properties per activity code."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import yaml

UNCATEGORIZED = "Uncategorized"


@dataclass(frozen=True)
class CodeInfo:
    code: str
    category: str
    customer_key: tuple[str, ...]
    properties: frozenset[str] | None  # None: not known, templates may name only common properties
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    categories: tuple[str, ...]
    codes: dict[str, CodeInfo]
    default_customer_key: tuple[str, ...]
    common_properties: frozenset[str]

    def lookup(self, code: str) -> CodeInfo | None:
        return self.codes.get(code)

    def category(self, code: str) -> str:
        info = self.codes.get(code)
        return info.category if info else UNCATEGORIZED

    def customer_key(self, code: str) -> tuple[str, ...]:
        info = self.codes.get(code)
        return info.customer_key if info else self.default_customer_key

    def known_properties(self, code: str) -> frozenset[str]:
        info = self.codes.get(code)
        if info and info.properties is not None:
            return info.properties
        return self.common_properties

    def aliases(self, code: str) -> dict[str, str]:
        info = self.codes.get(code)
        return info.aliases if info else {}


def build_catalog(doc: dict, extra: dict | None = None, customer_keys: dict | None = None) -> Catalog:
    """Build a catalog from the bundled document plus an operator's ``catalog:`` additions."""
    role_props = list(doc.get("role_properties", []))
    common = frozenset(doc.get("common_properties", []))
    cats = {c["name"]: c for c in doc["categories"]}
    objects = dict(doc.get("objects", {}))
    codes_doc = dict(doc.get("codes", {}))
    if extra:
        for c in extra.get("categories", []):
            cats[c["name"]] = c
        objects.update(extra.get("objects", {}))
        codes_doc.update(extra.get("codes", {}))
    default_key = tuple(doc.get("default_customer_key", []))
    codes: dict[str, CodeInfo] = {}
    for code, spec in codes_doc.items():
        category = spec.get("category", UNCATEGORIZED)
        if category not in cats:
            raise ValueError(f"catalog code {code}: unknown category {category!r}")
        props: frozenset[str] | None = None
        obj = spec.get("object")
        if obj is not None:
            if obj not in objects:
                raise ValueError(f"catalog code {code}: unknown object {obj!r}")
            o = objects[obj]
            names = set(common) | set(o.get("properties", []))
            for role in o.get("roles", []):
                names.update(role + p for p in role_props)
            props = frozenset(names | set(spec.get("properties", [])))
        elif "properties" in spec:
            props = frozenset(set(common) | set(spec["properties"]))
        key = tuple((customer_keys or {}).get(code) or spec.get("customer_key") or default_key)
        codes[code] = CodeInfo(code, category, key, props, dict(cats[category].get("aliases", {})))
    return Catalog(tuple(cats), codes, default_key, common)


def bundled_document() -> dict:
    return yaml.safe_load(resources.files("core").joinpath("data/catalog.yaml").read_text())


def load_catalog(extra: dict | None = None, customer_keys: dict | None = None) -> Catalog:
    return build_catalog(bundled_document(), extra, customer_keys)
