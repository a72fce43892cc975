"""Settings of the netFORUM Enterprise provider (xWeb, SOAP 1.1)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sinks.settings import constants_setting, fields_setting, http_url, HttpSettings, named_fields, require_secret, secret_ref

#: CustomerMessagingActivity column: source. cma_cst_key (the member) is always customer_id.
CMA_FIELDS = {
    "cma_activity_date": "activity_datetime",
    "cma_activity_code": "writeback_code1",
    "cma_activity_subcode": "writeback_code2",
    "cma_activity_id": "activity_key",
}
COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class NetforumSettings(HttpSettings):
    max_batch: ClassVar[int] = 100  # rows in one InsertFacadeObject

    batch_size: int = Field(25, ge=1, description="CustomerMessagingActivity rows per InsertFacadeObject")
    url: str = Field(description="the xWeb endpoint, https://{host}/xweb/secure/netforumxml.asmx", max_length=2048)
    username: str = Field(description="the xWeb user", min_length=1, max_length=255)
    password_env: str | None = secret_ref("env", "the xWeb user's password")
    password_file: str | None = secret_ref("file", "the xWeb user's password")
    object_name: str = Field("CustomerMessagingActivity", description="the facade object each activity becomes")
    fields: dict[str, str] = fields_setting(CMA_FIELDS, "column")
    constants: dict[str, str | int | float | bool | None] = constants_setting("column")
    email: Literal["lookup", "field"] = Field(
        "lookup", description="where cma_eml_key comes from: lookup (the member's primary e-mail key, read once "
                              "per member with GetCustomerByKey and kept) or field (map cma_eml_key or "
                              "cma_eml_address in fields)")
    email_cache_size: int = Field(50_000, ge=0, le=10_000_000, description="members whose e-mail key is kept")
    duplicate_guard: bool = Field(True, description="before inserting, look the batch's ActivityKeys up in "
                                                    "cma_activity_id (one GetQuery a batch) and skip rows already "
                                                    "there: netFORUM has no upsert")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v, strip=False)  # the path is used as given

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict) -> dict:
        return named_fields(v, COLUMN, "a netFORUM column name", ("cma_cst_key",))

    @model_validator(mode="after")
    def _needs(self):
        require_secret(self, "password")
        if self.email == "field" and not {"cma_eml_key", "cma_eml_address"} & (set(self.fields) | set(self.constants)):
            raise ValueError("email: field needs cma_eml_key or cma_eml_address in fields or constants")
        return self
