"""Supervised fine-tuning with TRL's SFTTrainer.

    TRAIN_METHOD=sft TRAIN_MODEL_NAME_OR_PATH=/models/base TRAIN_DATA_PATH=/data/train.jsonl python entrypoint.py
    # LoRA / QLoRA: add TRAIN_USE_PEFT=true (and TRAIN_LOAD_IN_4BIT=true)

Features: language modeling (`text`, `messages`) and prompt-completion data, plain and conversational;
padding-free batches by default where the model's attention keeps records apart (jobs/train/batching.py);
packing and assistant-only loss (TRL's own settings); LoRA and 4-bit QLoRA; resume from the newest
complete checkpoint.
Raises: nothing beyond the shared configuration checks.
"""

from __future__ import annotations

from jobs.methods.base import LANGUAGE_MODELING, PROMPT_COMPLETION, Method

METHOD = Method(
    name="sft",
    title="Supervised fine-tuning (TRL SFTConfig)",
    trl_config="SFTConfig",
    trl_trainer="SFTTrainer",
    dataset_kinds=(LANGUAGE_MODELING, PROMPT_COMPLETION),
    padding_free_by_default=True,
)
