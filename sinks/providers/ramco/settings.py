"""Settings of the RAMCO AMS provider (RAMCO API v2)."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from sinks.settings import constants_setting, fields_setting, http_url, named_fields, PerRecordSettings, require_secret, secret_ref

#: attribute: source, on a custom entity the RAMCO admin creates (RAMCO custom names start cobalt_/ramco_)
ACTIVITY_FIELDS = {
    "cobalt_ContactId": "customer_id",
    "cobalt_ActivityDate": "activity_datetime",
    "cobalt_ActivityCode": "writeback_code1",
    "cobalt_ActivitySubcode": "writeback_code2",
    "cobalt_Description": "description",
    "cobalt_Link": "link_url",
}
ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


class RamcoSettings(PerRecordSettings):
    max_batch: ClassVar[int] = 100

    url: str = Field("https://api.ramcoams.com/api/v2/", max_length=2048, description="the RAMCO API v2 URL")
    api_key_env: str | None = secret_ref("env", "the RAMCO API key")
    api_key_file: str | None = secret_ref("file", "the RAMCO API key")
    entity: str = Field("cobalt_communityactivity", description="the entity each activity becomes")
    fields: dict[str, str] = fields_setting(ACTIVITY_FIELDS, "attribute")
    constants: dict[str, str | int | float | bool | None] = constants_setting("attribute")
    duplicate_guard: bool = Field(True, description="before writing, look the ActivityKey up in key_attribute "
                                                    "(GetEntities with a filter) and skip one already written; "
                                                    "RAMCO has no upsert")
    key_attribute: str = Field("cobalt_ActivityKey", description="the attribute that holds the ActivityKey")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v, strip=False)  # the path is used as given

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict) -> dict:
        return named_fields(v, ATTRIBUTE, "a RAMCO attribute name")

    @model_validator(mode="after")
    def _needs(self):
        require_secret(self, "api_key")
        if self.duplicate_guard and self.key_attribute in self.fields:
            raise ValueError(f"fields.{self.key_attribute}: key_attribute always holds the ActivityKey")
        return self
