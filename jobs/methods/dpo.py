"""Direct Preference Optimization with TRL's DPOTrainer.

    TRAIN_METHOD=dpo TRAIN_MODEL_NAME_OR_PATH=/models/sft TRAIN_DATA_PATH=/data/pairs.jsonl python entrypoint.py
    # LoRA / QLoRA: add TRAIN_USE_PEFT=true (and TRAIN_LOAD_IN_4BIT=true)

Features: preference pairs with an explicit or implicit prompt, plain and conversational; every TRL
DPO loss; LoRA and 4-bit QLoRA; resume from the newest complete checkpoint. The reference model: with
LoRA it is the policy with its adapter disabled (no second copy in memory); with a full fine-tune
TRL loads a frozen copy from the same directory.
Raises: nothing beyond the shared configuration checks.
"""

from __future__ import annotations

from jobs.methods.base import PREFERENCE, Method, MethodMetric

METHOD = Method(
    name="dpo",
    title="Direct Preference Optimization (TRL DPOConfig)",
    trl_config="DPOConfig",
    trl_trainer="DPOTrainer",
    dataset_kinds=(PREFERENCE,),
    sequences_per_example=2,
    reference_model=True,
    metrics=(
        MethodMetric("rewards/accuracies", "reward_accuracy",
                     "DPO: fraction of pairs whose chosen reward beats the rejected one (0..1)."),
        MethodMetric("rewards/margins", "reward_margin", "DPO: mean chosen minus rejected reward."),
        MethodMetric("rewards/chosen", "chosen_reward", "DPO: mean implicit reward of the chosen completions."),
        MethodMetric("rewards/rejected", "rejected_reward", "DPO: mean implicit reward of the rejected completions."),
    ),
)  # fmt: skip
