"""Settings of the Informz provider (partner API, SOAP)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from sinks.settings import HttpSettings, http_url, require_secret, secret_ref


class InformzSettings(HttpSettings):
    max_batch: ClassVar[int] = 5000

    url: str = Field("https://partner.informz.net/aapi/InformzService.svc", max_length=2048,
                     description="the partner API (US: partner.informz.net, Canada: partner.informz.ca, test: "
                                 "partnertest.informz.net)")
    brand_id: str = Field(..., min_length=1, max_length=20, description="the brand's id (<Brand id=...>)")
    brand: str = Field(..., min_length=1, max_length=200, description="the brand's name")
    username: str = Field(..., min_length=1, max_length=200, description="the API user")
    password_env: str | None = secret_ref("env", "the API user's password")
    password_file: str | None = secret_ref("file", "the API user's password")
    bulk_above: int = Field(1000, ge=1, le=1000, description="changes of one target group above this many go "
                                                             "by BulkUpload (asynchronous) rather than Subscribe")
    upload_timeout_s: float = Field(600.0, gt=0, le=86400, description="how long to wait for a BulkUpload to "
                                                                       "complete (polling upload_history)")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return http_url(v)

    @model_validator(mode="after")
    def _needs(self):
        require_secret(self, "password")
        return self
