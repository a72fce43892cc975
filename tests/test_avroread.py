"""The compiled Avro reader answers what fastavro answers (core.avroread), for every released version
of every schema the project writes, read as each reader the stages use."""

import io
import json
import random

import fastavro
import pytest
from test_avro import records

from core.avro import (DecodeError, SingleObjectCodec, compiled_reader, decode_single_object, history, known_writers,
                       parsed_schema, reader_schema_without, schema_fingerprint)
from core.avroread import _long, compile_reader
from core.avrowrite import Unsupported, compile_writer, zigzag

READERS = {"full": parsed_schema(), "sink": reader_schema_without("details"),
           "scores": reader_schema_without("details", "details_json", "details_xml", "deliveries", "source"),
           "lists": reader_schema_without("details", "details_xml", "deliveries", "source")}


def fastavro_read(data: bytes, writer, reader):
    return fastavro.schemaless_reader(io.BytesIO(data), writer, reader)


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("version", sorted(history()))
def test_every_released_version_reads_as_fastavro_reads_it(version, reader):
    writer = fastavro.parse_schema(json.loads(history()[version]))
    read = compile_reader(writer, READERS[reader])
    for rec in records():
        rec = {f["name"]: rec.get(f["name"]) for f in writer["fields"]}  # what that version carried
        for sized in (False, True):  # as fastavro writes it, and in sized blocks as our codec does
            body = compile_writer(json.loads(history()[version]), sized=sized)(rec)
            assert read(body, 0) == fastavro_read(body, writer, READERS[reader])


def test_the_codec_decodes_with_it_and_skips_the_details_in_one_step():
    codec, reader = SingleObjectCodec(), READERS["sink"]
    data = codec.encode(records()[0])
    assert compiled_reader(data[2:10], known_writers()[data[2:10]][1], reader) is not None
    got = decode_single_object(data, reader)
    assert "details" not in got and got == fastavro_read(data[10:], parsed_schema(), reader)
    source = compiled_reader(data[2:10], known_writers()[data[2:10]][1], reader).source
    assert "pos += " in source and "for _ in range" in source  # sized blocks jumped, plain ones walked


def test_random_values_around_every_varint_boundary():
    rng = random.Random(11)
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "n", "type": "long"}, {"name": "i", "type": "int"}, {"name": "s", "type": ["null", "string"]},
        {"name": "xs", "type": {"type": "array", "items": ["string", "null"]}},
        {"name": "m", "type": {"type": "map", "values": "double"}}, {"name": "b", "type": "bytes"}]}
    parsed = fastavro.parse_schema(schema)
    for sized in (False, True):
        write, read = compile_writer(schema, sized=sized), compile_reader(parsed, parsed)
        for _ in range(300):
            n = rng.choice([0, 1, 63, 64, 8191, 8192, 2 ** 31 - 1, 2 ** 62, 2 ** 63 - 1]) * rng.choice([1, -1])
            rec = {"n": n, "i": rng.choice([0, -1, 2 ** 31 - 1, -2 ** 31]), "s": rng.choice([None, "", "é€😀" * 40]),
                   "xs": [rng.choice([None, "x" * rng.choice([0, 64, 200])]) for _ in range(rng.choice([0, 1, 70]))],
                   "m": {f"k{j}": rng.random() for j in range(rng.choice([0, 3]))}, "b": bytes(rng.choice([0, 130]))}
            body = write(rec)
            assert read(body, 0) == fastavro_read(body, parsed, parsed) == rec


def test_other_types_read_as_fastavro_reads_them():
    schema = {"type": "record", "name": "R", "namespace": "x.y", "fields": [
        {"name": "b", "type": "boolean"}, {"name": "f", "type": "float"}, {"name": "d", "type": "double"},
        {"name": "n", "type": "null"}, {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
        {"name": "again", "type": "E"}, {"name": "fx", "type": {"type": "fixed", "name": "F", "size": 3}},
        {"name": "sub", "type": {"type": "record", "name": "S", "fields": [{"name": "i", "type": "int"}]}},
        {"name": "subs", "type": {"type": "array", "items": "S"}},
        {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    rec = {"b": True, "f": 1.5, "d": -2.25e300, "n": None, "e": "B", "again": "A", "fx": b"abc", "sub": {"i": -3},
           "subs": [{"i": 1}, {"i": 2}], "ms": 1_700_000_000_123}
    parsed = fastavro.parse_schema(schema)
    later = dict(parsed, fields=[*parsed["fields"][:3], {"name": "new", "type": ["null", "string"], "default": None}])
    for reader in (parsed, later):  # the same fields; some left out and one added with its default
        body = compile_writer(schema, sized=True)(rec)
        assert compile_reader(parsed, reader)(body, 0) == fastavro_read(body, parsed, reader)


def test_what_it_does_not_resolve_is_left_to_fastavro():
    w = fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
    promoted = fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]})
    with pytest.raises(Unsupported):
        compile_reader(w, promoted)  # int -> long: Avro's promotion, fastavro does it
    assert compiled_reader(schema_fingerprint(w), w, promoted) is None


def test_a_broken_body_is_a_decode_error():
    codec = SingleObjectCodec()
    data = codec.encode(records()[0])
    for cut in (200, len(data) - 1):  # mid-record, and in the last value (a short slice, not an IndexError)
        with pytest.raises(DecodeError):
            decode_single_object(data[:cut], READERS["sink"])


def test_long_reads_zigzag():
    for n in (0, -1, 1, 63, -64, 64, 2 ** 63 - 1, -2 ** 63):
        assert _long(zigzag(n), 0) == (n, len(zigzag(n)))


def test_the_compiled_readers_are_bounded_however_many_reader_schemas_come():
    from core import avro

    codec = SingleObjectCodec()
    data = codec.encode(records()[0])
    writer = known_writers()[data[2:10]][1]
    for _ in range(600):  # a caller making its reader schema anew each time
        reader = reader_schema_without.__wrapped__("details")  # a new parsed schema, not the cached one
        assert compiled_reader(data[2:10], writer, reader) is not None
        assert len(avro._READERS) <= 256
    assert decode_single_object(data, reader) == fastavro_read(data[10:], parsed_schema(), reader)
