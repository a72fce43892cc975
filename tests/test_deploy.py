"""deploy/: the Kubernetes manifests validated against the Kubernetes API's own models (strictly:
an unknown or misspelt field fails, a required one missing fails), and the Grafana dashboard and
Prometheus alert rules name only metrics the workers export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes.client as k8s
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
MONITORING = ROOT / "deploy" / "monitoring"
KINDS = {("apps/v1", "Deployment"): "V1Deployment", ("batch/v1", "Job"): "V1Job", ("v1", "ConfigMap"): "V1ConfigMap",
         ("v1", "Namespace"): "V1Namespace", ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
         ("v1", "Secret"): "V1Secret", ("v1", "Service"): "V1Service"}
PRIMITIVES = {"str", "int", "bool", "float", "object", "datetime", "date"}


def check(value, type_name: str, where: str) -> list[str]:
    """Problems of ``value`` as the Kubernetes model ``type_name`` (the python client's openapi_types)."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: a list"]
        return [p for i, v in enumerate(value) for p in check(v, type_name[5:-1], f"{where}[{i}]")]
    if type_name.startswith("dict("):
        inner = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(value, dict):
            return [f"{where}: a mapping"]
        return [p for k, v in value.items() for p in check(v, inner, f"{where}.{k}")]
    if type_name in PRIMITIVES:
        ok = {"str": isinstance(value, str), "int": isinstance(value, int) and not isinstance(value, bool),
              "bool": isinstance(value, bool), "float": isinstance(value, (int, float))}.get(type_name, True)
        return [] if ok else [f"{where}: {type_name}, not {value!r}"]
    model = getattr(k8s, type_name)
    if not isinstance(value, dict):
        return [f"{where}: a {type_name} mapping"]
    by_json = {v: k for k, v in model.attribute_map.items()}
    problems = [f"{where}.{k}: not a field of {type_name}" for k in value if k not in by_json]
    for k, v in value.items():
        if k in by_json:
            problems += check(v, model.openapi_types[by_json[k]], f"{where}.{k}")
    try:  # the client's own validation: required fields and enumerations
        model(**{by_json[k]: v for k, v in value.items() if k in by_json})
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")
    return problems


def documents() -> list[tuple[str, dict]]:
    kustom = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert sorted(kustom["resources"]) == sorted(p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")
    return [(name, doc) for name in kustom["resources"] for doc in yaml.safe_load_all((KUBE / name).read_text()) if doc]


def test_every_manifest_is_valid_for_the_kubernetes_api():
    docs = documents()
    assert docs
    for name, doc in docs:
        kind = KINDS.get((doc.get("apiVersion"), doc.get("kind")))
        assert kind, f"{name}: unknown apiVersion/kind {doc.get('apiVersion')} {doc.get('kind')}"
        assert check(doc, kind, f"{name}:{doc['kind']}") == []


def test_the_validator_catches_mistakes():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "i", "livenessProbe":
                                                          {"httpGet": {"path": "/healthz"}, "periodSecond": 5}}]}}}}
    problems = check(bad, "V1Deployment", "bad")
    assert any("periodSecond: not a field" in p for p in problems)
    assert any("port" in p for p in problems)  # httpGet without its required port


def test_workers_have_probes_resources_scrape_annotations_and_secrets_from_secrets(tmp_path):
    from activity_sync.cli import check_config_file

    docs = documents()
    env_cm = next(d for _, d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "activity-sync-env")
    cfg = next(d for _, d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "activity-sync-config")
    config = yaml.safe_load(cfg["data"]["config.yaml"])
    path = tmp_path / "config.yaml"
    path.write_text(cfg["data"]["config.yaml"])
    check_config_file(path)  # the config the Job loads passes load-config's checks
    assert env_cm["data"]["ACTIVITY_SYNC_METRICS_HOST"] == "0.0.0.0"
    deployments = [d for _, d in docs if d["kind"] == "Deployment"]
    sink_endpoints = set()
    for d in deployments:
        pod = d["spec"]["template"]
        c = pod["spec"]["containers"][0]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for e in c.get("env", []):
            assert "value" not in e or not re.search(r"SECRET|PASSWORD|TOKEN|KEY", e["name"]), e
        if c["args"][0] == "sink" and "--endpoint" in c["args"]:
            sink_endpoints.add(c["args"][c["args"].index("--endpoint") + 1])
        elif c["args"][0] == "sink":  # a pool: the endpoints its selection serves
            from activity_sync.cli import build_parser
            from core.config import endpoint_from_dict
            from sinks.pool import selection_from_args

            chosen = selection_from_args(build_parser().parse_args(c["args"]))
            sink_endpoints |= {e["name"] for e in config["endpoints"] if chosen.serves(endpoint_from_dict(e))}
    assert sink_endpoints == {e["name"] for e in config["endpoints"]}  # every endpoint has its workers
    secret_envs = {e["settings"].get(k) for e in config["endpoints"] for k in e["settings"] if k.endswith("_env")}
    given = {e["name"] for d in deployments for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])
             if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]}
    assert secret_envs <= given  # every secret an endpoint names comes from the Secret


def exported_metrics() -> set[str]:
    from sinks import metrics as sink_metrics
    from sources import metrics as source_metrics
    from streams import metrics as stream_metrics
    from core.health import metric_names

    out = set()
    for name in metric_names(stream_metrics, sink_metrics, source_metrics):
        out |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return out


def named_metrics(text: str) -> set[str]:
    return set(re.findall(r"\b(activity_sync_[a-z_]+)", text))


def test_dashboard_and_alerts_name_only_exported_metrics():
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [dashboard["templating"]["list"][1]["query"]["query"]]
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["groups"][0]["rules"]
    exprs += [r["expr"] for r in rules]
    used = set().union(*(named_metrics(e) for e in exprs))
    assert used and used - exported_metrics() == set()
    wanted = {"activity_sync_deliveries_total", "activity_sync_retry_backlog", "activity_sync_enriched_lag",
              "activity_sync_delivery_pipeline_latency_seconds_bucket", "activity_sync_sink_http_responses_total",
              "activity_sync_rate_limit_wait_seconds_total", "activity_sync_events_in_total",
              "activity_sync_events_dead_lettered_total", "activity_sync_delivery_dead_letters_total"}
    assert wanted <= used
    for r in rules:
        assert r["alert"].startswith("ActivitySync") and r["labels"]["severity"] and r["annotations"]["summary"]
    assert {r["alert"] for r in rules} >= {"ActivitySyncRetryBacklogGrowing", "ActivitySyncDeadLetters",
                                           "ActivitySyncNoDeliveries", "ActivitySyncEndpointThrottled"}


@pytest.mark.parametrize("expr", ["sum(rate(activity_sync_no_such_metric_total[5m]))"])
def test_a_metric_the_workers_do_not_export_is_caught(expr):
    assert named_metrics(expr) - exported_metrics() == {"activity_sync_no_such_metric_total"}


def test_compose_has_a_cli_service_published_worker_ports_and_a_non_root_image_with_a_healthcheck():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["cli"]["entrypoint"] == ["activity-sync"]  # `docker compose run --rm cli produce --seed`
    for name in ("streams", "sinks", "sink-history"):
        assert any(str(p).endswith(":6066") for p in services[name]["ports"]), name
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\S+)", dockerfile, re.M)
    assert user and not user.group(1).startswith(("root", "0:", "0 ")) and user.group(1) != "0"
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", dockerfile, re.M)
    assert "history/*.avsc" in (ROOT / "pyproject.toml").read_text()  # the schema history ships in the image
