"""The plainest TRL script that trains what the job trained: the baseline of `make bench`.

    python bench/bare_trl.py <final>/effective_config.json <data dir> <output dir> [--max-steps N]

Same model, same records (the job's validated data/train.jsonl and data/eval.jsonl) and every TRL setting
the job resolved (`training_resolved`, `model_resolved` in effective_config.json), loaded and trained the
way TRL's own example scripts do it (trl/scripts/sft.py, dpo.py, kto.py): no validation, no exporter,
none of the job's guards, and for packed rows transformers' default attention rather than the job's
(jobs/train/attention.py). Where the job chose padding-free SFT batches by default (jobs/train/batching.py), the
script trains on padded batches, TRL's default: TRL refuses padding_free with max_length and no packing.
It prints one JSON line: when the first optimizer step ended and when training ended, in seconds since
the process started, and the tokens it trained on per second.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

STARTED = time.monotonic()  # before the heavy imports, like the job's wall clock

import trl  # noqa: E402
from datasets import load_dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback  # noqa: E402

TRAINERS = {"sft": ("SFTConfig", "SFTTrainer"), "dpo": ("DPOConfig", "DPOTrainer"), "kto": ("KTOConfig", "KTOTrainer")}


class FirstStep(TrainerCallback):
    """When the first optimizer step ended (the job's trainer reports the same moment)."""

    seconds: float | None = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.seconds is None:
            self.seconds = time.monotonic() - STARTED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("effective_config", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--max-steps", type=int)
    args = parser.parse_args()
    effective = json.loads(args.effective_config.read_text())
    config_name, trainer_name = TRAINERS[effective["job"]["method"]]
    settings = {**effective["training_resolved"], "output_dir": str(args.output_dir)}
    if args.max_steps:
        settings["max_steps"] = args.max_steps
    if settings.get("padding_free") and not settings.get("packing") and settings.get("max_length") is not None:
        settings["padding_free"] = False  # what plain TRL runs: it refuses this combination (jobs/train/batching.py)
    training_args = getattr(trl, config_name)(**settings)
    model_args = trl.ModelConfig(**effective["model_resolved"])
    if (
        model_args.attn_implementation == "sdpa_varlen"
    ):  # the job's own attention for packed rows (jobs/train/attention.py)
        model_args.attn_implementation = None  # plain TRL packs under transformers' default, SDPA

    model = AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
        quantization_config=trl.get_quantization_config(model_args),
    )
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    files = {"train": str(args.data_dir / "train.jsonl")}
    if (args.data_dir / "eval.jsonl").is_file():
        files["test"] = str(args.data_dir / "eval.jsonl")
    dataset = load_dataset("json", data_files=files)
    first_step = FirstStep()
    trainer = getattr(trl, trainer_name)(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset.get("test"),
        processing_class=tokenizer,
        peft_config=trl.get_peft_config(model_args),
        callbacks=[first_step],
    )
    result = trainer.train()
    trained = time.monotonic() - STARTED
    trainer.save_model(training_args.output_dir)
    tokens = max((entry.get("num_tokens", 0) for entry in trainer.state.log_history), default=0)
    runtime = result.metrics["train_runtime"]
    print(
        json.dumps(
            {
                "first_step_seconds": first_step.seconds,
                "trained_seconds": trained,
                "num_tokens": tokens,
                "train_runtime": runtime,
                "tokens_per_second": tokens / runtime if runtime else None,
            }
        )
    )


if __name__ == "__main__":
    main()
