"""Settings of the iMIS provider (ASI's REST API, iMIS 20 / EMS / 2017)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sinks.settings import constants_setting, fields_setting, http_url, named_fields, PerRecordSettings, secret_ref

#: Activity property: source. The two write-back codes go to ACTIVITY_TYPE and PRODUCT_CODE.
ACTIVITY_FIELDS = {
    "ACTIVITY_TYPE": "writeback_code1",
    "PRODUCT_CODE": "writeback_code2",
    "TRANSACTION_DATE": "activity_datetime",
    "DESCRIPTION": "description:255",
    "NOTE": "details",
    "SOURCE_CODE": "activity_code:40",
}
PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class ImisSettings(PerRecordSettings):
    max_batch: ClassVar[int] = 100

    site_url: str = Field(description="the iMIS site, e.g. https://members.example.org/imis; the token endpoint "
                                      "is {site_url}/token and activities go to {site_url}/api/Activity",
                          max_length=2048)
    grant: Literal["password", "refresh_token"] = Field(
        "password", description="how the sink gets its bearer token: password (username and password_env/_file) "
                                "or refresh_token (refresh_token_env/_file)")
    username: str | None = Field(None, max_length=255, description="the iMIS user the sink signs in as (password)")
    password_env: str | None = secret_ref("env", "that user's password")
    password_file: str | None = secret_ref("file", "that user's password")
    refresh_token_env: str | None = secret_ref("env", "a refresh token issued for the integration")
    refresh_token_file: str | None = secret_ref("file", "a refresh token issued for the integration")
    member_id_property: Literal["ID", "PartyId"] = Field(
        "ID", description="the property holding the member's iMIS ID: ID (the Activity table's column), or "
                          "PartyId (with PrimaryParentIdentity, as the Party-based samples do)")
    send_entity_type_name: bool = Field(True, description="send EntityTypeName: Activity in the body")
    fields: dict[str, str] = fields_setting(ACTIVITY_FIELDS, "Activity property")
    constants: dict[str, str | int | float | bool | None] = constants_setting("Activity property")
    duplicate_guard: bool = Field(
        True, description="before writing, look the ActivityKey up in key_property and skip one already written "
                          "(iMIS has no upsert); costs one GET per activity")
    key_property: str = Field("UF_7", description="the Activity property that holds the ActivityKey (36 "
                                                  "characters; a user-defined field the iMIS admin sets aside)")

    @field_validator("site_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v)

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict) -> dict:
        return named_fields(v, PROPERTY, "an iMIS property name")

    @model_validator(mode="after")
    def _auth(self):
        if self.grant == "password" and not (self.username and (self.password_env or self.password_file)):
            raise ValueError("grant password needs username and password_env or password_file")
        if self.grant == "refresh_token" and not (self.refresh_token_env or self.refresh_token_file):
            raise ValueError("grant refresh_token needs refresh_token_env or refresh_token_file")
        taken = {self.member_id_property, "ID", "PartyId"} & set(self.fields)
        if taken:
            raise ValueError(f"fields.{sorted(taken)[0]}: the member ID property is filled from customer_id")
        if self.duplicate_guard and self.key_property in self.fields:
            raise ValueError(f"fields.{self.key_property}: key_property always holds the ActivityKey")
        return self
