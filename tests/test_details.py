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


def _variants():
    """Events whose text takes each branch of render_details: plain, escapes, controls, non-characters."""
    base = {"ActivityKey": "k", "ActivityCode": "C", "ActivityDate": "2016-06-13T20:10:53Z", "TenantCode": "T"}
    yield dict(base, Subject="plain text", Count=3)
    yield dict(base, Subject="a & b", Body="<p>x</p>")
    yield dict(base, Subject="tab\there", Body="bell\x07 and\x08 ff\x0c vt\x0b")
    yield dict(base, Subject="not a character \ufffe \uffff", Other="fine")
    yield dict(base, Subject='quote " and back\\slash', Nothing=None)
    yield dict(base, Nested={"k": ["<&>", 1.5e300, -7]}, Flag=False)
    yield dict(base, Body="line one\nline two <br/> \"quoted\" & more\r\n\ttabbed")  # the seed's shape
    yield dict(base, Subject="a back\\bslash, a spelt \\u0007 and \\f", Body="<é>")  # look-alikes of escapes
    yield dict(base, Body="<p>x</p>", Bad="bell\x07")  # to escape, and a control character
    yield EVENT  # lone surrogates: the standard library writes the JSON, every value is checked


def test_render_details_answers_what_the_three_forms_answer():
    from core.details import render_details

    for event in _variants():
        pairs = details_pairs(event)
        assert render_details(event) == (pairs, details_json(event), details_xml(pairs)), event
        ET.fromstring(render_details(event)[2])  # well-formed


def test_xml_of_plain_text_carries_it_unchanged_and_a_control_character_replaced():
    from core.details import render_details

    _, _, xml = render_details({"ActivityKey": "k", "ActivityCode": "C", "ActivityDate": "d", "TenantCode": "T",
                                "A": "one", "B": "two\x01"})
    assert xml == '<Details><Detail Name="A">one</Detail><Detail Name="B">two\ufffd</Detail></Details>'
