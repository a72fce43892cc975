"""Settings of the Personify360 provider (Personify Data Services, WCF Data Services / OData)."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from sinks.settings import constants_setting, fields_setting, http_url, named_fields, PerRecordSettings, require_secret, secret_ref

#: CusActivity property: source. MasterCustomerId/SubCustomerId come from customer_id.
ACTIVITY_FIELDS = {
    "ActivityCode": "writeback_code1",
    "ActivitySubcode": "writeback_code2",
    "ActivityDate": "activity_datetime",
    "ActivityText": "description",
    "CallTopicCode": "activity_code:24",
}
PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


class PersonifySettings(PerRecordSettings):
    max_batch: ClassVar[int] = 100

    url: str = Field(description="the data services root, https://{ebiz}/PersonifyDataServices/PersonifyData.svc",
                     max_length=2048)
    username: str = Field(description="the data services user (HTTP Basic)", min_length=1, max_length=255)
    password_env: str | None = secret_ref("env", "that user's password")
    password_file: str | None = secret_ref("file", "that user's password")
    entity: str = Field("CusActivity", description="the activity entity to create (Create then Save)")
    sub_customer_separator: str = Field(
        "-", min_length=1, max_length=3,
        description="the customer ID is MasterCustomerId, or MasterCustomerId{sep}SubCustomerId (SubCustomerId 0 "
                    "when absent)")
    fields: dict[str, str] = fields_setting(ACTIVITY_FIELDS, "entity property")
    constants: dict[str, str | int | float | bool | None] = constants_setting("entity property")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v)

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict) -> dict:
        return named_fields(v, PROPERTY, "a Personify property name", ("MasterCustomerId", "SubCustomerId"))

    @model_validator(mode="after")
    def _needs(self):
        require_secret(self, "password")
        return self
