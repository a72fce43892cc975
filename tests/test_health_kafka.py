"""Each worker's HTTP port: liveness, readiness (group joined, config loaded, sink started) and the
metrics of its own role only, against a real broker."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from conftest import publish_config_file, worker_env

from activity_sync.devtools.broker import free_port


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


async def wait_for(port: int, path: str, status: int, timeout: float = 60) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = (0, "")
    while loop.time() < deadline:
        last = await asyncio.to_thread(get, port, path)
        if last[0] == status:
            return last[1]
        await asyncio.sleep(0.3)
    raise AssertionError(f"{path} on {port}: {last} after {timeout}s, wanted {status}")


async def test_liveness_readiness_and_metrics_of_each_role(settings, tmp_path, spawn):
    await publish_config_file(settings, settings.config_path)
    stream_port, sink_port, ghost_port = free_port(), free_port(), free_port()
    spawn(["-m", "streams.app"], worker_env(settings, tmp_path, ACTIVITY_SYNC_METRICS_PORT=stream_port), "stream")
    sink = spawn(["-m", "sinks.worker", "history"], worker_env(settings, tmp_path, ACTIVITY_SYNC_METRICS_PORT=sink_port,
                                                              ACTIVITY_SYNC_LOG_FORMAT="json"), "sink")
    # an endpoint the config does not have: the worker joins and loads the config but starts no sink
    spawn(["-m", "sinks.worker", "ghost"], worker_env(settings, tmp_path, ACTIVITY_SYNC_METRICS_PORT=ghost_port),
          "ghost")
    stream_ready = json.loads(await wait_for(stream_port, "/readyz", 200))
    sink_ready = json.loads(await wait_for(sink_port, "/readyz", 200))
    assert stream_ready == {"role": "stream", "ready": True,
                            "checks": {"consumer_group_joined": True, "config_loaded": True}}
    assert sink_ready["checks"] == {"consumer_group_joined": True, "config_loaded": True, "sink_started": True}
    for port in (stream_port, sink_port):
        status, body = await asyncio.to_thread(get, port, "/healthz")
        assert status == 200 and json.loads(body)["alive"] is True
    await wait_for(ghost_port, "/healthz", 200)
    ghost = json.loads(await wait_for(ghost_port, "/readyz", 503))
    assert ghost["ready"] is False and ghost["checks"]["sink_started"] is False and ghost["checks"]["config_loaded"]
    _, stream_metrics = await asyncio.to_thread(get, stream_port, "/metrics")
    _, sink_metrics = await asyncio.to_thread(get, sink_port, "/metrics")
    assert "activity_sync_events_in_total" in stream_metrics and "activity_sync_sink_" not in stream_metrics
    assert "activity_sync_sink_" in sink_metrics and "activity_sync_events_in_total" not in sink_metrics
    assert "process_resident_memory_bytes" in sink_metrics
    assert (await asyncio.to_thread(get, sink_port, "/nope"))[0] == 404
    # ACTIVITY_SYNC_LOG_FORMAT=json: every line the sink worker wrote (Faust's and aiokafka's too) is one object
    lines = [ln for ln in sink.output().splitlines() if ln.strip()]
    parsed = [json.loads(ln) for ln in lines]
    assert len(parsed) >= 3 and {p["role"] for p in parsed} == {"sink"} and {p["endpoint"] for p in parsed} == {"history"}
    assert any(p["logger"].startswith(("faust", "mode")) for p in parsed)
