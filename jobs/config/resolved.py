"""The run, worked out once in the parent and handed to every training process as it is.

`resolve(config)` turns the parsed TRAIN_* settings (jobs/config/settings.py) into one frozen description
of the run: the device the parent's probe saw (NVML, no torch), the training processes and machines, the
accelerate config's distributed type and ZeRO stage, the settings TRL's config and ModelConfig receive
(the job's defaults for that device beneath the user's), and the run id and output layout. Preflight
adds what it found: whether there is evaluation data, and the memory estimate.

The training processes receive it in process, or as JSON in TRAINJOB_RUN under `accelerate launch`, and
work none of it out again: no process count, TRL default or accelerate YAML is read twice, and a training
process only checks that torch sees the device the parent's probe saw (jobs/train/trainer.py).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jobs.config.catalog import load_catalog
from jobs.config.defaults import DATA_DEPENDENT, Device, model_settings, training_settings
from jobs.config.settings import JobConfig, JobSettings
from jobs.config.topology import Topology, accelerate_settings, check_topology, zero_settings
from jobs.errors import ConfigError
from jobs.layout import OutputLayout
from jobs.methods import METHODS

# The environment variable that carries the run to the processes `accelerate launch` starts.
RUN_VARIABLE = "TRAINJOB_RUN"


@dataclass(frozen=True)
class MemoryFigures:
    """Preflight's memory estimate of one training process, for the comparison with the measured peak at the
    end of training and for the report of an out-of-memory failure."""

    estimate_bytes: int
    breakdown: tuple[str, ...]
    cheapest_fix: str


@dataclass(frozen=True)
class ResolvedRun:
    """Everything a training process trains with, resolved once."""

    config: JobConfig
    device: Device  # what the parent's probe saw
    processes: int  # training processes over all machines
    machines: int
    distributed_type: str | None  # the accelerate config's (MULTI_GPU, DEEPSPEED, ...); None: one process, no launcher
    zero_stage: int
    offload_optimizer: bool
    training: dict[str, Any]  # what the method's TRL config receives: the job's defaults, the user's on top
    model: dict[str, Any]  # what TRL's ModelConfig receives, likewise
    has_eval: bool = False  # set by preflight once the data is validated
    memory: MemoryFigures | None = None  # set by preflight's memory check
    loading_seconds: float = 0.0  # set by preflight: how long the time before the first step may take

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def job(self) -> JobSettings:
        return self.config.job

    @property
    def layout(self) -> OutputLayout:
        return self.config.layout

    @property
    def processes_per_machine(self) -> int:
        return max(1, self.processes // self.machines)

    @property
    def assistant_only_loss(self) -> bool:
        """Whether conversational SFT data trains on the assistant's tokens only (jobs/config/defaults.py)."""
        default = DATA_DEPENDENT["assistant_only_loss"][0]
        return self.method == "sft" and bool(self.config.training.get("assistant_only_loss", default))

    def setting(self, name: str) -> Any:
        """A training setting as the run trains with it: the job's or the user's, else TRL's default."""
        if name in self.training:
            return self.training[name]
        return trl_defaults(self.method).get(name)

    def model_setting(self, name: str) -> Any:
        """A ModelConfig setting as the model loads with it: the job's or the user's, else TRL's default."""
        if name in self.model:
            return self.model[name]
        return load_catalog()["model"].get(name, {}).get("default")

    def with_evaluation(self, has_eval: bool) -> ResolvedRun:
        """The run once preflight knows whether there is evaluation data (it evaluates as often as it saves)."""
        training = training_settings(self.device, has_eval, self.config.training)
        return dataclasses.replace(self, has_eval=has_eval, training=training)

    def with_loading(self, seconds: float) -> ResolvedRun:
        """The run once preflight knows how long loading may take (jobs/estimate/loading.py): the process
        group's timeout covers it, unless the user set one."""
        from jobs.estimate.loading import process_group_timeout

        training = dict(self.training)
        if "ddp_timeout" not in self.config.training:
            training["ddp_timeout"] = process_group_timeout(seconds)
        return dataclasses.replace(self, loading_seconds=seconds, training=training)

    def to_json(self) -> str:
        """The run for the processes `accelerate launch` starts (secrets included, as in their environment)."""
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> ResolvedRun:
        value = json.loads(text)
        config = value.pop("config")
        accelerate_config = config["accelerate_config"]
        job_config = JobConfig(
            job=JobSettings(**config["job"]),
            model=config["model"],
            training=config["training"],
            run_id=config["run_id"],
            accelerate_config=Path(accelerate_config) if accelerate_config else None,
            ignored_service_links=tuple(config["ignored_service_links"]),
            topology=Topology(**config["topology"]),
        )
        memory = value.pop("memory")
        return cls(
            config=job_config,
            device=Device(**value.pop("device")),
            memory=MemoryFigures(memory["estimate_bytes"], tuple(memory["breakdown"]), memory["cheapest_fix"])
            if memory
            else None,
            **value,
        )


@cache
def trl_defaults(method: str) -> dict[str, Any]:
    """TRL's defaults for the method's config, from the catalog (its own fields over the shared ones)."""
    catalog = load_catalog()
    return {name: spec.get("default") for group in ("training", method) for name, spec in catalog[group].items()}


def resolve(config: JobConfig, device: Device | None = None) -> ResolvedRun:
    """The run for this machine: its device (probed once, here, unless given), processes, ZeRO stage and the
    settings with the job's defaults; ConfigError for a topology that would train out of step, or settings
    the method refuses."""
    device = device or Device.probe_cheaply()
    accelerate = accelerate_settings(config.accelerate_config)  # the YAML, read once
    problems = check_topology(config.topology, config.accelerate_config, accelerate)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with the distributed settings", problems)
    processes, machines = config.topology.counts(accelerate)
    zero_stage, offload = zero_settings(accelerate)
    defaults = trl_defaults(config.method)
    training = training_settings(device, False, config.training)
    problems = METHODS[config.method].check_settings({**defaults, **training})
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with the TRAIN_* variables", problems)
    return ResolvedRun(
        config=config,
        device=device,
        processes=processes,  # 1 without an accelerate config: check_topology refused more
        machines=machines,
        distributed_type=accelerate.get("distributed_type"),
        zero_stage=zero_stage,
        offload_optimizer=offload,
        training=training,
        model=model_settings(device, config.model),
    )
