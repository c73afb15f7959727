"""The samples' prompts, read from the rows TRL tokenised, for each dataset shape the methods train on."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.train.sample_prompts import MAX_PROMPT_TOKENS, PLAIN_TEXT_TOKENS, fixed_prompts, prompt_ids

M = -100  # a label the loss does not train


CASES = [
    pytest.param({"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6]}, [1, 2, 3], id="dpo"),
    pytest.param({"prompt_ids": [1, 2], "completion_ids": [3], "label": True}, [1, 2], id="kto"),
    pytest.param({"input_ids": [1, 2, 3, 4, 5], "completion_mask": [0, 0, 0, 1, 1]}, [1, 2, 3],
                 id="sft-prompt-completion"),
    pytest.param({"input_ids": [1, 2, 3, 4], "completion_mask": [0, 0, 1, 1], "labels": [1, 2, 3, 4]}, [1, 2],
                 id="sft-prompt-completion-whole-sequence-loss"),
    pytest.param({"input_ids": [9, 1, 8, 2, 3, 8, 4, 5, 7], "assistant_masks": [0, 0, 0, 1, 1, 0, 0, 1, 1]},
                 [9, 1, 8, 2, 3, 8, 4], id="sft-conversation-masks-last-assistant-turn"),
    pytest.param({"input_ids": [9, 1, 8, 2, 3, 8, 4, 5, 7], "labels": [M, M, M, 2, 3, M, M, 5, 7]},
                 [9, 1, 8, 2, 3, 8, 4], id="sft-conversation-labels-built-by-trl"),
    pytest.param({"input_ids": [1, 2, 3, 4, 5, 6], "labels": [1, 2, 3, 4, 5, 6]}, [1, 2, 3], id="sft-plain-text"),
    pytest.param({"input_ids": [1, 2, 3, 4, 5]}, [1, 2], id="sft-plain-text-no-labels"),
    pytest.param({"input_ids": [1, 2, 3, 4, 5, 6, 7], "labels": [M, M, 3, 4, 5, 6, 7], "seq_lengths": [3, 4]},
                 [1, 2], id="sft-packed-first-record"),
    pytest.param({"input_ids": [1]}, [1], id="one-token"),
    pytest.param({"input_ids": []}, None, id="empty"),
    pytest.param({"text": "no tokens"}, None, id="untokenised"),
]  # fmt: skip


@pytest.mark.parametrize(("row", "prompt"), CASES)
def test_the_prompt_of_each_dataset_shape(row: dict[str, Any], prompt: list[int] | None) -> None:
    assert prompt_ids(row) == prompt


def test_a_long_plain_text_gives_a_capped_leading_part() -> None:
    assert prompt_ids({"input_ids": list(range(1000))}) == list(range(PLAIN_TEXT_TOKENS))


def test_a_long_prompt_keeps_its_end() -> None:
    """Generation continues from the end of the prompt: that is the part kept."""
    ids = list(range(MAX_PROMPT_TOKENS + 10))
    assert prompt_ids({"prompt_ids": ids}) == ids[10:]


def test_the_first_distinct_prompts_in_order() -> None:
    """KTO repeats a prompt for its desirable and undesirable answer: each prompt counts once."""
    rows = [{"prompt_ids": p, "completion_ids": [9]} for p in ([1], [1], [2], [], [3], [2], [4])]
    assert fixed_prompts(rows, 3) == [[1], [2], [3]]
    assert fixed_prompts(rows, 10) == [[1], [2], [3], [4]]
    assert fixed_prompts(rows, 3) == fixed_prompts(rows, 3)  # the same at every round
