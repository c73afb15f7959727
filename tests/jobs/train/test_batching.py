"""Padding-free SFT batches by default: the same steps as padded batches, where the attention keeps records apart."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dev.testing import REALDATA, run_entrypoint
from jobs.config.defaults import Device, default_for
from jobs.methods import METHODS
from jobs.train import attention, batching


def _model_args(demo_model: str, attn: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(model_name_or_path=demo_model, model_revision="main", attn_implementation=attn)


def _args(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"per_device_train_batch_size": 8, "padding_free": False, **fields})


def test_sft_batches_go_padding_free_where_the_attention_keeps_records_apart(demo_model: str) -> None:
    args = _args()
    assert batching.choose(METHODS["sft"], {}, _model_args(demo_model), args)
    assert args.padding_free
    for attn in ("flash_attention_2", "flash_attention_3"):  # varlen kernels the user chose
        assert batching.choose(METHODS["sft"], {}, _model_args(demo_model, attn), _args())


@pytest.mark.parametrize(
    ("method", "overrides", "attn", "batch"),
    [
        ("sft", {"padding_free": False}, None, 8),  # the user's choice stands
        ("sft", {"packing": True}, None, 8),  # packing decides for itself
        ("sft", {}, "eager", 8),  # a padding-free row would pay attention over the whole row
        ("sft", {}, "sdpa", 8),
        ("sft", {}, None, 1),  # one record a batch has no padding to save
        ("dpo", {}, None, 8),  # not the other methods' default
        ("kto", {}, None, 8),
    ],
)
def test_padded_batches_stay_otherwise(
    demo_model: str, method: str, overrides: dict[str, Any], attn: str | None, batch: int
) -> None:
    args = _args(per_device_train_batch_size=batch)
    assert not batching.choose(METHODS[method], overrides, _model_args(demo_model, attn), args)
    assert not args.padding_free


def test_a_model_with_windowed_attention_keeps_padded_batches(tmp_path: Path, demo_model: str) -> None:
    config = json.loads((Path(demo_model) / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "sliding_window": 16}))
    assert not attention.keeps_records_apart(_model_args(str(tmp_path)))
    assert not batching.choose(METHODS["sft"], {}, _model_args(str(tmp_path)), _args())


def test_the_trainer_truncates_only_for_padding_free_sft_batches_without_packing() -> None:
    import trl

    sft, dpo = METHODS["sft"], METHODS["dpo"]
    assert batching.trainer_class(sft, _args(packing=False, max_length=64)) is trl.SFTTrainer  # padded
    assert batching.trainer_class(sft, _args(padding_free=True, packing=True, max_length=64)) is trl.SFTTrainer
    assert batching.trainer_class(sft, _args(padding_free=True, packing=False, max_length=None)) is trl.SFTTrainer
    # DPO's config has no packing; its trainer pads where it cannot go padding-free
    assert batching.trainer_class(dpo, _args(padding_free=True, max_length=64)) is trl.DPOTrainer
    truncating = batching.trainer_class(sft, _args(padding_free=True, packing=False, max_length=64))
    assert issubclass(truncating, trl.SFTTrainer) and truncating.__name__ == "SFTTrainer"


def test_a_model_with_remote_code_keeps_padded_batches(demo_model: str) -> None:
    """Its attention may not go through transformers' interface, where position ids keep records apart."""
    args = _args(trust_remote_code=True)
    assert not batching.choose(METHODS["sft"], {}, _model_args(demo_model), args)
    assert not args.padding_free


def _gsm8k(tmp_path: Path, n: int) -> Path:
    lines = (REALDATA / "foundry_gsm8k_chat_train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    path = tmp_path / "gsm8k.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _train(demo_model: str, data: Path, out: Path, **settings: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    run = run_entrypoint(
        TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(out),
        TRAIN_MAX_STEPS="6", TRAIN_LOGGING_STEPS="1", TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="6",
        TRAIN_MAX_LENGTH="512", TRAIN_LEARNING_RATE="2e-3", TRAIN_SAVE_STRATEGY="no", **settings,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    history = json.loads((out / "final" / "log_history.json").read_text())
    resolved = json.loads((out / "final" / "effective_config.json").read_text())["training_resolved"]
    return [entry for entry in history if "loss" in entry], resolved


@pytest.mark.slow
def test_packed_evaluation_beside_padding_free_training(demo_model: str, tmp_path: Path) -> None:
    """TRAIN_EVAL_PACKING packs the held-out records into rows of max_length while training stays padding-free."""
    data = _gsm8k(tmp_path, 40)
    history, resolved = _train(demo_model, data, tmp_path / "out", TRAIN_EVAL_PACKING="true", TRAIN_EVAL_SPLIT="0.2",
                               TRAIN_EVAL_STRATEGY="steps", TRAIN_EVAL_STEPS="3")  # fmt: skip
    assert resolved["padding_free"] and resolved["eval_packing"] and len(history) == 6
    log = json.loads((tmp_path / "out" / "final" / "log_history.json").read_text())
    assert [entry["step"] for entry in log if "eval_loss" in entry] == [3, 6]


@pytest.mark.slow
def test_padding_free_steps_are_the_padded_steps(demo_model: str, tmp_path: Path) -> None:
    """Real GSM8K conversations of unequal lengths, some longer than max_length: the default (padding-free)
    trains through the same losses and gradient norms as padded batches, on the same tokens."""
    data = _gsm8k(tmp_path, 60)
    padded, padded_config = _train(demo_model, data, tmp_path / "padded", TRAIN_PADDING_FREE="false")
    default, default_config = _train(demo_model, data, tmp_path / "default")
    assert (padded_config["padding_free"], default_config["padding_free"]) == (False, True)
    assert default_config["max_length"] == 512  # truncated in preparation, and saved as the run's setting
    assert [e["step"] for e in default] == [e["step"] for e in padded] == list(range(1, 7))
    assert [e["num_tokens"] for e in default] == [e["num_tokens"] for e in padded]
    assert default[-1]["num_tokens"] < 6 * 6 * 512  # records shorter than max_length: padding to save
    for key in ("loss", "grad_norm"):
        assert [e[key] for e in default] == pytest.approx([e[key] for e in padded], rel=1e-3), key


def test_help_shows_the_default_for_sft_only() -> None:
    cpu = Device(gpu=False, bf16=False)
    value, when = default_for("padding_free", "sft", cpu) or (None, "")
    assert value is True and "jobs/train/batching.py" in when
    assert default_for("padding_free", "dpo", cpu) is None
    assert default_for("packing", "sft", cpu) is None
    assert default_for("padding_free", "training", cpu) is None
