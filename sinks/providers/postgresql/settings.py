"""Settings of the PostgreSQL activity-table provider."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, field_validator

from sinks.settings import EndpointSettings, secret_ref

IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresSettings(EndpointSettings):
    max_batch: ClassVar[int] = 5000

    batch_size: int = Field(1000, ge=1, description="rows per upsert statement")
    dsn: str = Field(description="postgresql://user@host:port/database (no password: see password_env/_file); "
                                 "libpq parameters such as ?sslmode=require are kept", max_length=2048)
    password_env: str | None = secret_ref("env", "the database user's password")
    password_file: str | None = secret_ref("file", "the database user's password")
    schema_name: str = Field("public", description="the schema of the table")
    table: str = Field("community_activities", description="the activity table")
    create_table: bool = Field(True, description="create the table and its indexes at start if they are missing "
                                                 "(else run `activity-sync postgres-migrate` once)")
    pool_size: int = Field(4, ge=1, le=100, description="connections at most for one sink worker")

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, v: str) -> str:
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("a postgresql:// URL")
        return v

    @field_validator("schema_name", "table")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not IDENT.match(v):
            raise ValueError(f"{v!r}: lower-case letters, digits and _ (a plain SQL identifier)")
        return v
