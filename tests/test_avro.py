import io
import json
from pathlib import Path

import fastavro
import pytest
from conftest import seed_events
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streams.avro import DecodeError, SingleObjectCodec, decode_any
from streams.catalog import load_catalog
from streams.enrich import Enricher
from streams.routing import Endpoint, Routing, Subscription

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
    with pytest.raises(DecodeError, match="another schema"):
        SingleObjectCodec().decode(other.encode({}))
