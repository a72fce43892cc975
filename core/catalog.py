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
    # what define() needs: the categories' and objects' specs, the role properties
    category_specs: dict = field(default_factory=dict)
    objects: dict = field(default_factory=dict)
    role_properties: tuple[str, ...] = ()
    started_with: dict = field(default_factory=dict)   # code -> CodeInfo of the bundled/file catalog
    defined: dict = field(default_factory=dict)        # code -> spec, the codes defined at run time (activity:)

    def build(self, code: str, spec: dict) -> CodeInfo:
        """A code's info from a spec in the catalog file's shape, against this catalog's categories and
        objects (``ValueError`` for an unknown one); nothing is stored."""
        return _code_info(code, spec, self.category_specs, self.objects, self.common_properties,
                          self.role_properties, None, self.default_customer_key)

    def define(self, code: str, spec: dict) -> CodeInfo:
        """Add or change a code at run time (an ``activity:<code>`` record of ``activity.config``)."""
        info = self.build(code, spec)
        self.codes[code] = info
        self.defined[code] = dict(spec)
        return info

    def undefine(self, code: str) -> None:
        """Retire a code defined at run time: back to the bundled definition, if it has one."""
        self.defined.pop(code, None)
        if code in self.started_with:
            self.codes[code] = self.started_with[code]
        else:
            self.codes.pop(code, None)

    def description(self, code: str) -> str | None:
        """The default description a code defined at run time carries (None: the catalog's default)."""
        return (self.defined.get(code) or {}).get("description") or None

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
    codes = {code: _code_info(code, spec, cats, objects, common, tuple(role_props), customer_keys, default_key)
             for code, spec in codes_doc.items()}
    return Catalog(tuple(cats), codes, default_key, common, cats, objects, tuple(role_props), dict(codes))


def _code_info(code: str, spec: dict, cats: dict, objects: dict, common: frozenset, role_props: tuple,
               customer_keys: dict | None, default_key: tuple) -> CodeInfo:
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
    return CodeInfo(code, category, key, props, dict(cats[category].get("aliases", {})))


def bundled_document() -> dict:
    return yaml.safe_load(resources.files("core").joinpath("data/catalog.yaml").read_text())


def load_catalog(extra: dict | None = None, customer_keys: dict | None = None) -> Catalog:
    return build_catalog(bundled_document(), extra, customer_keys)
