"""Where a pod sits in a distributed run, from TRAIN_*, Kubeflow's PET_* or an Indexed Job's index; the
settings that would make ranks train out of step are refused; a two-machine rehearsal on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dev.testing import ROOT, Run, clean_env, free_port, run_entrypoint
from jobs.config.defaults import Device, Gpu
from jobs.config.resolved import resolve
from jobs.config.settings import load_config
from jobs.config.topology import Topology
from jobs.errors import ConfigError
from jobs.launch.launcher import launch_arguments
from jobs.layout import OutputLayout
from tests.support.manifests import container_env, documents, shipped_jobs, trainer_job

BASE = {"TRAIN_METHOD": "sft", "TRAIN_DATA_PATH": "dev/demo_data/sft_messages.jsonl"}
CPU = Device(gpu=False, bf16=False)


def test_an_indexed_job_pod_gets_its_rank_from_the_completion_index() -> None:
    config = load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": "multi_node", "JOB_COMPLETION_INDEX": "1",
                          "TRAIN_NUM_MACHINES": "2", "TRAIN_NUM_PROCESSES": "16",
                          "TRAIN_MAIN_PROCESS_IP": "sft-0.sft"})  # fmt: skip
    assert config.topology == Topology(16, None, 2, 1, "sft-0.sft", None)
    assert launch_arguments(resolve(config, CPU)) == ["--num_processes", "16", "--num_machines", "2",
                                                      "--machine_rank", "1", "--main_process_ip", "sft-0.sft"]  # fmt: skip
    assert not config.topology.is_main_machine


def test_kubeflow_pet_variables_map_onto_accelerate_and_train_wins() -> None:
    pet = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "4", "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "trainjob-node-0-0",
           "PET_MASTER_PORT": "29400"}  # fmt: skip
    config = load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": "multi_gpu", **pet})
    assert config.topology == Topology(None, 4, 2, 1, "trainjob-node-0-0", 29400)
    assert resolve(config, CPU).processes == 8
    overridden = load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": "multi_gpu", **pet, "TRAIN_MAIN_PROCESS_PORT": "1234"})
    assert overridden.topology.main_process_port == 1234


@pytest.mark.parametrize(
    ("hostname", "fqdn", "index", "expected"),
    [
        ("sft-1", "sft-1.sft.team-a.svc.cluster.local", "1", "sft-0.sft.team-a.svc.cluster.local"),
        ("js-node-0-1", "js-node-0-1.js.ns.svc.cluster.local", "1", "js-node-0-0.js.ns.svc.cluster.local"),
        ("sft-1", "sft-1", "1", None),  # no headless Service: no name for pod 0
        ("laptop", "laptop.home", "1", None),  # not an Indexed Job's pod
    ],
)
def test_an_indexed_job_pod_finds_pod_0_by_its_own_dns_name(
    hostname: str, fqdn: str, index: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The names Kubernetes gives an Indexed Job's pod under a headless Service (hostname and /etc/hosts),
    stood in for: this machine is no pod."""
    monkeypatch.setattr("socket.gethostname", lambda: hostname)
    monkeypatch.setattr("socket.getfqdn", lambda: fqdn)
    config = load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": "multi_node", "JOB_COMPLETION_INDEX": index} | (
        {"TRAIN_MAIN_PROCESS_IP": "pod-0"} if expected is None else {}))  # fmt: skip
    assert config.topology.main_process_ip == (expected or "pod-0")


def test_kubeflow_auto_processes_per_node_is_one_per_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """TrainJob's default PET_NPROC_PER_NODE=auto: one process per GPU. On this machine without GPUs the
    accelerate config's count stays (the real NVML probe); a node with 8 is mocked, as no GPU exists here."""
    pet = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "auto", "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "tj-node-0-0.tj"}
    config = load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": "multi_node", **pet})
    assert config.topology.processes_per_node is None and resolve(config, CPU).processes == 16  # multi_node.yaml's
    monkeypatch.setattr("jobs.config.defaults.visible_gpus", lambda: [Gpu("H100", 80 << 30, 9)] * 4)
    with_gpus = load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": "multi_node", **pet})
    assert with_gpus.topology.processes_per_node == 4 and resolve(with_gpus, CPU).processes == 8


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"TRAIN_ACCELERATE_CONFIG": "multi_node"}, "each machine would train its own unsynchronised copy"),
        ({"TRAIN_ACCELERATE_CONFIG": "multi_gpu", "PET_NNODES": "2"}, "unsynchronised copy"),
        ({"TRAIN_NUM_PROCESSES": "2"}, "without it the job trains in one process"),
        ({"TRAIN_ACCELERATE_CONFIG": "multi_node", "TRAIN_MACHINE_RANK": "2", "TRAIN_MAIN_PROCESS_IP": "m"},
         "machine rank 2 is not below TRAIN_NUM_MACHINES=2"),
        ({"TRAIN_ACCELERATE_CONFIG": "multi_node", "TRAIN_MACHINE_RANK": "0", "TRAIN_MAIN_PROCESS_IP": "m",
          "TRAIN_NUM_PROCESSES": "3"}, "is not a multiple of 2 machines"),
        ({"TRAIN_ACCELERATE_CONFIG": "cpu", "TRAIN_NUM_PROCESSES": "2"}, "makes `accelerate launch` run one process"),
        ({"TRAIN_ACCELERATE_CONFIG": "multi_gpu", "JOB_COMPLETION_INDEX": "x"}, "is not a whole number"),
    ],
    ids=["no-rank", "pet-nodes-alone", "no-launcher", "rank-too-high", "uneven", "silent-single-process",
         "bad-index"],
)  # fmt: skip
def test_settings_that_would_train_out_of_step_exit_2(settings: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        resolve(load_config({**BASE, **settings}), CPU)
    assert expected in refused.value.report()
    run = run_entrypoint("validate", **BASE, **settings)
    assert run.returncode == 2 and expected in run.stderr


def _final_loss(run: Run) -> float:
    return run.series("loss")[-1]


MANIFEST = ROOT / "k8s" / "multinode.yaml"


def pod_environment(index: int, **local: str) -> dict[str, str]:
    """The environment of the Indexed Job's pod `index` (k8s/multinode.yaml): its settings and env, the
    JOB_COMPLETION_INDEX Kubernetes adds, and `local` stand-ins."""
    job = next(doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc["kind"] == "Job")
    return {**container_env(job), "JOB_COMPLETION_INDEX": str(index), **local}


def test_the_indexed_job_gives_each_pod_its_machine_rank_and_pod_0_as_the_main_address() -> None:
    job = next(doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc["kind"] == "Job")
    service = next(doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc["kind"] == "Service")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    assert spec["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    for index in range(spec["completions"]):
        topology = load_config(pod_environment(index)).topology
        assert topology.machine_rank == index and topology.num_machines == spec["completions"]
        assert topology.main_process_ip == f"{job['metadata']['name']}-0.{service['metadata']['name']}"


def _group_pods() -> list[tuple[str, dict[str, Any], str, str]]:
    """(name, Job, the variable that carries a pod's index, the address of pod 0) for the JobSet and the
    TrainJob: JobSet names pods <jobset>-<replicated job>-<job index>-<pod index>.<subdomain>; Kubeflow
    points PET_MASTER_ADDR at <trainjob>-node-0-0.<trainjob>."""
    pods = []
    for name, jobset in documents("JobSet"):
        [replicated] = jobset["spec"]["replicatedJobs"]
        subdomain = jobset["spec"].get("network", {}).get("subdomain", jobset["metadata"]["name"])
        job = next(job for job_name, job in shipped_jobs() if job_name == f"{name}:{replicated['name']}")
        pods.append(
            (name, job, "JOB_COMPLETION_INDEX", f"{jobset['metadata']['name']}-{replicated['name']}-0-0.{subdomain}")
        )
    for name, trainjob in documents("TrainJob"):
        tj = trainjob["metadata"]["name"]
        pods.append((f"{name}:{tj}", trainer_job(trainjob), "PET_NODE_RANK", f"{tj}-node-0-0.{tj}"))
    return pods


@pytest.mark.parametrize(
    ("name", "job", "index_variable", "main_address"), _group_pods(), ids=[p[0] for p in _group_pods()]
)
def test_jobset_and_trainjob_pods_get_their_machine_rank_and_pod_0_as_the_main_address(
    name: str, job: dict[str, Any], index_variable: str, main_address: str
) -> None:
    nodes = job["spec"]["parallelism"]
    assert nodes == job["spec"]["completions"] > 1 and job["spec"].get("completionMode", "Indexed") == "Indexed"
    for index in range(nodes):
        topology = load_config({**container_env(job), index_variable: str(index)}).topology
        assert topology.machine_rank == index and topology.num_machines == nodes
        assert topology.main_process_ip == main_address


@pytest.mark.parametrize(("name", "job"), shipped_jobs(), ids=[name for name, _ in shipped_jobs()])
def test_every_shipped_job_sets_only_real_settings(name: str, job: dict[str, Any]) -> None:
    """The config loader accepts each Job's env as its pod gets it (an Indexed Job's pods get an index)."""
    indexed = {"JOB_COMPLETION_INDEX": "0"} if job["spec"].get("completionMode") == "Indexed" else {}
    config = load_config({**container_env(job), **indexed})
    assert config.method in ("sft", "dpo", "kto")


@pytest.mark.slow
def test_two_machines_on_loopback_train_like_one_machine_with_two_processes(demo_model: str, tmp_path: Path) -> None:
    """Each 'machine' is an entrypoint given its Indexed Job pod's environment (k8s/multinode.yaml) with local
    stand-ins: the demo model and data, loopback for pod 0's DNS name, one CPU process per machine instead
    of 8 GPUs, no exporter (two on one host would collide). They share the output volume as the pods do.
    The result matches one machine running both processes with the same seed and global batch."""
    cache = tmp_path / "cache"
    local = {"TRAIN_MODEL_NAME_OR_PATH": demo_model, "TRAIN_DATA_PATH": "dev/demo_data/sft_messages.jsonl",
             "TRAIN_MAX_STEPS": "20", "TRAIN_LOGGING_STEPS": "5", "TRAIN_LEARNING_RATE": "5e-4",
             "TRAIN_SAVE_STEPS": "10", "TRAIN_METRICS_PORT": "0", "TRAIN_OUTPUT_DIR": str(tmp_path / "two"),
             "TRAIN_MAIN_PROCESS_IP": "127.0.0.1", "TRAIN_MAIN_PROCESS_PORT": str(free_port()),
             "TRAIN_NUM_PROCESSES": "2", "HF_HOME": str(cache / "hf"), "TORCH_EXTENSIONS_DIR": str(cache / "ext"),
             "TRITON_CACHE_DIR": str(cache / "triton")}  # fmt: skip
    # The same settings on one machine with both processes: no machine topology, the two-process config.
    topology = {"JOB_COMPLETION_INDEX", "TRAIN_NUM_MACHINES", "TRAIN_MAIN_PROCESS_IP", "TRAIN_MAIN_PROCESS_PORT"}
    one_machine = {k: v for k, v in pod_environment(0, **local).items() if k not in topology}
    single = run_entrypoint(**{**one_machine, "TRAIN_ACCELERATE_CONFIG": "multi_cpu",
                               "TRAIN_OUTPUT_DIR": str(tmp_path / "one")})  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]

    shared = tmp_path / "two"
    pods = [subprocess.Popen([sys.executable, "entrypoint.py"], cwd=ROOT, env=clean_env(**pod_environment(i, **local)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]  # fmt: skip
    outputs = [pod.communicate(timeout=600) for pod in pods]
    runs = [Run(pod.returncode, out, err) for pod, (out, err) in zip(pods, outputs, strict=True)]
    for index, run in enumerate(runs):
        assert run.returncode == 0, f"machine {index}: " + run.stderr[-3000:]
    assert "--num_machines 2 --machine_rank 1" in runs[1].stderr
    assert (shared / "final" / "adapter_model.safetensors").is_file()  # settings.yaml trains LoRA
    layout = OutputLayout(shared)
    assert [(step, layout.is_complete(path)) for step, path in layout.checkpoints()] == [(10, True), (20, True)]
    assert _final_loss(runs[0]) == pytest.approx(_final_loss(single), rel=1e-5)
