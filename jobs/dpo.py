"""Direct Preference Optimization with TRL's DPOTrainer.

Run it through the entrypoint, which validates the data first:

    TRAIN_METHOD=dpo TRAIN_MODEL_NAME_OR_PATH=/models/sft TRAIN_DATA_PATH=/data/pairs.jsonl python entrypoint.py
    # LoRA / QLoRA: add TRAIN_USE_PEFT=true (and TRAIN_LOAD_IN_4BIT=true)

Features: explicit-prompt pairs (plain and conversational) and implicit-prompt pairs, every TRL DPO
loss, LoRA and 4-bit QLoRA, resume from the newest complete checkpoint.
The reference model: with LoRA it is the same model with the adapter disabled (no second copy in
memory); with a full fine-tune TRL loads a frozen copy from the same directory.
"""

from __future__ import annotations

import logging

from jobs.config import JobConfig
from jobs.training import prepare_training, train_and_save, worker_main

logger = logging.getLogger(__name__)


def main(config: JobConfig) -> None:
    from trl import DPOConfig, DPOTrainer

    setup = prepare_training(config, DPOConfig)
    trainer = DPOTrainer(
        model=setup.model,
        ref_model=None,  # LoRA: the adapter-disabled model; full fine-tune: TRL loads a frozen copy
        args=setup.args,
        train_dataset=setup.train_dataset,
        eval_dataset=setup.eval_dataset,
        processing_class=setup.tokenizer,
        peft_config=setup.peft_config,
        callbacks=setup.callbacks,
    )
    if trainer.is_world_process_zero():
        reference = "the policy with its adapter disabled" if trainer.ref_model is None else "a frozen copy"
        logger.info("DPO reference model: %s", reference)
    train_and_save(trainer, config, setup.tokenizer)


if __name__ == "__main__":
    worker_main(main)
