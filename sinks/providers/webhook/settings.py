"""Settings of the webhook provider."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from sinks.settings import HttpSettings, SecretHeaders, secret_ref


class WebhookSettings(SecretHeaders, HttpSettings):
    max_batch: ClassVar[int] = 1000

    url: str = Field(description="where the batches are POSTed: an http:// or https:// URL", max_length=2048)
    hmac_secret_env: str | None = secret_ref("env", "the HMAC-SHA256 signing secret")
    hmac_secret_file: str | None = secret_ref("file", "the HMAC-SHA256 signing secret")
    details_format: Literal["xml", "json"] = Field("xml", description="how the activity's details are sent")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers that are not secret")
    headers_env: str | None = secret_ref("env", "extra secret headers, one 'Name: value' per line")
    headers_file: str | None = secret_ref("file", "extra secret headers, one 'Name: value' per line")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return v
