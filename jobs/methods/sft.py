"""Supervised fine-tuning with TRL's SFTTrainer.

    TRAIN_METHOD=sft TRAIN_MODEL_NAME_OR_PATH=/models/base TRAIN_DATA_PATH=/data/train.jsonl python entrypoint.py
    # LoRA / QLoRA: add TRAIN_USE_PEFT=true (and TRAIN_LOAD_IN_4BIT=true)

Features: language modeling (`text`, `messages`) and prompt-completion data, plain and conversational;
padding-free batches by default where the model's attention keeps records apart (jobs/batching.py);
packing and assistant-only loss (TRL's own settings); LoRA and 4-bit QLoRA; resume from the newest
complete checkpoint.
Raises: nothing beyond the shared configuration checks.
"""

from __future__ import annotations

import random
from typing import Any

from jobs import counting
from jobs.methods.base import LANGUAGE_MODELING, PROMPT_COMPLETION, Method


def demo_records(n: int = 400, seed: int = 1234) -> list[dict[str, Any]]:
    """Conversations that ask for a count and answer it."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        question, start, length = counting.draw(rng)
        answer = counting.count(start, length)
        records.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return records


METHOD = Method(
    name="sft",
    title="Supervised fine-tuning (TRL SFTConfig)",
    trl_config="SFTConfig",
    trl_trainer="SFTTrainer",
    dataset_kinds=(LANGUAGE_MODELING, PROMPT_COMPLETION),
    demo_file="sft_messages.jsonl",
    demo_records=demo_records,
    demo_learning_rate=2e-3,
    padding_free_by_default=True,
)
