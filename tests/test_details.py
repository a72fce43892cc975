import json
import xml.etree.ElementTree as ET

from core.details import details_json, details_pairs, details_xml

EVENT = {
    "ActivityKey": "k", "ActivityCode": "C", "ActivityDate": "2016-06-13T20:10:53Z", "TenantCode": "T",
    "Subject": "</Detail><Detail Name=\"Injected\">x</Detail> & <script>",
    "Body": "ctrl\x00\x07chars \ud83d\ude00 ok",
    'Odd"Name<&>': "v",
    "IsNew": True, "Count": 0, "Ratio": 1.5, "Roles": ["a", "<b>"], "Nested": {"k": [1]}, "Nothing": None,
}


def test_pairs_leave_out_envelope_and_keep_order():
    pairs = details_pairs(EVENT)
    assert [p["name"] for p in pairs][:2] == ["Subject", "Body"]
    assert not {"ActivityKey", "ActivityCode", "ActivityDate", "TenantCode"} & {p["name"] for p in pairs}
    values = {p["name"]: p["value"] for p in pairs}
    assert values["IsNew"] == "true" and values["Count"] == "0" and values["Ratio"] == "1.5"
    assert values["Roles"] == '["a","<b>"]' and values["Nothing"] is None


def test_xml_escapes_hostile_values_and_names():
    xml = details_xml(details_pairs(EVENT))
    root = ET.fromstring(xml)  # well-formed despite the hostile content
    got = {d.get("Name"): (d.text, d.get("Null")) for d in root.findall("Detail")}
    assert len(root.findall("Detail")) == len(details_pairs(EVENT))  # nothing injected
    assert got["Subject"][0] == EVENT["Subject"]
    assert got['Odd"Name<&>'][0] == "v"
    assert got["Nothing"] == (None, "true")
    assert got["Body"][0] == "ctrl\ufffd\ufffdchars \ufffd\ufffd ok"  # XML 1.0 cannot carry these


def test_json_keeps_types():
    doc = json.loads(details_json(EVENT))
    assert doc["IsNew"] is True and doc["Count"] == 0 and doc["Nested"] == {"k": [1]}
    assert "ActivityKey" not in doc
