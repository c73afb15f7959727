"""The Grafana dashboard: current panel types, the promised variables and panels, shipped as a ConfigMap."""

from __future__ import annotations

import json

import yaml

from tests.helpers import ROOT

DASHBOARD = ROOT / "k8s" / "monitoring" / "grafana-dashboard.json"
CONFIGMAP = ROOT / "k8s" / "monitoring" / "grafana-dashboard-configmap.yaml"


def test_the_configmap_ships_exactly_the_dashboard() -> None:
    configmap = yaml.safe_load(CONFIGMAP.read_text())
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["trainjob.json"]) == json.loads(DASHBOARD.read_text())


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
                   "time() - trainjob_last_checkpoint_timestamp_seconds"):  # fmt: skip
        assert needed in exprs, needed
    assert all(t["expr"].count("$namespace") for p in panels for t in p["targets"])
