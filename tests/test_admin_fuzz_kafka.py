"""schemathesis against the admin API's OpenAPI document, with a real broker behind it: no 5xx and
no response that contradicts the schema, for every operation, with valid and invalid input."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from activity_sync.admin.api import serve
from activity_sync.admin.keys import ApiKey

KEY = ApiKey("fuzz", "admin", ("*",), "fuzz-key-0123456789abcdef")


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(settings, tmp_path):
    runner, state, port = await serve(settings, "127.0.0.1", 0, [KEY])
    report = tmp_path / "schemathesis.txt"
    try:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "schemathesis"), "run", f"http://127.0.0.1:{port}/api/v1/openapi.json",
            "--url", f"http://127.0.0.1:{port}",
            "-H", f"Authorization: Bearer {KEY.secret}",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                        "response_headers_conformance,response_schema_conformance",
            "--max-examples", "25", "--generation-deterministic", "--request-timeout", "20",
            "--phases", "examples,coverage,fuzzing",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=dict(os.environ, NO_COLOR="1", SCHEMATHESIS_TELEMETRY="false"))
        out, _ = await asyncio.wait_for(proc.communicate(), 900)
    finally:
        await runner.cleanup()
        await state.stop()
    text = out.decode(errors="replace")
    report.write_text(text)
    assert proc.returncode == 0, text[-6000:]
    assert "passed" in text.lower()
