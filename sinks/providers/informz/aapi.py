"""The wire format of Thrive Marketing Professional's (Informz's) partner API, "AAPI": both sides.

From ``../shared/NEW-SYSTEMS.md`` section 1 (Informz "setup-api", "bulkupload-api" and "grid request"
knowledge-base pages): SOAP 1.1 with **one operation**, ``PostInformzMessage(x: string)``, whose
argument is an XML document (``ActionRequest`` to do something, ``GridRequest`` to read) in the
namespace ``http://partner.informz.net/aapi/2009/08/``, credentials **in the body**
(``<Brand id="..">Name</Brand><User/><Password/>``). The answer, ``PostInformzMessageResult``, is an
XML document too (``ActionResponse``, ``GridResponse``); errors are a SOAP fault whose detail is an
``InformzServiceFault`` (Code, Message, Reason).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

NS = "http://partner.informz.net/aapi/2009/08/"
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ACTION = "http://partner.informz.net/aapi/2009/08/IInformzWebServiceContract/PostInformzMessage"
GRID_MAX_ROWS = 1000
SUBSCRIBE_MAX = 1000


class AapiError(Exception):
    def __init__(self, code: str, message: str, reason: str = "") -> None:
        super().__init__(f"{code}: {message}" + (f" ({reason})" if reason else ""))
        self.code, self.message, self.reason = code, message, reason


def envelope(document: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>'
            f'<PostInformzMessage xmlns="{NS}"><x>{escape(document)}</x></PostInformzMessage>'
            f'</soap:Body></soap:Envelope>')


def result_envelope(document: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>'
            f'<PostInformzMessageResponse xmlns="{NS}"><PostInformzMessageResult>{escape(document)}'
            f'</PostInformzMessageResult></PostInformzMessageResponse></soap:Body></soap:Envelope>')


def fault_envelope(code: str, message: str, reason: str = "") -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_NS}"><soap:Body>'
            f'<soap:Fault><faultcode>soap:Client</faultcode><faultstring>{escape(message)}</faultstring>'
            f'<detail><InformzServiceFault xmlns="{NS}"><Code>{escape(code)}</Code><Message>{escape(message)}'
            f'</Message><Reason>{escape(reason)}</Reason></InformzServiceFault></detail></soap:Fault>'
            f'</soap:Body></soap:Envelope>')


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def strip_ns(el: ET.Element) -> ET.Element:
    for e in el.iter():
        e.tag = _local(e.tag)
    return el


def unwrap(body: str, element: str) -> ET.Element:
    """The document inside a SOAP envelope's ``element`` (``x`` of a request, ``PostInformzMessageResult``
    of an answer), parsed, namespaces dropped; a fault raises :class:`AapiError`."""
    try:
        env = strip_ns(ET.fromstring(body))
    except ET.ParseError as exc:
        raise AapiError("BadEnvelope", f"not XML: {exc}") from None
    fault = env.find(".//Fault")
    if fault is not None:
        f = fault.find(".//InformzServiceFault")
        if f is not None:
            raise AapiError(f.findtext("Code") or "Fault", f.findtext("Message") or "", f.findtext("Reason") or "")
        raise AapiError("Fault", fault.findtext("faultstring") or "")
    inner = env.find(f".//{element}")
    if inner is None or not (inner.text or "").strip():
        raise AapiError("BadEnvelope", f"no {element} in the SOAP body")
    try:
        return strip_ns(ET.fromstring(inner.text))
    except ET.ParseError as exc:
        raise AapiError("BadDocument", f"the document is not XML: {exc}") from None


def credentials(brand_id: str, brand: str, user: str, password: str) -> str:
    return (f"<Brand id={quoteattr(str(brand_id))}>{escape(brand)}</Brand><User>{escape(user)}</User>"
            f"<Password>{escape(password)}</Password>")


def subscribe_request(creds: str, interest: str, action: str, subscribers: list[dict]) -> str:
    """``Subscribe`` (synchronous, at most :data:`SUBSCRIBE_MAX` subscribers): ``<Email>`` first, ``<ID>``
    (the Remote ID) second, then fields."""
    rows = "".join(
        f"<Subscriber><Email>{escape(s['email'])}</Email><ID>{escape(s['remote_id'])}</ID><Fields>"
        + "".join(f"<Field element={quoteattr(k)}>{escape(str(v))}</Field>" for k, v in (s.get("fields") or {}).items()
                  if v is not None)
        + "</Fields></Subscriber>" for s in subscribers)
    return (f'<ActionRequest xmlns="{NS}">{creds}<Subscribe><InterestDetails><InterestNames><InterestName>'
            f'{escape(interest)}</InterestName></InterestNames><InterestAction>{escape(action)}</InterestAction>'
            f'</InterestDetails><Subscribers>{rows}</Subscribers></Subscribe></ActionRequest>')


def csv_cell(v) -> str:
    s = "" if v is None else str(v)
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n\r') else s


def bulk_upload_request(creds: str, interest: str, action: str, subscribers: list[dict],
                        status_email: str | None = None) -> str:
    """``BulkUpload`` (asynchronous, answers an ``<UploadID>``): CSV-like rows in ``<Data>``, columns
    described by ``<FieldDefinitions>`` (Email, Remote ID, first and last name)."""
    data = "\n".join(",".join(csv_cell(x) for x in (s["email"], s["remote_id"], (s.get("fields") or {}).get(
        "First_Name"), (s.get("fields") or {}).get("Last_Name"))) for s in subscribers)
    defs = ('<FieldDefinitions><FieldDefinition ColumnIndex="1" FieldType="Email"/>'
            '<FieldDefinition ColumnIndex="2" FieldType="RemoteID"/>'
            '<FieldDefinition ColumnIndex="3" FieldType="Field" FieldName="First_Name"/>'
            '<FieldDefinition ColumnIndex="4" FieldType="Field" FieldName="Last_Name"/></FieldDefinitions>')
    status = f"<StatusEmailRecipients>{escape(status_email)}</StatusEmailRecipients>" if status_email else ""
    return (f'<ActionRequest xmlns="{NS}">{creds}<BulkUpload><Action>{escape(action)}</Action>'
            f'<InterestNames><InterestName>{escape(interest)}</InterestName></InterestNames>{status}{defs}'
            f'<Data>{escape(data)}</Data></BulkUpload></ActionRequest>')


def grid_request(creds: str, grid: str, fields: list[str], conditions: list[tuple[str, str, str]] = (),
                 start_row: int = 1, rows: int = GRID_MAX_ROWS) -> str:
    conds = "".join(f"<Condition><Field>{escape(f)}</Field><SetOperator>{escape(op)}</SetOperator>"
                    f"<Value>{escape(str(v))}</Value></Condition>" for f, op, v in conditions)
    return (f'<GridRequest xmlns="{NS}">{creds}<Grid type={quoteattr(grid)}><ReturnFields>'
            + "".join(f"<DataElement>{escape(f)}</DataElement>" for f in fields)
            + f"</ReturnFields><Conditions>{conds}</Conditions><StartRow>{start_row}</StartRow>"
              f"<NumberOfRows>{rows}</NumberOfRows></Grid></GridRequest>")


def grid_rows(doc: ET.Element) -> list[dict]:
    return [{f.get("element"): f.text or "" for f in rec.iter("Field")} for rec in doc.iter("Record")]


def grid_response(grid: str, rows: list[dict], start_row: int = 1) -> str:
    recs = "".join(f'<Record row="{start_row + i}"><Fields>'
                   + "".join(f"<Field element={quoteattr(k)}>{escape(str(v))}</Field>" for k, v in r.items())
                   + "</Fields></Record>" for i, r in enumerate(rows))
    return f'<GridResponse xmlns="{NS}"><Grids><Grid type={quoteattr(grid)}>{recs}</Grid></Grids></GridResponse>'
