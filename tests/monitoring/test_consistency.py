"""Every PromQL expression in the alert rules and the dashboard parses, and names only metrics the
exporter really exports (or the named kube-state-metrics / `up` series)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from dev.testing import ROOT
from jobs.monitor.gpu import GpuCollector
from jobs.monitor.system import JobProcessCollector
from tests.support.nvml import FakeNvml
from tests.support.rules import alerts, promtool

DASHBOARD = ROOT / "k8s" / "monitoring" / "grafana-dashboard.json"
EXTERNAL = {"up", "kube_job_failed", "kube_job_labels", "kube_job_status_active"}
# Exported metrics the dashboard deliberately shows no panel for, and why.
NOT_ON_THE_DASHBOARD: dict[str, str] = {
    "trainjob_save_steps": "a setting (steps between checkpoints) that TrainJobCheckpointStale reads",
}
KEYWORDS = {"and", "or", "unless", "by", "on", "without", "ignoring", "group_left", "group_right", "offset", "bool"}

# Touch every metric JobMetrics defines, in a fresh process, and print the sample names it exports.
WRITER = """
import sys
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from jobs.monitor.writer import job_metrics
metrics = job_metrics()
for value in vars(metrics).values():
    for metric in value.values() if isinstance(value, dict) else [value]:
        if isinstance(metric, (Gauge, Counter)):
            child = metric.labels(*["x"] * len(metric._labelnames)) if metric._labelnames else metric
            child.inc() if isinstance(metric, Counter) else child.set(1)
registry = CollectorRegistry()
MultiProcessCollector(registry)
sys.stdout.write(generate_latest(registry).decode())
"""


def _sample_names(exposition: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in exposition.splitlines() if line and line[0] != "#"}


def exported_names(tmp_path: Path) -> set[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    job = subprocess.run([sys.executable, "-c", WRITER], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    registry = CollectorRegistry()
    registry.register(GpuCollector(FakeNvml()))  # the mock stands in for NVML (no GPU here)
    registry.register(JobProcessCollector(os.getpid()))
    return _sample_names(job.stdout) | _sample_names(generate_latest(registry).decode())


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return queries + [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


def expressions() -> list[str]:
    return [rule["expr"] for rule in alerts()] + dashboard_expressions()


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"[^"]*"', "", expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"label_values\(([^,)]*),[^)]*\)", r"\1", text)  # Grafana's variable helper
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text))
    return {n for n in names if n not in KEYWORDS and not re.fullmatch(r"\d+[smhdwy]|e\d+", n)}


def test_every_expression_uses_exported_metrics(tmp_path: Path) -> None:
    known = exported_names(tmp_path) | EXTERNAL
    for expr in expressions():
        unknown = metric_names(expr) - known
        assert not unknown, f"{unknown} in: {expr}"


def test_every_exported_metric_is_on_the_dashboard_or_listed_as_absent(tmp_path: Path) -> None:
    shown = set().union(*(metric_names(expr) for expr in dashboard_expressions()))
    missing = exported_names(tmp_path) - shown - set(NOT_ON_THE_DASHBOARD)
    assert not missing, f"exported but on no dashboard panel: {sorted(missing)}; add a panel or list it, with why"
    assert set(NOT_ON_THE_DASHBOARD) <= exported_names(tmp_path) - shown


def test_every_expression_parses(tmp_path: Path) -> None:
    exprs = [re.sub(r"label_values\(([^,)]*)(,[^)]*)?\)", r"\1", e).replace("$namespace", "ns").replace("$job", ".*")
             for e in expressions()]  # fmt: skip
    rules = {"groups": [{"name": "parse", "rules": [{"record": f"check:{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "exprs.yaml").write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool(), "check", "rules", str(tmp_path / "exprs.yaml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
