"""The Push API's OpenAPI 3.0 document, served at ``GET /v2/openapi.json`` (built from the field tables)."""

from __future__ import annotations

from . import model as M

_TYPES = {
    M.STR: {"type": "string", "maxLength": M.MAX_TEXT, "nullable": True},
    M.ID: {"type": "string", "maxLength": M.MAX_ID, "nullable": True},
    M.DATE: {"type": "string", "nullable": True, "example": "2026-03-01T09:30:00.000Z",
             "description": "yyyy-MM-ddTHH:mm:ss.fffZ or yyyy-MM-ddTHH:mm:ss.fff+hh:mm"},
    M.INT: {"type": "integer", "format": "int32", "nullable": True},
    M.BOOL: {"type": "boolean", "nullable": True},
    M.DEC: {"type": "number", "nullable": True},
}


def _object(table: dict, required=()) -> dict:
    props = {k: dict(_TYPES[v]) for k, v in table.items()}
    if "Bio" in props:
        props["Bio"]["maxLength"] = M.MAX_BIO
    out = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _array(ref: str) -> dict:
    return {"type": "array", "maxItems": M.MAX_ITEMS, "nullable": True, "items": {"$ref": f"#/components/schemas/{ref}"}}


_OPAQUE = {"type": "object", "description": "Stored as pushed (the Push API documents no fields for it): a flat "
                                            "object of text, numbers, booleans or null.",
           "additionalProperties": {"nullable": True, "oneOf": [{"type": "string", "maxLength": M.MAX_TEXT},
                                                                {"type": "number"}, {"type": "boolean"}]}}

_ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string"},
    "stored": {"type": "integer", "description": "Objects of this request written (always 0 on an error)"},
    "problem_count": {"type": "integer"},
    "problems": {"type": "array", "items": {"type": "object", "properties": {
        "index": {"type": "integer", "nullable": True, "description": "The object's position in the array"},
        "field": {"type": "string"}, "reason": {"type": "string"}}}},
}}


def _errors() -> dict:
    def e(text, headers=None):
        r = {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        if headers:
            r["headers"] = {h: {"schema": {"type": "integer"}, "description": "seconds"} for h in headers}
        return r
    return {
        "400": e("Invalid objects or a body that is not a JSON array. Nothing of the request was stored; "
                 "`problems` lists each invalid object's index, field and reason."),
        "401": e("The API Key is not valid (missing, unknown or revoked). Nothing was stored."),
        "413": e(f"Over a limit: {M.MAX_BODY_BYTES} bytes a request, {M.MAX_OBJECTS} objects a request, "
                 f"{M.MAX_TEXT} characters a text field ({M.MAX_BIO} for Bio), {M.MAX_ITEMS} entries in a "
                 f"contact's Groups/Addresses/…, {M.MAX_LIST_IDS} ContactIds a list object. Nothing was stored."),
        "415": e("Content-Type other than application/json or text/json, a charset other than UTF-8, or a "
                 "Content-Encoding (send the body uncompressed). Nothing was stored."),
        "429": e("The server is shedding load: retry after Retry-After seconds. Nothing was stored.",
                 ["Retry-After"]),
        "503": e("Kafka did not acknowledge the write in time: retry after Retry-After seconds (a retry is "
                 "safe: pushing the same objects twice leaves the same state).", ["Retry-After"]),
    }


_STORED = {"type": "object", "required": ["stored", "results"], "properties": {
    "stored": {"type": "integer"},
    "results": {"type": "array", "items": {"type": "object", "properties": {
        "index": {"type": "integer"}, "id": {"type": "string"}, "status": {"type": "string", "enum": ["stored"]}}}}}}


def document() -> dict:
    details = _object(M.CONTACT_DETAILS, ["ContactId"])
    details["description"] = ("ContactId is required; FirstName or LastName when IsOrganization is false, "
                              "OrganizationName when it is true; with IsDeleted true only ContactId.")
    group = _object(M.CONTACT_GROUP, ["GroupId"])
    info = {"type": "object", "additionalProperties": False, "required": ["ContactDetails"], "properties": {
        "ContactDetails": {"$ref": "#/components/schemas/ContactDetails"},
        "Groups": _array("ContactGroup"), "Addresses": _array("ContactAddress"),
        "PhoneNumbers": _array("ContactPhone"),
        **{n: {"type": "array", "maxItems": M.MAX_ITEMS, "nullable": True, "items": _OPAQUE} for n in M.OPAQUE}}}
    lst = {"type": "object", "additionalProperties": False, "required": ["ContactIds", "ListId", "Mode"],
           "properties": {
               "ContactIds": {"type": "array", "maxItems": M.MAX_LIST_IDS,
                              "items": {"type": "string", "minLength": 1, "maxLength": M.MAX_ID}},
               "ListId": {"type": "string", "minLength": 1, "maxLength": M.MAX_ID},
               "ListName": _TYPES[M.STR], "ListType": _TYPES[M.STR],
               "Mode": {"type": "string", "enum": list(M.LIST_MODES),
                        "description": "Add and Append are the same (the seed's text says Add, its example Append)"}}}

    def op(summary, ref, text):
        return {"post": {
            "summary": summary, "description": text, "security": [{"ApiKey": []}],
            "requestBody": {"required": True, "content": {
                t: {"schema": {"type": "array", "maxItems": M.MAX_OBJECTS, "items": {"$ref": f"#/components/schemas/{ref}"}}}
                for t in ("application/json", "text/json")}},
            "responses": {"200": {"description": "Every object is on Kafka (acknowledged by all in-sync replicas).",
                                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Stored"}}}},
                          **_errors()}}}

    return {
        "openapi": "3.0.3",
        "info": {"title": "activity-sync Push API", "version": "2",
                 "description": "Higher Logic's Push API v2 (contacts and lists from an AMS), served by `activity-sync "
                                "ingest`. A request is all or nothing: if any object is invalid, none is stored."},
        "servers": [{"url": "/"}],
        "paths": {
            "/v2/contactinfo": op("Push contacts", "ContactInfo",
                                  "Each object is the contact's full record: a field or group left out is cleared."),
            "/v2/list": op("Push list memberships", "List",
                           "Add (or Append) and Remove change only the ContactIds sent; Replace sets the list to exactly them."),
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "ApiKey"}},
            "schemas": {"ContactInfo": info, "ContactDetails": details, "ContactGroup": group,
                        "ContactAddress": _object(M.CONTACT_ADDRESS), "ContactPhone": _object(M.CONTACT_PHONE),
                        "List": lst, "Error": _ERROR, "Stored": _STORED},
        },
    }
