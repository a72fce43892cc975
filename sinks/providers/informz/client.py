"""A client of the Informz partner API (:mod:`.aapi`): the push provider's writes and the
reconciliation's reads."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from .aapi import (GRID_MAX_ROWS, SOAP_ACTION, AapiError, bulk_upload_request, credentials, envelope, grid_request,
                   grid_rows, subscribe_request, unwrap)


class PartnerClient:
    def __init__(self, url: str, brand_id: str, brand: str, user: str, password: str,
                 session: aiohttp.ClientSession | None = None, timeout_s: float = 30.0) -> None:
        self.url, self.creds = url, credentials(brand_id, brand, user, password)
        self._session, self._own = session, session is None
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def __aenter__(self):
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, document: str):
        """One ``PostInformzMessage``: the answer's document; an ``InformzServiceFault`` raises :class:`AapiError`
        (with ``status``), as does an answer that is not the operation's."""
        async with self._session.post(self.url, data=envelope(document).encode(), headers={
                "Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{SOAP_ACTION}"'}) as resp:
            text = await resp.text()
            status = resp.status
        try:
            return unwrap(text, "PostInformzMessageResult")
        except AapiError as exc:
            exc.status = status
            raise

    async def grid(self, grid: str, fields: list[str], conditions=()) -> list[dict]:
        """Every row of a grid, 1,000 a request."""
        rows: list[dict] = []
        start = 1
        while True:
            page = grid_rows(await self.post(grid_request(self.creds, grid, fields, conditions, start, GRID_MAX_ROWS)))
            rows += page
            if len(page) < GRID_MAX_ROWS:
                return rows
            start += GRID_MAX_ROWS

    async def subscribe(self, interest: str, action: str, subscribers: list[dict]) -> tuple[int, list]:
        doc = await self.post(subscribe_request(self.creds, interest, action, subscribers))
        ok = int(doc.findtext(".//Success") or "0")
        failed = [{"email": s.findtext("Email"), "reason": s.findtext("Reason")}
                  for s in doc.iterfind(".//Failed/Subscriber")]
        return ok, failed

    async def bulk_upload(self, interest: str, action: str, subscribers: list[dict]) -> str:
        doc = await self.post(bulk_upload_request(self.creds, interest, action, subscribers))
        uid = doc.findtext(".//UploadID")
        if not uid:
            raise AapiError("NoUploadID", "BulkUpload answered without an UploadID")
        return uid

    async def upload(self, upload_id: str) -> dict | None:
        rows = await self.grid("upload_history", ["upload_id", "status", "total_rows", "succeeded", "failed"],
                               [("upload_id", "EQ", upload_id)])
        return rows[0] if rows else None

    async def wait_upload(self, upload_id: str, timeout_s: float = 600.0, poll_s: float = 0.25) -> dict:
        """Poll ``upload_history`` until the upload is Complete or Failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            row = await self.upload(upload_id)
            if row and row.get("status") in ("Complete", "Failed"):
                return row
            if time.monotonic() > deadline:
                raise AapiError("UploadTimeout", f"upload {upload_id} not done within {timeout_s:.0f}s",
                                (row or {}).get("status", "unknown"))
            await asyncio.sleep(poll_s)
