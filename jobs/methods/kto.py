"""Kahneman-Tversky Optimization with TRL's KTOTrainer: learning from thumbs up and thumbs down.

    TRAIN_METHOD=kto TRAIN_MODEL_NAME_OR_PATH=/models/sft TRAIN_DATA_PATH=/data/feedback.jsonl python entrypoint.py
    # LoRA / QLoRA: add TRAIN_USE_PEFT=true (and TRAIN_LOAD_IN_4BIT=true)

Features: unpaired preference data (`prompt`, `completion`, `label`: true for a desirable completion,
false for an undesirable one), plain and conversational; paired preference files too, unpaired as TRL
does it (each pair gives a desirable and an undesirable example); TRL's KTO losses; LoRA and 4-bit
QLoRA; the reference model as in DPO (adapter disabled with LoRA, a frozen copy otherwise). TRL reads
the data in a fixed order (`train_sampling_strategy=sequential`), since its KL estimate pairs each
example with its neighbours in the batch; the records are shuffled once, with TRAIN_SEED, before that,
so that a batch holds both labels (TRL's unpairing alone puts every desirable example of a pair file
before every undesirable one, and a one-label batch logs no reward margin). Weigh the rarer label up
with TRAIN_DESIRABLE_WEIGHT / TRAIN_UNDESIRABLE_WEIGHT.
Raises: a per-device batch of 1 with a loss that estimates the KL term (it needs two examples a batch),
and a sampling strategy other than sequential for such a loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.methods.base import PREFERENCE, UNPAIRED_PREFERENCE, Method, MethodMetric

# TRL's loss without the KL term; every other KTO loss estimates it within the batch.
_NO_KL_LOSSES = ("apo_zero_unpaired",)


def unpaired_and_shuffled(dataset: Any, seed: int) -> Any:
    """Pairs unpaired as TRL's KTOTrainer does it, then one seeded shuffle (its order stays fixed after)."""
    from trl import maybe_extract_prompt, unpair_preference_dataset

    # In memory: every rank runs this at once, and cache files written by two ranks would race.
    if "rejected" in dataset.column_names:
        with_prompt = dataset.map(maybe_extract_prompt, keep_in_memory=True)
        dataset = unpair_preference_dataset(with_prompt, keep_in_memory=True)
    return dataset.shuffle(seed=seed, keep_in_memory=True)


def check_settings(settings: Mapping[str, Any]) -> list[str]:
    """`settings`: the run's, TRL's defaults beneath (jobs/config/resolved.py)."""
    if settings["loss_type"] in _NO_KL_LOSSES:
        return []
    problems = []
    batch = settings["per_device_train_batch_size"]
    if batch < 2:
        problems.append(
            f"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE={batch} is too small for KTO: its KL term is estimated from the other "
            "examples of a batch; use 2 or more (or TRAIN_LOSS_TYPE=apo_zero_unpaired, which has no KL term)"
        )
    sampling = settings["train_sampling_strategy"]
    if sampling != "sequential":
        problems.append(
            f"TRAIN_TRAIN_SAMPLING_STRATEGY={sampling} breaks KTO's KL estimate, which pairs each example with its "
            "neighbours in a fixed-order batch; leave it unset (sequential) and shuffle the file instead"
        )
    return problems


METHOD = Method(
    name="kto",
    title="Kahneman-Tversky Optimization (TRL KTOConfig)",
    trl_config="KTOConfig",
    trl_trainer="KTOTrainer",
    dataset_kinds=(UNPAIRED_PREFERENCE, PREFERENCE),
    reference_model=True,
    metrics=(
        MethodMetric("rewards/margins", "reward_margin",
                     "KTO: mean reward of the desirable minus that of the undesirable completions."),
        MethodMetric("rewards/chosen", "chosen_reward", "KTO: mean implicit reward of the desirable completions."),
        MethodMetric("rewards/rejected", "rejected_reward",
                     "KTO: mean implicit reward of the undesirable completions."),
        MethodMetric("kl", "kl", "KTO: estimated KL divergence between the policy and the reference."),
    ),
    check_settings=check_settings,
    prepare_dataset=unpaired_and_shuffled,
)  # fmt: skip
