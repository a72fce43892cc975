"""SOAP 1.1 envelopes of netFORUM's xWeb, built and read with lxml (no string building).

Shared by the sink and the fake: both speak the same envelope, header and fault shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
XWEB = "http://www.avectra.com/2005/"
NSMAP = {"soap": SOAP, "xsi": "http://www.w3.org/2001/XMLSchema-instance", "xsd": "http://www.w3.org/2001/XMLSchema"}
CONTENT_TYPE = "text/xml; charset=utf-8"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)


def q(name: str, ns: str = XWEB) -> str:
    return f"{{{ns}}}{name}"


def envelope(body: etree._Element, token: str | None = None) -> bytes:
    env = etree.Element(q("Envelope", SOAP), nsmap=NSMAP)
    if token is not None:
        header = etree.SubElement(env, q("Header", SOAP))
        auth = etree.SubElement(header, q("AuthorizationToken"), nsmap={None: XWEB})
        etree.SubElement(auth, q("Token")).text = token
    etree.SubElement(env, q("Body", SOAP)).append(body)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def call(method: str, params: dict[str, str | etree._Element], token: str | None = None) -> bytes:
    """A request envelope: ``<method xmlns=xWeb><param>…</param>…</method>``."""
    op = etree.Element(q(method), nsmap={None: XWEB})
    for name, value in params.items():
        el = etree.SubElement(op, q(name))
        if isinstance(value, etree._Element):
            el.append(value)
        else:
            el.text = value
    return envelope(op, token)


def rows(object_name: str, records: list[dict[str, object]]) -> etree._Element:
    """``<{Object}Objects><{Object}Object><column>value</column>…</…></…>`` for InsertFacadeObject's oNode."""
    root = etree.Element(q(f"{object_name}Objects"), nsmap={None: XWEB})
    for rec in records:
        obj = etree.SubElement(root, q(f"{object_name}Object"))
        for column, value in rec.items():
            if value is None:
                continue
            etree.SubElement(obj, q(column)).text = value if isinstance(value, str) else str(value)
    return root


@dataclass
class Answer:
    """A parsed xWeb answer: the new token from the header, the body's first element, or a fault."""

    token: str | None
    body: etree._Element | None
    fault_code: str | None = None
    fault_string: str | None = None
    fault_detail: str | None = None  # the local name of the detail's first element (the exception)


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def parse(data: bytes) -> Answer:
    """Raises ValueError for anything that is not a SOAP 1.1 envelope."""
    try:
        env = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if env.tag != q("Envelope", SOAP):
        raise ValueError(f"not a SOAP 1.1 envelope: {env.tag}")
    token_el = env.find(f"{q('Header', SOAP)}/{q('AuthorizationToken')}/{q('Token')}")
    body = env.find(q("Body", SOAP))
    if body is None or len(body) == 0:
        raise ValueError("SOAP envelope without a body")
    first = body[0]
    if first.tag == q("Fault", SOAP):
        detail = first.find("detail")
        exc = local(detail[0]) if detail is not None and len(detail) else None
        return Answer(token_el.text if token_el is not None else None, None, first.findtext("faultcode"),
                      first.findtext("faultstring"), exc)
    return Answer(token_el.text if token_el is not None else None, first)


def fault(code: str, message: str, exception: str) -> bytes:
    f = etree.Element(q("Fault", SOAP))
    etree.SubElement(f, "faultcode").text = code
    etree.SubElement(f, "faultstring").text = message
    detail = etree.SubElement(f, "detail")
    exc = etree.SubElement(detail, q(exception), nsmap={None: XWEB})
    etree.SubElement(exc, q("Message")).text = message
    return envelope(f)


WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"


def wsdl_operations(data: bytes) -> set[str]:
    """The operations a WSDL's port types offer (raises ValueError if it is not a WSDL)."""
    try:
        doc = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"the WSDL is not XML: {exc}") from None
    if doc.tag != f"{{{WSDL_NS}}}definitions":
        raise ValueError("not a WSDL (no wsdl:definitions)")
    return {op.get("name") for op in doc.iter(f"{{{WSDL_NS}}}operation")
            if op.getparent() is not None and op.getparent().tag == f"{{{WSDL_NS}}}portType"}


def children(el: etree._Element) -> dict[str, str]:
    return {local(c): (c.text or "") for c in el}
