"""Settings of the Aptify provider (Aptify Services API, GenericEntity)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sinks.settings import constants_setting, fields_setting, http_url, named_fields, PerRecordSettings, require_secret, secret_ref

#: field: source, on the entity the Aptify admin creates for community activities
ACTIVITY_FIELDS = {
    "PersonID": "customer_id",
    "ActivityDate": "activity_datetime",
    "ActivityCode": "writeback_code1",
    "ActivitySubcode": "writeback_code2",
    "Description": "description",
    "ActivityKey": "activity_key",
    "LinkUrl": "link_url",
}
FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


class AptifySettings(PerRecordSettings):
    max_batch: ClassVar[int] = 100

    url: str = Field(description="the Aptify services base, e.g. https://aptify.example.org/AptifyServicesAPI",
                     max_length=2048)
    auth_provider: Literal["Web", "AptifyUser", "DomainUser", "DomainWithContainer"] = Field(
        "AptifyUser", description="the Aptify authentication provider the sink signs in with "
                                  "(/services/Authentication/Login/{auth_provider})")
    username: str = Field(description="the user the sink signs in as", min_length=1, max_length=255)
    password_env: str | None = secret_ref("env", "that user's password")
    password_file: str | None = secret_ref("file", "that user's password")
    entity: str = Field("CommunityActivities", description="the entity each activity becomes")
    fields: dict[str, str] = fields_setting(ACTIVITY_FIELDS, "entity field")
    constants: dict[str, str | int | float | bool | None] = constants_setting("entity field")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v)

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict) -> dict:
        if "customer_id" not in v.values():
            raise ValueError("one field must be filled from customer_id (the member)")
        return named_fields(v, FIELD, "an Aptify field name")

    @model_validator(mode="after")
    def _needs(self):
        require_secret(self, "password")
        return self
