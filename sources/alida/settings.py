"""The Alida source's settings (``kind: alida``), checked at ``load-config --check``."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from core.settingsmodel import http_url, secret_ref

from ..framework import SourceSettings

#: the regions whose API hosts are known: ``https://api.{region}.alida.com``
REGIONS = ("na1", "eu1")

#: member-event types. The stored documentation's list is cut off after DeliveryFailed ("Closed,
#: Complaint, ConfirmationSent, DeliveryFailed, ..."); the rest are the survey events its activity
#: summary counts (``memberEvents: {surveyInvited, surveyCompleted, ...}``) and the survey outcomes a
#: panel platform reports (started, reminded, screened out, quota full, opted out).
EVENT_TYPES = ("Closed", "Complaint", "ConfirmationSent", "DeliveryFailed", "SurveyInvited", "SurveyReminded",
               "SurveyStarted", "SurveyCompleted", "ScreenedOut", "QuotaFull", "OptedOut")

_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class AlidaSettings(SourceSettings):
    """An Alida community's member events: region, API credential, what to take, and how to find the member."""

    max_page_size: ClassVar[int] = 1000  # the collection endpoints' limit

    region: Literal["na1", "eu1"] = Field(description="the community's region: na1 (North America) or eu1 (Europe); "
                                                      "the API is https://api.{region}.alida.com")
    community: str = Field(description="the community's communityApiKeyName (in the API's paths; "
                                                    "Product Settings > API)")
    client_id: str = Field(min_length=1, max_length=200, description="the API credential's client id")
    client_secret_env: str | None = secret_ref("env", "the API credential's client secret")
    client_secret_file: str | None = Field(**{**secret_ref("file", "the API credential's client secret")._attributes_set,
                                              "validate_default": True})
    api_key_env: str | None = secret_ref("env", "the x-api-key the token endpoint asks for, if any")
    api_key_file: str | None = secret_ref("file", "the x-api-key the token endpoint asks for, if any")
    event_types: tuple[str, ...] = Field(EVENT_TYPES, min_length=1,
                                         description="the member-event types to take (others are skipped)")
    member_lookup: bool = Field(True, description="look each member up once (e-mail, name, customer ID) so the "
                                                  "stream stage can find their AMS customer")
    customer_id_variable: str | None = Field(None, description="the member variable holding the AMS/CRM customer "
                                                               "ID (e.g. CustomerID); else the directory resolves "
                                                               "the member by e-mail")
    page_size: int = Field(500, ge=1, description="member events per page (the API's default is 20, its most 1000)")
    base_url: str | None = Field(None, description="the API's base URL instead of the region's (a proxy, or the "
                                                   "bundled fake: http://127.0.0.1:8095)")

    @field_validator("community")
    @classmethod
    def _name(cls, v):
        if not _KEY_NAME.match(v):
            raise ValueError("letters, digits, '_', '.', '-' (at most 100)")
        return v

    @field_validator("customer_id_variable")
    @classmethod
    def _variable(cls, v):
        if v is not None and not _VARIABLE.match(v):
            raise ValueError("a member variable's name (letters, digits, '_')")
        return v

    @field_validator("event_types", mode="before")
    @classmethod
    def _types(cls, v):
        if isinstance(v, list):
            unknown = [t for t in v if t not in EVENT_TYPES]
            if unknown:
                raise ValueError(f"unknown event type(s) {', '.join(map(str, unknown))}; known: {', '.join(EVENT_TYPES)}")
            return tuple(v)
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v):
        return http_url(v)

    @field_validator("client_secret_file")
    @classmethod
    def _secret_named(cls, v, info):
        if not (v or info.data.get("client_secret_env")):
            raise ValueError("client_secret_env or client_secret_file is required (where the client secret is)")
        return v

    @property
    def api_url(self) -> str:
        return self.base_url or f"https://api.{self.region}.alida.com"
