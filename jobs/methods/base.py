"""What a training method is, in the vocabulary of TRL's docs (cheap: no TRL import).

A method declares its TRL config and trainer classes (by name, so that `--help`, config parsing and
data validation never import TRL), the dataset kinds it trains on, the metrics it logs beyond the
shared ones and a check of its own settings. Its built-in demo lives in the development package
(dev/demo.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# TRL's dataset types (docs: "Dataset formats and types"). Each schema in schemas/ declares one of them.
LANGUAGE_MODELING = "language_modeling"
PROMPT_COMPLETION = "prompt_completion"
PREFERENCE = "preference"  # explicit or implicit prompt
UNPAIRED_PREFERENCE = "unpaired_preference"


@dataclass(frozen=True)
class MethodMetric:
    """A value TRL logs for this method only, exported as `trainjob_<method>_<name>`."""

    log_key: str
    name: str
    help: str


def no_checks(settings: Mapping[str, Any]) -> list[str]:
    return []


def as_validated(dataset: Any, seed: int) -> Any:
    return dataset


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    trl_config: str  # class names in `trl`, imported only by the training processes
    trl_trainer: str
    dataset_kinds: tuple[str, ...]
    metrics: tuple[MethodMetric, ...] = ()
    # For the memory estimate (jobs/estimate/formula.py): sequences per example in the forward pass that trains
    # (DPO concatenates chosen and rejected), and whether a reference model scores them too.
    sequences_per_example: int = 1
    reference_model: bool = False
    # Whether batches go without padding unless the user chooses (jobs/train/batching.py): a step the same as a
    # padded one, where the trainer's loss is a mean over the batch's label tokens.
    padding_free_by_default: bool = False
    # Problems with this method's training settings that TRL would only raise once the model is loaded. It
    # gets every field of the method's TRL config by name: TRL's default, the job's, or the user's.
    check_settings: Callable[[Mapping[str, Any]], list[str]] = no_checks
    # What the method's trainer needs done to the validated records first (a `datasets.Dataset`, the
    # run's seed), in the training process.
    prepare_dataset: Callable[[Any, int], Any] = as_validated

    def config_class(self) -> type[Any]:
        return getattr(importlib.import_module("trl"), self.trl_config)

    def trainer_class(self) -> type[Any]:
        return getattr(importlib.import_module("trl"), self.trl_trainer)
