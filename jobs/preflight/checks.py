"""Checks of the machine before any model loads: the output volume is writable and has room for two
checkpoints, and the model directory holds a config, weights and a tokenizer this process can read.
Each failure is exit 4 with the path, the numbers and the fix; a tracker TRAIN_REPORT_TO names but the image
lacks is exit 2."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from jobs.config.resolved import ResolvedRun
from jobs.errors import ConfigError, EnvironmentProblem
from jobs.estimate.formula import checkpoint_bytes, human_size, read_tensors
from jobs.estimate.merge import weight_file_bytes

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
CHECKPOINTS_OF_ROOM = 2  # a new checkpoint is written before the oldest is rotated away
IN_THE_IMAGE = ("tensorboard", "all", "none")  # report_to values the image always satisfies (requirements.txt)


def check_report_to(run: ResolvedRun) -> None:
    """Every tracker TRAIN_REPORT_TO names must be installed: transformers would fail on it only once the model
    has loaded, with a crash that Kubernetes retries (exit 2 here, before any model loads)."""
    wanted = run.setting("report_to") or []
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    if not [name for name in wanted if name not in IN_THE_IMAGE]:
        return  # what the image has needs no look (transformers' integrations import torch)
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    unknown = [name for name in wanted if name not in (*INTEGRATION_TO_CALLBACK, "all", "none")]
    missing = [name for name in wanted if name in INTEGRATION_TO_CALLBACK]
    missing = [name for name in missing if name not in get_available_reporting_integrations()]
    if unknown or missing:
        problems = [f"{name}: not an integration transformers knows ({', '.join(sorted(INTEGRATION_TO_CALLBACK))})"
                    for name in unknown]  # fmt: skip
        problems += [f"{name}: its package is not installed in this image; install it (pip install {name}) in an "
                     "image built on this one, or drop it" for name in missing]  # fmt: skip
        raise ConfigError(f"TRAIN_REPORT_TO={','.join(wanted)} names trackers this job cannot report to", problems)


def check_output_dir(output_dir: Path) -> None:
    """The output volume must exist (or be creatable) and be writable (probed with a file)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise EnvironmentProblem(
            f"TRAIN_OUTPUT_DIR={output_dir} is not writable ({error.strerror}); mount a writable volume there"
        ) from None


def checkpoint_estimate(run: ResolvedRun) -> int | None:
    """The bytes of one checkpoint of this run, from the model's safetensors headers (None: not safetensors)."""
    tensors = read_tensors(Path(str(run.model["model_name_or_path"])))
    if not tensors:
        return None
    lora_rank = int(run.model_setting("lora_r")) if run.model_setting("use_peft") else None
    return checkpoint_bytes(tensors, lora_rank=lora_rank, train_dtype=str(run.model_setting("dtype")))


def check_disk_room(run: ResolvedRun) -> None:
    """Room for two checkpoints of this model, sized from its safetensors headers before it loads."""
    one = checkpoint_estimate(run)
    if one is None:
        logger.warning("checkpoint size not checked against the free disk: the weights are not safetensors")
        return
    lora_rank = int(run.model_setting("lora_r")) if run.model_setting("use_peft") else None
    dtype = str(run.model_setting("dtype"))
    # TRAIN_MERGE_ADAPTER writes a whole model beside them: the base's weights, in its dtype
    merged = weight_file_bytes(Path(str(run.model["model_name_or_path"]))) if run.job.merge_adapter else 0
    needed = CHECKPOINTS_OF_ROOM * one + merged
    output_dir = run.config.output_dir
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        what = f"LoRA r={lora_rank} adapter" if lora_rank else f"full {dtype} fine-tune"
        also = f" and the merged model (TRAIN_MERGE_ADAPTER, {human_size(merged)})" if merged else ""
        raise EnvironmentProblem(
            f"TRAIN_OUTPUT_DIR={output_dir} has {human_size(free)} free, but a checkpoint of this {what} "
            f"(weights and AdamW states) takes about {human_size(one)} and the job needs room "
            f"for {CHECKPOINTS_OF_ROOM}{also}: {human_size(needed)}. Mount a larger volume, free space, or train LoRA "
            "(TRAIN_USE_PEFT=true)"
        )


def _check_model_files_readable(path: Path, model_path: str) -> None:
    """Every file of the model must be readable by this process: a directory written by another user (an
    initializer running as root, safetensors' 0600 weights) fails here, not halfway through loading."""
    unreadable = [p for p in sorted(path.iterdir()) if p.is_file() and not os.access(p, os.R_OK)]
    if unreadable:
        first = unreadable[0].stat()
        raise EnvironmentProblem(
            f"TRAIN_MODEL_NAME_OR_PATH={model_path}: {len(unreadable)} file(s) this process (uid {os.getuid()}) "
            f"cannot read, e.g. {unreadable[0].name} (owner uid {first.st_uid}, {stat.filemode(first.st_mode)}); "
            "make them readable: chmod -R a+rX on the volume, or g+rX with the pod's fsGroup"
        )


def check_model_dir(model_path: str | None) -> None:
    """The base model must be a local directory with a config and weights: nothing is downloaded at run time."""
    if not model_path:
        raise EnvironmentProblem("TRAIN_MODEL_NAME_OR_PATH is not set; point it at a mounted model directory")
    path = Path(model_path)
    if not path.is_dir():
        raise EnvironmentProblem(
            f"TRAIN_MODEL_NAME_OR_PATH={model_path} is not a directory; mount the model there "
            "(runs are offline: nothing is downloaded)"
        )
    if not (path / "config.json").is_file():
        raise EnvironmentProblem(f"TRAIN_MODEL_NAME_OR_PATH={model_path} has no config.json; is it a model directory?")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise EnvironmentProblem(f"TRAIN_MODEL_NAME_OR_PATH={model_path} holds no weights ({', '.join(WEIGHT_FILES)})")
    _check_model_files_readable(path, model_path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise EnvironmentProblem(
            f"TRAIN_MODEL_NAME_OR_PATH={model_path} has no tokenizer ({', '.join(TOKENIZER_FILES)}); copy the base "
            "model's tokenizer files into it"
        )
