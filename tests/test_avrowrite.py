"""The compiled Avro writer writes what fastavro writes, byte for byte (core.avrowrite)."""

import io
import json
import random
from pathlib import Path

import fastavro
import pytest
from test_avro import records

from core.avro import SingleObjectCodec, compiled_writer
from core.avrowrite import Unsupported, compile_writer

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "schemas" / "activity_enriched.avsc").read_text())


def fastavro_bytes(schema, record) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def test_enriched_records_written_as_fastavro_writes_them():
    assert compiled_writer() is not None  # the enriched schema compiles: the stream worker uses it
    write = compile_writer(SCHEMA, memo=("Detail.name",))
    for rec in records():
        assert write(rec) == fastavro_bytes(SCHEMA, rec)


def test_the_codec_writes_arrays_in_sized_blocks_that_fastavro_reads_as_the_same_record():
    """Avro 1.11, "Binary Encoding": a block's count may be negative, then followed by its size in bytes."""
    write, parsed = compiled_writer(), fastavro.parse_schema(SCHEMA)
    for rec in records():
        sized, plain = write(rec), fastavro_bytes(SCHEMA, rec)
        assert sized != plain and len(sized) > len(plain)  # a few bytes: each block's size
        assert fastavro.schemaless_reader(io.BytesIO(sized), parsed, None) == \
            fastavro.schemaless_reader(io.BytesIO(plain), parsed, None)


def test_the_codec_uses_it_and_what_it_writes_decodes():
    codec = SingleObjectCodec()
    assert codec.body is compiled_writer()
    for rec in records():
        got = codec.decode(codec.encode(rec))
        assert got == codec.decode(codec.header + fastavro_bytes(SCHEMA, rec))
        assert got["details"] == rec["details"] and got["activity_key"] == rec["activity_key"]


def _text(rng: random.Random) -> str:
    alphabet = "ab:\"\\<&é€😀\x00\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 5, 63, 64, 200, 9000])))


def test_random_records_of_every_size_and_sign():
    """Lengths and numbers around every varint boundary, multi-byte text, long strings past the table."""
    rng = random.Random(7)
    write = compile_writer(SCHEMA, memo=("Detail.name",))  # as the codec compiles it: names memoised
    for i in range(300):
        n = rng.choice([0, 1, 63, 64, 8191, 8192, 2 ** 31 - 1, 2 ** 62, 2 ** 63 - 1])
        rec = {
            "activity_key": _text(rng), "activity_code": "C", "category": _text(rng), "tenant_code": "T",
            "activity_date": rng.choice([n, -n, -1]), "customer_id": rng.choice([None, _text(rng)]),
            "customer_key_field": None, "contact_key": rng.choice([None, ""]), "link_url": _text(rng),
            "details": [{"name": _text(rng), "value": rng.choice([None, _text(rng)])} for _ in range(rng.choice([0, 1, 40]))],
            "details_json": _text(rng), "details_xml": "",
            "deliveries": [{"endpoint": "e", "provider_type": "membership", "description": _text(rng),
                            "writeback_code1": rng.choice([None, "A"]), "writeback_code2": None}],
            "source": {"topic": "t", "partition": rng.choice([0, 5, 2 ** 31 - 1]), "offset": n},
            "enriched_at": rng.choice([0, n]),
        }
        assert write(rec) == fastavro_bytes(SCHEMA, rec), i


def test_other_types_and_null_second_unions():
    schema = {"type": "record", "name": "R", "namespace": "x.y", "fields": [
        {"name": "b", "type": "boolean"}, {"name": "f", "type": "float"}, {"name": "d", "type": "double"},
        {"name": "raw", "type": "bytes"}, {"name": "n", "type": "null"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "again", "type": "E"},
        {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
        {"name": "m", "type": {"type": "map", "values": ["long", "null"]}},
        {"name": "sub", "type": {"type": "record", "name": "S", "fields": [{"name": "i", "type": "int"}]}},
        {"name": "subs", "type": {"type": "array", "items": "S"}},
        {"name": "later", "type": ["null", "string"], "default": None},
    ]}
    rec = {"b": True, "f": 1.5, "d": -2.25e300, "raw": b"\x00\xff", "n": None, "e": "C", "again": "A",
           "fx": b"abc", "m": {"k": 1, "z": None, "big": -2 ** 40}, "sub": {"i": -3}, "subs": [{"i": 1}, {"i": 2}]}
    assert compile_writer(schema)(rec) == fastavro_bytes(schema, rec)  # "later" left out: its default
    parsed = fastavro.parse_schema(schema)
    assert fastavro.schemaless_reader(io.BytesIO(compile_writer(schema, sized=True)(rec)), parsed, None) == \
        fastavro.schemaless_reader(io.BytesIO(fastavro_bytes(schema, rec)), parsed, None)


@pytest.mark.parametrize("schema", [["string", "long"], ["null", "string", "long"],
                                    {"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]}])
def test_what_it_cannot_compile_is_said_so(schema):
    with pytest.raises(Unsupported):
        compile_writer(schema)


def test_a_record_that_breaks_the_schema_is_refused():
    write = compile_writer(SCHEMA)
    rec = records()[0]
    for field, bad in (("activity_key", None), ("activity_date", "yesterday"), ("details", [{"name": 1}])):
        with pytest.raises((TypeError, AttributeError, KeyError, OverflowError)):
            write(dict(rec, **{field: bad}))
    with pytest.raises(OverflowError):
        write(dict(rec, activity_date=2 ** 63))


def test_zigzag_at_every_group_boundary_is_fastavros_long():
    from core.avrowrite import zigzag

    edges = {0, 2 ** 63 - 1, -(2 ** 63)}
    for bits in range(1, 64):
        edges |= {2 ** bits - 1, 2 ** bits, 2 ** bits + 1}
    for n in sorted(edges | {-e for e in edges if -e >= -(2 ** 63)}):
        if -(2 ** 63) <= n < 2 ** 63:
            assert zigzag(n) == fastavro_bytes("long", n), n
    with pytest.raises(OverflowError):
        zigzag(2 ** 63)
