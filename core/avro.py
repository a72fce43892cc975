"""Avro for ``activity.enriched``: single-object encoding, or Confluent wire format with a registry.

Without ``SCHEMA_REGISTRY_URL`` each message is Avro single-object encoded (Avro spec,
"Single object encoding"): ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the
schema's Parsing Canonical Form, then the Avro binary body. An analyst decodes it with nothing
but ``schemas/activity_enriched.avsc``. With a registry, the Confluent wire format: ``00``, the
4-byte big-endian schema id, the body; the schema is registered under ``<topic>-value``.
"""

from __future__ import annotations

import io
import json
import struct
import urllib.request
from functools import lru_cache
from importlib import resources

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from .avroread import compile_reader
from .avrowrite import Unsupported, compile_writer

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"


def schema_text(name: str = "activity_enriched") -> str:
    return resources.files("schemas").joinpath(f"{name}.avsc").read_text()


@lru_cache(maxsize=None)
def parsed_schema(name: str = "activity_enriched"):
    return fastavro.parse_schema(json.loads(schema_text(name)))


#: the schemas of the topics the project writes in Avro, each with its history in schemas/history
FAMILIES = ("activity_enriched", "push_contact", "push_list", "member_score")


def history(name: str = "activity_enriched") -> dict[int, str]:
    """Every released version of ``<name>.avsc``: ``{version: schema JSON}`` from
    ``schemas/history/<name>-vN.avsc`` (the current schema is the newest of them)."""
    out = {}
    prefix = f"{name}-v"
    for f in resources.files("schemas").joinpath("history").iterdir():
        fname = f.name
        if fname.startswith(prefix) and fname.endswith(".avsc") and fname[len(prefix):-5].isdigit():
            out[int(fname[len(prefix):-5])] = f.read_text()
    return dict(sorted(out.items()))


@lru_cache(maxsize=1)
def known_writers() -> dict[bytes, tuple[int | None, object]]:
    """Writer schemas by single-object fingerprint: every released version of every family, and the
    current ones (a fingerprint names one schema, whichever family it is of)."""
    out: dict[bytes, tuple[int | None, object]] = {}
    for family in FAMILIES:
        for version, text in history(family).items():
            schema = fastavro.parse_schema(json.loads(text))
            out[schema_fingerprint(schema)] = (version, schema)
        current = parsed_schema(family)
        out.setdefault(schema_fingerprint(current), (None, current))
    return out


def schema_fingerprint(schema) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, little-endian bytes (fastavro's hex is in that order)."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


class DecodeError(ValueError):
    pass


def compiled_writer(name: str = "activity_enriched"):
    """The schema's compiled writer (:mod:`core.avrowrite`), or None where it cannot compile it."""
    return _compiled_writer(name)


@lru_cache(maxsize=None)
def _compiled_writer(name: str):
    try:
        # the enriched record's arrays in sized blocks: a reader that leaves the details out skips them
        enriched = name == "activity_enriched"
        return compile_writer(json.loads(schema_text(name)), memo=("Detail.name",) if enriched else (), sized=enriched)
    except Unsupported:
        return None


_READERS: dict[tuple[bytes, int], tuple[object, object]] = {}  # (fingerprint, id(reader)) -> (reader, read)


def compiled_reader(fingerprint: bytes, writer, reader):
    """``read(buf, pos)`` for records written with ``writer`` read as ``reader`` (:mod:`core.avroread`),
    compiled once a pair; None where it does not compile (fastavro then)."""
    key = (fingerprint, id(reader))
    hit = _READERS.get(key)
    if hit is None or hit[0] is not reader:
        try:
            read = compile_reader(writer, reader)
        except Unsupported:
            read = None
        if len(_READERS) >= 256:  # a caller making a reader schema per call: bounded, compiled again
            _READERS.clear()
        hit = _READERS[key] = (reader, read)  # the reader held: its id stays its own
    return hit[1]


class _Codec:
    """Header bytes, then the Avro binary body of our schema."""

    schema: object
    header: bytes
    body = None  # record -> Avro binary body; fastavro where None

    def encode(self, record: dict) -> bytes:
        if self.body is not None:
            return self.header + self.body(record)
        buf = io.BytesIO()
        buf.write(self.header)
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()


class SingleObjectCodec(_Codec):
    def __init__(self, schema=None, name: str = "activity_enriched") -> None:
        self.schema = schema or parsed_schema(name)
        if schema is None:
            self.body = compiled_writer(name)
        self.header = SINGLE_OBJECT_MARKER + schema_fingerprint(self.schema)

    def decode(self, data: bytes, reader_schema=None) -> dict:
        """Any released version decodes (Avro schema resolution into ``reader_schema``, by default the
        current schema: fields added since get their defaults)."""
        writer, reader = writer_schema(data), reader_schema or self.schema
        read = compiled_reader(data[2:10], writer, reader)
        if read is not None:
            try:
                return read(data, 10)
            except (IndexError, ValueError, UnicodeDecodeError) as exc:
                raise DecodeError(f"not a valid Avro body for its schema: {type(exc).__name__}: {exc}") from None
        return fastavro.schemaless_reader(io.BytesIO(data[10:]), writer, reader)


class SchemaRegistry:
    """The few calls of the Confluent Schema Registry REST API this codec needs."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def register(self, subject: str, schema_json: str) -> int:
        return int(self._call("POST", f"/subjects/{subject}/versions", {"schema": schema_json})["id"])

    def schema(self, schema_id: int) -> str:
        return self._call("GET", f"/schemas/ids/{schema_id}")["schema"]


class ConfluentCodec(_Codec):
    """Writes under ``subject`` (registering our schema there); without one it only reads."""

    def __init__(self, registry: SchemaRegistry, subject: str | None = None) -> None:
        self.registry = registry
        self.schema = parsed_schema()
        self.body = compiled_writer()
        self._writers: dict[int, object] = {}
        if subject is not None:
            self.schema_id = registry.register(subject, schema_text())
            self.header = CONFLUENT_MAGIC + struct.pack(">I", self.schema_id)
            self._writers[self.schema_id] = self.schema

    def decode(self, data: bytes) -> dict:
        if data[:1] != CONFLUENT_MAGIC or len(data) < 5:
            raise DecodeError("not Confluent wire format")
        sid = struct.unpack(">I", data[1:5])[0]
        if sid not in self._writers:
            self._writers[sid] = fastavro.parse_schema(json.loads(self.registry.schema(sid)))
        return fastavro.schemaless_reader(io.BytesIO(data[5:]), self._writers[sid], self.schema)


def make_codec(registry_url: str | None, topic: str):
    if registry_url:
        return ConfluentCodec(SchemaRegistry(registry_url), f"{topic}-value")
    return SingleObjectCodec()


def decode_any(data: bytes, registry_url: str | None = None) -> dict:
    """Decode an ``activity.enriched`` value in either encoding."""
    if data[:2] == SINGLE_OBJECT_MARKER:
        return _single_object_codec().decode(data)
    if data[:1] == CONFLUENT_MAGIC:
        if not registry_url:
            raise DecodeError("Confluent wire format needs SCHEMA_REGISTRY_URL to decode")
        return _confluent_reader(registry_url).decode(data)
    raise DecodeError("neither single-object encoding nor Confluent wire format")


@lru_cache(maxsize=1)
def _single_object_codec() -> SingleObjectCodec:
    return SingleObjectCodec()


@lru_cache(maxsize=None)
def reader_schema_without(*fields: str):
    """Our schema less some fields: reading with it skips them (a sink that needs no ``details`` pairs)."""
    doc = json.loads(schema_text())
    doc["fields"] = [f for f in doc["fields"] if f["name"] not in fields]
    return fastavro.parse_schema(doc)


def writer_schema(data: bytes):
    """The released schema single-object bytes were written with, by their fingerprint."""
    if data[:2] != SINGLE_OBJECT_MARKER or len(data) < 10:
        raise DecodeError("not Avro single-object encoded (no C3 01 marker)")
    known = known_writers().get(data[2:10])
    if known is None:
        raise DecodeError(f"written with a schema this reader does not know (fingerprint {data[2:10].hex()}; "
                          f"known: {', '.join(f.hex() for f in known_writers())}): a newer release wrote it, "
                          f"or its .avsc is missing from schemas/history")
    return known[1]


def decode_single_object(data: bytes, reader_schema) -> dict:
    """Decode single-object encoded bytes of any released version with a reader schema of the caller's choice."""
    return _single_object_codec().decode(data, reader_schema)


@lru_cache(maxsize=4)
def _confluent_reader(url: str) -> ConfluentCodec:
    return ConfluentCodec(SchemaRegistry(url))


def decode_member_score(data: bytes) -> dict:
    """A ``member.scores`` record (single-object encoding, any released ``member_score`` version)."""
    return _member_score_codec().decode(data)


@lru_cache(maxsize=1)
def _member_score_codec() -> "SingleObjectCodec":
    return SingleObjectCodec(name="member_score")
