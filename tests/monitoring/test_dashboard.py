"""The Grafana dashboard: current panel types, the promised variables and panels, shipped as a ConfigMap."""

from __future__ import annotations

import json

import yaml

from dev.testing import ROOT

MONITORING = ROOT / "k8s" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
KUSTOMIZATION = MONITORING / "kustomization.yaml"


def test_kustomize_ships_exactly_the_dashboard_file_as_a_configmap() -> None:
    """`kubectl apply -k k8s/monitoring` generates the ConfigMap from the one JSON file (no second copy)."""
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert sorted(kustomization["resources"]) == ["podmonitor.yaml", "prometheusrule.yaml"]
    assert all((MONITORING / name).is_file() for name in kustomization["resources"])
    [generator] = kustomization["configMapGenerator"]
    assert generator["name"] == "trainjob-dashboard"
    assert generator["files"] == ["trainjob.json=grafana-dashboard.json"]  # key = file, exactly that file
    assert "literals" not in generator and "envs" not in generator
    assert generator["options"]["labels"]["grafana_dashboard"] == "1"  # what Grafana's sidecar selects on
    assert generator["options"]["disableNameSuffixHash"] is True  # a stable name for the sidecar and for kubectl
    json.loads(DASHBOARD.read_text())  # the generated ConfigMap carries valid JSON
    shipped = {p.name for p in MONITORING.iterdir()}
    assert shipped == {"kustomization.yaml", "grafana-dashboard.json", *kustomization["resources"]}


def test_variables_and_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "namespace", "job"]
    panels = dashboard["panels"]
    assert not [p for p in panels if p["type"] == "graph"]  # deprecated: timeseries instead
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needed in ("trainjob_phase", "trainjob_progress_ratio", "trainjob_eta_seconds", "trainjob_loss",
                   "trainjob_eval_loss", "trainjob_learning_rate", "trainjob_grad_norm", "rate(trainjob_tokens_total",
                   "trainjob_dpo_reward_margin", "trainjob_dpo_reward_accuracy", "trainjob_gpu_utilization_ratio",
                   "trainjob_gpu_memory_used_bytes", "trainjob_gpu_temperature_celsius", "trainjob_gpu_power_watts",
                   "time() - trainjob_last_checkpoint_timestamp_seconds", "trainjob_samples_stopped_ratio"):  # fmt: skip
        assert needed in exprs, needed
    assert all(t["expr"].count("$namespace") for p in panels for t in p["targets"])
