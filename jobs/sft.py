"""Supervised fine-tuning with TRL's SFTTrainer.

Run it through the entrypoint, which validates the data first:

    TRAIN_METHOD=sft TRAIN_MODEL_NAME_OR_PATH=/models/base TRAIN_DATA_PATH=/data/train.jsonl python entrypoint.py
    # LoRA / QLoRA: add TRAIN_USE_PEFT=true (and TRAIN_LOAD_IN_4BIT=true)

Features: every TRL SFT data format (text, messages, prompt/completion plain and conversational),
packing, assistant-only loss, LoRA and 4-bit QLoRA, resume from the newest complete checkpoint.
"""

from __future__ import annotations

from jobs.config import JobConfig
from jobs.training import prepare_training, train_and_save, worker_main


def main(config: JobConfig) -> None:
    from trl import SFTConfig, SFTTrainer

    setup = prepare_training(config, SFTConfig)
    trainer = SFTTrainer(
        model=setup.model,
        args=setup.args,
        train_dataset=setup.train_dataset,
        eval_dataset=setup.eval_dataset,
        processing_class=setup.tokenizer,
        peft_config=setup.peft_config,
        callbacks=setup.callbacks,
    )
    train_and_save(trainer, config, setup.tokenizer)


if __name__ == "__main__":
    worker_main(main)
