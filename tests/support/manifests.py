"""The Kubernetes Jobs the project ships (k8s/*.yaml), for tests that hold them to the code's contracts."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from dev.testing import ROOT

K8S = ROOT / "k8s"


TRAINER_PORT = 29500  # Kubeflow Trainer's PET_MASTER_PORT


def documents(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every document of `kind` in k8s/ (multi-document files included)."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == kind:
                found.append((path.name, document))
    return found


def shipped_jobs() -> list[tuple[str, dict[str, Any]]]:
    """(name, Job) for every Job in k8s/, every JobSet's child Job template as the Job it stamps out, and
    the training Job each Kubeflow TrainJob stamps out of its runtime."""
    found = documents("Job")
    for name, jobset in documents("JobSet"):
        for replicated in jobset["spec"]["replicatedJobs"]:
            job_name = f"{jobset['metadata']['name']}-{replicated['name']}"
            job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job_name}, **replicated["template"]}
            found.append((f"{name}:{replicated['name']}", job))
    found += [
        (f"{name}:{trainjob['metadata']['name']}", trainer_job(trainjob)) for name, trainjob in documents("TrainJob")
    ]
    return found


def trainer_job(trainjob: dict[str, Any]) -> dict[str, Any]:
    """The training Job Kubeflow Trainer (v2.3, the torch plugin) makes for `trainjob` from its runtime's
    "node" replicated Job: spec.trainer applied to the container "node", one indexed pod per node, and the
    PET_* variables (the rank from the pod's completion-index annotation, like JOB_COMPLETION_INDEX)."""
    ref = trainjob["spec"]["runtimeRef"]
    runtime = next(doc for _, doc in documents(ref.get("kind", "ClusterTrainingRuntime"))
                   if doc["metadata"]["name"] == ref["name"])  # fmt: skip
    replicated = next(r for r in runtime["spec"]["template"]["spec"]["replicatedJobs"] if r["name"] == "node")
    name, trainer = trainjob["metadata"]["name"], trainjob["spec"]["trainer"]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{name}-node-0"},
        **copy.deepcopy(replicated["template"]),
    }
    nodes = trainer.get("numNodes", runtime["spec"]["mlPolicy"].get("numNodes", 1))
    job["spec"].update(completionMode="Indexed", completions=nodes, parallelism=nodes)
    container = next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "node")
    pet = {"PET_NNODES": str(nodes), "PET_NPROC_PER_NODE": str(trainer.get("numProcPerNode", "auto")),
           "PET_MASTER_ADDR": f"{name}-node-0-0.{name}", "PET_MASTER_PORT": str(TRAINER_PORT)}  # fmt: skip
    rank = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    container["env"] = [*container.get("env", []), *trainer.get("env", []),
                        *({"name": k, "value": v} for k, v in pet.items()), {"name": "PET_NODE_RANK", "valueFrom": rank}]  # fmt: skip
    container.update({k: v for k, v in (("image", trainer.get("image")), ("command", trainer.get("command"))) if v})
    return job


def config_maps() -> dict[str, dict[str, str]]:
    """The data of every ConfigMap in k8s/, by name."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "ConfigMap":
                found[document["metadata"]["name"]] = document.get("data", {})
    return found


def container_env(job: dict[str, Any]) -> dict[str, str]:
    """The training container's environment as the pod gets it, before Kubernetes adds its own: the shipped
    ConfigMaps it reads (envFrom), then its literal env values (Secrets left out)."""
    container = next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] in ("train", "node"))
    maps = config_maps()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    env.update({item["name"]: item["value"] for item in container.get("env", []) if "value" in item})
    return env
