import io
import json
from pathlib import Path

import fastavro
import pytest
from conftest import seed_events
from fastavro.schema import fingerprint, to_parsing_canonical_form

from core.avro import DecodeError, SingleObjectCodec, decode_any
from core.catalog import load_catalog
from streams.enrich import Enricher
from core.config import Endpoint, Subscription
from core.routing import Routing

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "activity_enriched.avsc"


def records():
    cat = load_catalog()
    r = Routing(cat)
    r.put_endpoint(Endpoint("crm", tenants=("*",)))
    r.put_subscription(Subscription("DiscussionMessageCreate", "crm", "{AuthorDisplayName}", True, "A", None))
    e = Enricher(cat, r)
    return [e.enrich(json.dumps(ev).encode(), None, "activity.raw", 0, i, 1).record for i, ev in enumerate(seed_events())]


def test_records_round_trip_through_the_schema():
    codec = SingleObjectCodec()
    for rec in records():
        back = codec.decode(codec.encode(rec))
        assert back["activity_key"] == rec["activity_key"]
        assert back["details"] == rec["details"] and back["deliveries"] == rec["deliveries"]
        assert int(back["activity_date"].timestamp() * 1_000_000) == rec["activity_date"]


def test_analyst_decodes_with_the_schema_file_alone():
    """What an analyst does: read the .avsc, check the single-object header, read the body."""
    data = SingleObjectCodec().encode(records()[0])
    schema = json.loads(SCHEMA_FILE.read_text())
    assert data[:2] == b"\xc3\x01"
    # The Avro spec's CRC-64-AVRO over the Parsing Canonical Form, as a Java long would print it.
    assert data[2:10] == bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
    rec = fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(schema), None)
    assert rec["activity_code"] == "DiscussionMessageCreate" and rec["customer_id"] == "aquill"


def test_crc64_avro_matches_the_spec_vector():
    # Avro spec: the 64-bit Rabin fingerprint of the schema "int" is 0x7275d51a3f395c8f;
    # single-object encoding writes it little-endian.
    assert bytes.fromhex(fingerprint(to_parsing_canonical_form("int"), "CRC-64-AVRO")) == \
        (0x7275D51A3F395C8F).to_bytes(8, "little")


def test_decode_refuses_foreign_bytes():
    with pytest.raises(DecodeError):
        decode_any(b"{json}")
    other = SingleObjectCodec(fastavro.parse_schema({"type": "record", "name": "X", "fields": []}))
    with pytest.raises(DecodeError, match="a schema this reader does not know"):
        SingleObjectCodec().decode(other.encode({}))


def _project(value, schema):
    """A record of the current schema as an older schema has it (its fields only, recursively)."""
    if isinstance(schema, dict) and schema.get("type") == "record":
        return {f["name"]: _project(value[f["name"]], f["type"]) for f in schema["fields"]}
    if isinstance(schema, dict) and schema.get("type") == "array":
        return [_project(v, schema["items"]) for v in value]
    return value


def test_the_current_schema_reads_every_released_version():
    """Avro schema resolution: bytes written with any schemas/history version decode with the current
    schema (a field added since takes its default); the current schema is itself released."""
    from core.avro import history, known_writers, parsed_schema, schema_fingerprint

    versions = history()
    current = json.loads(SCHEMA_FILE.read_text())
    assert versions and json.loads(versions[max(versions)]) == current, \
        "schemas/activity_enriched.avsc changed: release it as schemas/history/activity_enriched-vN.avsc"
    for version, text in versions.items():
        old = json.loads(text)
        writer = fastavro.parse_schema(old)
        for rec in records():
            data = SingleObjectCodec(writer).encode(_project(rec, old))
            back = decode_any(data)  # resolved into the current schema
            assert back["activity_key"] == rec["activity_key"] and back["deliveries"] == rec["deliveries"], version
        assert schema_fingerprint(writer) in known_writers()
    assert schema_fingerprint(parsed_schema()) in known_writers()


def test_a_record_of_an_earlier_schema_decodes_and_takes_the_defaults(monkeypatch):
    """What the history buys: a reader of today reads what a release without ``customer_key_field`` wrote."""
    import core.avro as avro

    current = json.loads(SCHEMA_FILE.read_text())
    earlier = dict(current, fields=[f for f in current["fields"] if f["name"] != "customer_key_field"])
    rec = records()[0]
    data = SingleObjectCodec(fastavro.parse_schema(earlier)).encode(_project(rec, earlier))
    with pytest.raises(DecodeError, match="does not know"):
        decode_any(data)  # not released: refused with the reason
    real = avro.history
    monkeypatch.setattr(avro, "history", lambda name="activity_enriched": {0: json.dumps(earlier), 1: json.dumps(
        current)} if name == "activity_enriched" else real(name))
    avro.known_writers.cache_clear()
    try:
        back = decode_any(data)
    finally:
        avro.known_writers.cache_clear()
    assert back["customer_key_field"] is None and back["customer_id"] == rec["customer_id"]
