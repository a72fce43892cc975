"""A fake netFORUM Enterprise xWeb: SOAP 1.1 ``Authenticate``, ``GetCustomerByKey`` and
``InsertFacadeObject`` with the rotating token, and the WSDL that describes them.

Follows the netFORUM xWeb documentation (Avectra/Community Brands "xWeb" wiki: "Authenticate",
"xWeb token", "InsertFacadeObject", "GetCustomerByKey", "xWeb Errors"; the service at
``/xweb/secure/netforumxml.asmx``, namespace ``http://www.avectra.com/2005/``):

- ``SOAPAction: "http://www.avectra.com/2005/<Method>"`` on every request (another is refused).
- ``Authenticate(userName, password)`` answers the token in ``<soap:Header><AuthorizationToken>
  <Token>``. **Every later call must send the token of the latest answer**: each answer carries a
  new one and the one used is spent, so a stale token is refused with ``InvalidTokenException``.
  Tokens also expire (``expire_tokens``). Wrong credentials: ``InvalidCredentialsExceptionInfo``;
  after ``lock_after`` wrong tries the user is locked: ``LockedCredentialsExceptionInfo``.
- ``InsertFacadeObject(szObjectName, oNode)``: oNode holds ``<CustomerMessagingActivityObjects>``
  with one or more ``<CustomerMessagingActivityObject>`` rows; ``cma_cst_key`` (a customer key),
  ``cma_activity_date`` and ``cma_eml_key`` or ``cma_eml_address`` are required. The request is
  one transaction: a row that fails validation faults the whole call (``ValidationException``)
  and nothing is stored. There is no upsert. The answer's ``InsertFacadeObjectResult`` (``xs:any``
  in the WSDL) lists the rows with their new ``cma_key``.
- ``GetCustomerByKey(szCstKey)``: the customer's ``Results/Result`` with ``cst_eml_key``.
- Faults are ``<soap:Fault>`` with HTTP 500, ``text/xml`` (the ASMX convention), ``faultcode``
  ``soap:Client`` or ``soap:Server``, the exception named in ``detail``; a server error is
  ``SystemExceptionInfo``. A throttle is IIS's 503 with ``Retry-After``.

``GET ?WSDL`` serves the WSDL (zeep reads it); ``GET /activities`` lists the stored rows as JSON.

    python -m sinks.providers.netforum.fake [--port 8089] [--username xweb-user]
        (the password is read from ACTIVITY_SYNC_NETFORUM_PASSWORD)
"""

from __future__ import annotations

import os
import re
import secrets
import uuid

from aiohttp import web
from lxml import etree

from core.fakes import FaultyFake, fake_main

from . import soap
from .soap import XWEB, q

PATH = "/xweb/secure/netforumxml.asmx"

WSDL = """<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:tns="http://www.avectra.com/2005/"
    targetNamespace="http://www.avectra.com/2005/">
  <wsdl:types>
    <s:schema elementFormDefault="qualified" targetNamespace="http://www.avectra.com/2005/">
      <s:element name="Authenticate"><s:complexType><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="userName" type="s:string"/>
        <s:element minOccurs="0" maxOccurs="1" name="password" type="s:string"/>
      </s:sequence></s:complexType></s:element>
      <s:element name="AuthenticateResponse"><s:complexType><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="AuthenticateResult" type="s:string"/>
      </s:sequence></s:complexType></s:element>
      <s:element name="AuthorizationToken" type="tns:AuthorizationToken"/>
      <s:complexType name="AuthorizationToken"><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="Token" type="s:string"/>
      </s:sequence><s:anyAttribute/></s:complexType>
      <s:element name="InsertFacadeObject"><s:complexType><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="szObjectName" type="s:string"/>
        <s:element minOccurs="0" maxOccurs="1" name="oNode"><s:complexType mixed="true"><s:sequence>
          <s:any/></s:sequence></s:complexType></s:element>
      </s:sequence></s:complexType></s:element>
      <s:element name="InsertFacadeObjectResponse"><s:complexType><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="InsertFacadeObjectResult"><s:complexType mixed="true">
          <s:sequence><s:any/></s:sequence></s:complexType></s:element>
      </s:sequence></s:complexType></s:element>
      <s:element name="GetCustomerByKey"><s:complexType><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="szCstKey" type="s:string"/>
      </s:sequence></s:complexType></s:element>
      <s:element name="GetCustomerByKeyResponse"><s:complexType><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="GetCustomerByKeyResult"><s:complexType mixed="true">
          <s:sequence><s:any/></s:sequence></s:complexType></s:element>
      </s:sequence></s:complexType></s:element>
      <s:element name="GetQuery"><s:complexType><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="szObjectName" type="s:string"/>
        <s:element minOccurs="0" maxOccurs="1" name="szColumnList" type="s:string"/>
        <s:element minOccurs="0" maxOccurs="1" name="szWhereClause" type="s:string"/>
        <s:element minOccurs="0" maxOccurs="1" name="szOrderBy" type="s:string"/>
      </s:sequence></s:complexType></s:element>
      <s:element name="GetQueryResponse"><s:complexType><s:sequence>
        <s:element minOccurs="0" maxOccurs="1" name="GetQueryResult"><s:complexType mixed="true">
          <s:sequence><s:any/></s:sequence></s:complexType></s:element>
      </s:sequence></s:complexType></s:element>
    </s:schema>
  </wsdl:types>
  <wsdl:message name="AuthenticateSoapIn"><wsdl:part name="parameters" element="tns:Authenticate"/></wsdl:message>
  <wsdl:message name="AuthenticateSoapOut"><wsdl:part name="parameters" element="tns:AuthenticateResponse"/></wsdl:message>
  <wsdl:message name="AuthorizationTokenHeader"><wsdl:part name="AuthorizationToken" element="tns:AuthorizationToken"/></wsdl:message>
  <wsdl:message name="InsertFacadeObjectSoapIn"><wsdl:part name="parameters" element="tns:InsertFacadeObject"/></wsdl:message>
  <wsdl:message name="InsertFacadeObjectSoapOut"><wsdl:part name="parameters" element="tns:InsertFacadeObjectResponse"/></wsdl:message>
  <wsdl:message name="GetCustomerByKeySoapIn"><wsdl:part name="parameters" element="tns:GetCustomerByKey"/></wsdl:message>
  <wsdl:message name="GetCustomerByKeySoapOut"><wsdl:part name="parameters" element="tns:GetCustomerByKeyResponse"/></wsdl:message>
  <wsdl:message name="GetQuerySoapIn"><wsdl:part name="parameters" element="tns:GetQuery"/></wsdl:message>
  <wsdl:message name="GetQuerySoapOut"><wsdl:part name="parameters" element="tns:GetQueryResponse"/></wsdl:message>
  <wsdl:portType name="netForumXMLSoap">
    <wsdl:operation name="Authenticate"><wsdl:input message="tns:AuthenticateSoapIn"/><wsdl:output message="tns:AuthenticateSoapOut"/></wsdl:operation>
    <wsdl:operation name="InsertFacadeObject"><wsdl:input message="tns:InsertFacadeObjectSoapIn"/><wsdl:output message="tns:InsertFacadeObjectSoapOut"/></wsdl:operation>
    <wsdl:operation name="GetCustomerByKey"><wsdl:input message="tns:GetCustomerByKeySoapIn"/><wsdl:output message="tns:GetCustomerByKeySoapOut"/></wsdl:operation>
    <wsdl:operation name="GetQuery"><wsdl:input message="tns:GetQuerySoapIn"/><wsdl:output message="tns:GetQuerySoapOut"/></wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="netForumXMLSoap" type="tns:netForumXMLSoap">
    <soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="Authenticate">
      <soap:operation soapAction="http://www.avectra.com/2005/Authenticate" style="document"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/><soap:header message="tns:AuthorizationTokenHeader" part="AuthorizationToken" use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="InsertFacadeObject">
      <soap:operation soapAction="http://www.avectra.com/2005/InsertFacadeObject" style="document"/>
      <wsdl:input><soap:body use="literal"/><soap:header message="tns:AuthorizationTokenHeader" part="AuthorizationToken" use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/><soap:header message="tns:AuthorizationTokenHeader" part="AuthorizationToken" use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="GetCustomerByKey">
      <soap:operation soapAction="http://www.avectra.com/2005/GetCustomerByKey" style="document"/>
      <wsdl:input><soap:body use="literal"/><soap:header message="tns:AuthorizationTokenHeader" part="AuthorizationToken" use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/><soap:header message="tns:AuthorizationTokenHeader" part="AuthorizationToken" use="literal"/></wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="GetQuery">
      <soap:operation soapAction="http://www.avectra.com/2005/GetQuery" style="document"/>
      <wsdl:input><soap:body use="literal"/><soap:header message="tns:AuthorizationTokenHeader" part="AuthorizationToken" use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/><soap:header message="tns:AuthorizationTokenHeader" part="AuthorizationToken" use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="netForumXML">
    <wsdl:port name="netForumXMLSoap" binding="tns:netForumXMLSoap"><soap:address location="{location}"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""

REQUIRED = ("cma_cst_key", "cma_activity_date")
OPERATIONS = ("Authenticate", "InsertFacadeObject", "GetCustomerByKey", "GetQuery")
#: the public xWeb 2010 WSDL: no GetCustomerByKey (a later addition)
XWEB_2010 = ("Authenticate", "InsertFacadeObject", "GetQuery")
_WHERE = re.compile(r"^\s*(\w+)\s*(?:=\s*'((?:[^']|'')*)'|IN\s*\(((?:\s*'(?:[^']|'')*'\s*,?)+)\))\s*$", re.I)


def wsdl_for(operations: tuple[str, ...], location: str) -> str:
    """The WSDL with only ``operations`` (their elements, messages, port type and binding entries)."""
    doc = etree.fromstring(WSDL.replace("{location}", location).encode())
    gone = set(OPERATIONS) - set(operations)
    for el in list(doc.iter()):
        name = el.get("name", "")
        if any(name == op or name == f"{op}Response" or name.startswith(f"{op}Soap") for op in gone):
            el.getparent().remove(el)
    return etree.tostring(doc, xml_declaration=True, encoding="utf-8").decode()


def email_key(cst_key: str) -> str:
    """Every customer of the fake has a primary e-mail address with a key derived from theirs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"eml:{cst_key}"))


class FakeNetforum(FaultyFake):
    path = PATH

    def __init__(self, username: str = "xweb-user", password: str = "", lock_after: int = 5,
                 operations: tuple[str, ...] = OPERATIONS) -> None:
        """``operations``: what this server's WSDL offers (``XWEB_2010``: the public 2010 WSDL)."""
        self.username, self.password, self.lock_after = username, password, lock_after
        self.operations = tuple(operations)
        super().__init__()

    def reset(self) -> None:
        super().reset()
        self.rows: list[dict] = []
        self.bodies: list[bytes] = []
        self.failed_logins = 0
        self.stale_refused = 0
        self.lookups = 0   # customers' e-mail keys read
        self.queries = 0   # activity look-ups (GetQuery on CustomerMessagingActivity)
        self.calls: dict[str, int] = {}

    def stored_keys(self) -> list[str]:
        return [r.get("cma_activity_id", "") for r in self.rows]

    def stats(self) -> dict:
        return {**super().stats(), "stored": len(self.rows), "stale_tokens_refused": self.stale_refused,
                "lookups": self.lookups}

    def rotate(self) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return token

    def answer(self, body: etree._Element, token: str | None = None) -> web.Response:
        return web.Response(body=soap.envelope(body, token), content_type="text/xml", charset="utf-8")

    def fault(self, code: str, message: str, exception: str, status: int = 500, headers=None) -> web.Response:
        return web.Response(body=soap.fault(code, message, exception), status=status, content_type="text/xml",
                            charset="utf-8", headers=headers)

    def fault_response(self, status: int) -> web.Response:
        if status != 500:  # IIS itself answers (the application pool is down): not SOAP
            return web.Response(text="<h1>Service Unavailable</h1>", status=status, content_type="text/html")
        return self.fault("soap:Server", "An unexpected error occurred", "SystemExceptionInfo", status=500)

    def throttle_response(self, retry_after: float) -> web.Response:
        return self.fault("soap:Server", "Server Too Busy", "SystemExceptionInfo", status=503,
                          headers={"Retry-After": f"{retry_after:g}"})

    # ------------------------------------------------------------------ HTTP
    async def handle_wsdl(self, request: web.Request) -> web.Response:
        if "wsdl" not in {k.lower() for k in request.query}:
            return web.Response(text="netFORUM xWeb (fake): GET ?WSDL", content_type="text/plain")
        return web.Response(text=wsdl_for(self.operations, f"{self.base_url}{PATH}"), content_type="text/xml")

    async def handle_soap(self, request: web.Request) -> web.Response:
        data = await request.read()
        action = request.headers.get("SOAPAction", "").strip('"')
        method = action.removeprefix(XWEB)
        try:
            msg = soap.parse(data)
        except ValueError as exc:
            self.log(400)
            return self.fault("soap:Client", f"Server was unable to read request. {exc}", "SoapException")
        if msg.body is None or soap.local(msg.body) != method or not action.startswith(XWEB):
            self.log(500)
            return self.fault("soap:Client", f"Server did not recognize the value of HTTP Header SOAPAction: "
                                             f"{action}.", "SoapException")
        self.calls[method] = self.calls.get(method, 0) + 1
        if method == "Authenticate":
            return self.authenticate(soap.children(msg.body))
        if method not in self.operations or method == "Authenticate":
            return self.fault("soap:Client", f"Server did not recognize the value of HTTP Header SOAPAction: "
                                             f"{action}.", "SoapException")
        if not self.token_valid(msg.token):
            self.stale_refused += 1
            self.log(500)
            return self.fault("soap:Client", "Invalid Token Value", "InvalidTokenException")
        fault = await self.faults()
        if fault is not None:
            self.tokens.discard(msg.token)  # the call used the token up; a fault answer carries no new one
            self.log(fault.status)
            return fault
        if method == "GetQuery":
            self.tokens.discard(msg.token)
            return self.get_query(soap.children(msg.body))
        if method == "GetCustomerByKey":
            self.tokens.discard(msg.token)
            return self.get_customer(soap.children(msg.body).get("szCstKey", ""))
        self.bodies.append(data)
        return self.insert(msg)

    def authenticate(self, params: dict) -> web.Response:
        if self.failed_logins >= self.lock_after:
            return self.fault("soap:Client", "This account is locked.", "LockedCredentialsExceptionInfo")
        if params.get("userName") != self.username or not self.password or params.get("password") != self.password:
            self.failed_logins += 1
            return self.fault("soap:Client", "Invalid Credentials Supplied.", "InvalidCredentialsExceptionInfo")
        self.failed_logins = 0
        self.token_requests += 1
        resp = etree.Element(q("AuthenticateResponse"), nsmap={None: XWEB})
        etree.SubElement(resp, q("AuthenticateResult")).text = XWEB
        return self.answer(resp, self.rotate())

    def get_customer(self, cst_key: str) -> web.Response:
        self.lookups += 1
        resp = etree.Element(q("GetCustomerByKeyResponse"), nsmap={None: XWEB})
        result = etree.SubElement(resp, q("GetCustomerByKeyResult"))
        results = etree.SubElement(result, q("Results"), recordReturn="1" if cst_key else "0")
        if cst_key:
            row = etree.SubElement(results, q("Result"))
            for k, v in (("cst_key", cst_key), ("cst_eml_key", email_key(cst_key)),
                         ("cst_eml_address_dn", f"member-{cst_key[:8]}@example.org")):
                etree.SubElement(row, q(k)).text = v
        return self.answer(resp, self.rotate())

    def get_query(self, params: dict) -> web.Response:
        """``GetQuery(szObjectName, szColumnList, szWhereClause, szOrderBy)`` over the stored rows
        (``CustomerMessagingActivity``) and the customers (``Customer``: ``cst_key``, ``cst_eml_key``),
        the where clause ``column = 'v'`` or ``column IN ('v1', 'v2')``."""
        name = params.get("szObjectName", "")
        m = _WHERE.match(params.get("szWhereClause", ""))
        if name not in ("CustomerMessagingActivity", "Customer") or not m:
            return self.fault("soap:Client", f"GetQuery: cannot query {name!r} where "
                                             f"{params.get('szWhereClause', '')!r}", "SoapException")
        column = m.group(1).lower()
        values = ([m.group(2)] if m.group(2) is not None else re.findall(r"'((?:[^']|'')*)'", m.group(3)))
        wanted = {v.replace("''", "'") for v in values}
        if name == "Customer":
            self.lookups += 1  # an e-mail key read, as GetCustomerByKey counts
        else:
            self.queries += 1
        if name == "Customer":
            found = [{"cst_key": v, "cst_eml_key": email_key(v)} for v in wanted if column == "cst_key"]
        else:
            found = [r for r in self.rows if r.get(column) in wanted]
        columns = [c.strip() for c in params.get("szColumnList", "").split(",") if c.strip()]
        resp = etree.Element(q("GetQueryResponse"), nsmap={None: XWEB})
        result = etree.SubElement(resp, q("GetQueryResult"))
        objs = etree.SubElement(result, q(f"{name}Objects"), recordReturn=str(len(found)))
        for row in found:
            obj = etree.SubElement(objs, q(f"{name}Object"))
            for k in columns or row:
                if row.get(k) is not None:
                    etree.SubElement(obj, q(k)).text = str(row[k])
        return self.answer(resp, self.rotate())

    def insert(self, msg: soap.Answer) -> web.Response:
        params = {soap.local(c): c for c in msg.body}
        name = (params.get("szObjectName").text if "szObjectName" in params else "") or ""
        node = params.get("oNode")
        if name != "CustomerMessagingActivity" or node is None or len(node) != 1 or \
                soap.local(node[0]) != f"{name}Objects" or len(node[0]) == 0:
            self.log(500)
            return self.fault("soap:Client", f"oNode must hold <{name}Objects> with one or more <{name}Object>",
                              "ValidationException")
        new = []
        for obj in node[0]:
            row = soap.children(obj)
            missing = [c for c in REQUIRED if not row.get(c)]
            if not (row.get("cma_eml_key") or row.get("cma_eml_address")):
                missing.append("cma_eml_key or cma_eml_address")
            if missing:
                self.log(500, len(node[0]))
                return self.fault("soap:Client", f"Required field(s) missing: {', '.join(missing)}",
                                  "ValidationException")
            if row["cma_cst_key"] in self.reject_customers:
                self.log(500, len(node[0]))
                return self.fault("soap:Client", f"cma_cst_key {row['cma_cst_key']} is not a valid customer key",
                                  "ValidationException")
            row["cma_key"] = str(uuid.uuid4())
            new.append(row)
        self.rows.extend(new)
        self.tokens.discard(msg.token)
        self.log(200, len(new))
        resp = etree.Element(q("InsertFacadeObjectResponse"), nsmap={None: XWEB})
        result = etree.SubElement(resp, q("InsertFacadeObjectResult"))
        objs = etree.SubElement(result, q(f"{name}Objects"), recordReturn=str(len(new)))
        for row in new:
            obj = etree.SubElement(objs, q(f"{name}Object"))
            for k in ("cma_key", "cma_cst_key", "cma_activity_id"):
                if row.get(k):
                    etree.SubElement(obj, q(k)).text = row[k]
        return self.answer(resp, self.rotate())

    def listing(self) -> list:
        return self.rows

    def app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post(PATH, self.handle_soap)
        app.router.add_get(PATH, self.handle_wsdl)
        self.listing_routes(app)
        return app


def main() -> None:
    fake_main("sinks.providers.netforum.fake", "A fake netFORUM xWeb (the password from "
              "ACTIVITY_SYNC_NETFORUM_PASSWORD)", 8089,
              lambda a: FakeNetforum(a.username, os.environ.get("ACTIVITY_SYNC_NETFORUM_PASSWORD", "")),
              "fake netFORUM xWeb on {base_url}" + PATH + " (WSDL: ?WSDL)", username="xweb-user")


if __name__ == "__main__":
    main()
