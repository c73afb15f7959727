"""Where this pod sits in a distributed run: processes, machines, its machine rank, the main address.

Kubernetes tells a pod through its environment, in one of three dialects; the first found wins:

- `TRAIN_NUM_PROCESSES`, `TRAIN_NUM_MACHINES`, `TRAIN_MACHINE_RANK`, `TRAIN_MAIN_PROCESS_IP`,
  `TRAIN_MAIN_PROCESS_PORT` (the job's own, any launcher);
- Kubeflow Trainer's torch runtime: `PET_NNODES`, `PET_NPROC_PER_NODE`, `PET_NODE_RANK`,
  `PET_MASTER_ADDR`, `PET_MASTER_PORT`;
- an Indexed Job (alone or in a JobSet): `JOB_COMPLETION_INDEX` is the machine rank (the Job sets the
  rest as TRAIN_*). Without a main address, pod 0's is taken from this pod's own DNS name when it has
  one under a headless Service: `<job>-<index>.<service>...` gives `<job>-0.<service>...`.

The counts are resolved once, with the accelerate config file beneath them (jobs/config/resolved.py), and
given to `accelerate launch` on its command line. A run that spans machines without a machine rank or a
main address would start N unsynchronised copies of the same training: that is refused (exit 2), as is a
config that silently runs one process.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jobs.errors import ConfigError


@dataclass(frozen=True)
class Topology:
    """What the pod's environment says; None where the accelerate config file (or accelerate's default) stands."""

    num_processes: int | None = None  # across all machines, as `accelerate launch` counts them
    processes_per_node: int | None = None  # Kubeflow's PET_NPROC_PER_NODE
    num_machines: int | None = None
    machine_rank: int | None = None
    main_process_ip: str | None = None
    main_process_port: int | None = None

    def counts(self, accelerate: Mapping[str, Any]) -> tuple[int, int]:
        """(training processes over all machines, machines): the environment's, else the accelerate config's."""
        machines = self.num_machines or int(accelerate.get("num_machines") or 1)
        per_machine = self.processes_per_node and self.processes_per_node * machines
        return self.num_processes or per_machine or int(accelerate.get("num_processes") or 1), machines

    @property
    def is_main_machine(self) -> bool:
        return not self.machine_rank


def _integer(environ: Mapping[str, str], name: str, problems: list[str]) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        problems.append(f"{name}={raw!r} is not a whole number")
        return None
    return int(raw)


def _first(environ: Mapping[str, str], names: tuple[str, ...], problems: list[str]) -> int | None:
    for name in names:
        value = _integer(environ, name, problems)
        if value is not None:
            return value
    return None


def _processes_per_node(environ: Mapping[str, str], problems: list[str]) -> int | None:
    """Kubeflow's PET_NPROC_PER_NODE: a number, or its default "auto", one process per GPU (torchrun's
    meaning); on a machine without GPUs, "auto" leaves the accelerate config's count."""
    if environ.get("PET_NPROC_PER_NODE", "").strip() == "auto":
        from jobs.config.defaults import visible_gpus

        return len(visible_gpus()) or None
    return _first(environ, ("PET_NPROC_PER_NODE",), problems)


def indexed_job_main_address(environ: Mapping[str, str]) -> str | None:
    """Pod 0's DNS name, from this Indexed Job pod's: Kubernetes names the pod `<job>-<index>` (JobSet:
    `<jobset>-<replicated job>-<job index>-<index>`) and, under a headless Service (`subdomain`), writes
    its FQDN `<hostname>.<service>.<namespace>.svc...` into /etc/hosts. None outside that setting."""
    index = environ.get("JOB_COMPLETION_INDEX", "").strip()
    hostname = socket.gethostname()
    if not index.isdigit() or not hostname.endswith(f"-{index}"):
        return None
    fqdn = socket.getfqdn()
    if not fqdn.startswith(hostname + "."):
        return None  # no headless Service: pod 0 has no name to reach it by
    return f"{hostname.removesuffix(index)}0{fqdn[len(hostname) :]}"


def read_topology(job: Any, environ: Mapping[str, str], problems: list[str]) -> Topology:
    """The run's topology from the TRAIN_* settings (`job`), then Kubeflow's PET_*, then an Indexed Job's
    index; problems are appended to `problems`."""
    machines = job.num_machines or _first(environ, ("PET_NNODES",), problems)
    per_node = _processes_per_node(environ, problems)
    rank = job.machine_rank if job.machine_rank is not None else _first(
        environ, ("PET_NODE_RANK", "JOB_COMPLETION_INDEX"), problems)  # fmt: skip
    address = job.main_process_ip or environ.get("PET_MASTER_ADDR") or indexed_job_main_address(environ)
    port = job.main_process_port or _first(environ, ("PET_MASTER_PORT",), problems)
    return Topology(job.num_processes, per_node, machines, rank, address, port)


def check_topology(topology: Topology, accelerate_config: Path | None, settings: Mapping[str, Any]) -> list[str]:
    """What would make the ranks train out of step, or not in parallel at all (`settings`: the accelerate
    config file's)."""
    processes, machines = topology.counts(settings)
    problems = []
    if accelerate_config is None and (machines > 1 or processes > 1):
        problems.append("TRAIN_NUM_PROCESSES/TRAIN_NUM_MACHINES need TRAIN_ACCELERATE_CONFIG (e.g. multi_gpu, "
                        "multi_node, zero3): without it the job trains in one process")  # fmt: skip
    if machines > 1:
        rank = topology.machine_rank if topology.machine_rank is not None else settings.get("machine_rank")
        address = topology.main_process_ip or settings.get("main_process_ip")
        if rank is None or not address:
            problems.append(f"a run over {machines} machines needs this machine's rank (TRAIN_MACHINE_RANK, "
                            "PET_NODE_RANK or JOB_COMPLETION_INDEX) and the main machine's address "
                            "(TRAIN_MAIN_PROCESS_IP or PET_MASTER_ADDR); without them each machine would train "
                            "its own unsynchronised copy")  # fmt: skip
        elif int(rank) >= machines:
            problems.append(f"machine rank {rank} is not below TRAIN_NUM_MACHINES={machines}")
        if processes % machines:
            problems.append(f"TRAIN_NUM_PROCESSES={processes} (all machines) is not a multiple of {machines} machines")
    if processes > 1 and (settings.get("distributed_type") == "MULTI_CPU" or settings.get("use_cpu")):
        problems.append(f"{accelerate_config}: MULTI_CPU or use_cpu with {processes} processes makes `accelerate "
                        "launch` run one process (or want mpirun); use multi_cpu.yaml (MULTI_GPU over gloo, with "
                        "the trainer's use_cpu)")  # fmt: skip
    return problems


_COUNTS = ("num_processes", "num_machines", "machine_rank", "main_process_port")


def accelerate_settings(path: Path | None) -> dict[str, Any]:
    """The accelerate config file's settings ({} without one); ConfigError, naming the file, for one that is not
    a YAML mapping or whose counts are not whole numbers."""
    if path is None:
        return {}
    fix = f"TRAIN_ACCELERATE_CONFIG={path}: fix it, or name one of accelerate_configs/"
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{fix} (it does not read as YAML: {error})".replace("\n", " ")) from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{fix} (it is not a mapping of accelerate's settings)")
    wrong = [f"{key}: {loaded[key]!r}" for key in _COUNTS if key in loaded and not isinstance(loaded[key], int)]
    if wrong:
        raise ConfigError(f"{fix} (not whole numbers: {', '.join(wrong)})")
    return loaded


def zero_settings(accelerate: Mapping[str, Any]) -> tuple[int, bool]:
    """ZeRO stage and optimizer offload from an accelerate config's deepspeed section, or from the DeepSpeed
    JSON file it names (ConfigError for one that does not read)."""
    if accelerate.get("distributed_type") != "DEEPSPEED":
        return 0, False
    section = accelerate.get("deepspeed_config") or {}
    source = section.get("deepspeed_config_file")
    try:
        if source:
            zero = json.loads(Path(source).read_text(encoding="utf-8")).get("zero_optimization", {})
            offload = (zero.get("offload_optimizer") or {}).get("device", "none")
            return int(zero.get("stage", 0)), offload not in ("none", None)
        return int(section.get("zero_stage", 0)), section.get("offload_optimizer_device", "none") not in ("none", None)
    except (OSError, ValueError, TypeError, AttributeError) as error:
        where = f"deepspeed_config_file={source}" if source else "deepspeed_config"
        raise ConfigError(f"the accelerate config's {where} does not read as DeepSpeed settings ({error}); fix "
                          "it") from None  # fmt: skip
