"""The built-in demo: bundled sample data is what each method makes; the tokenizer marks assistant turns;
`make <method>` fills in the demo only where the user set nothing."""

from __future__ import annotations

import json

import pytest

from dev.demo import DEMOS, build_tokenizer, demo_environment
from jobs.methods import METHODS


def test_every_registered_method_has_a_demo() -> None:
    assert sorted(DEMOS) == sorted(METHODS)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bundled_sample_data_is_what_the_demo_makes(name: str) -> None:
    demo = DEMOS[name]
    expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in demo.records())
    assert demo.data.read_text(encoding="utf-8") == expected, "regenerate with `python -m dev.demo data`"


def test_demo_chat_template_marks_assistant_tokens_for_assistant_only_loss() -> None:
    tokenizer = build_tokenizer()
    messages = [{"role": "user", "content": "Count on from 3, 3 numbers."}, {"role": "assistant", "content": "4 5 6"}]
    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    mask = encoded["assistant_masks"]
    assert 0 < sum(mask) < len(mask)
    assistant_ids = [t for t, m in zip(encoded["input_ids"], mask, strict=True) if m]
    assert tokenizer.decode(assistant_ids) == "4 5 6<|end|>"


def test_the_demo_fills_in_only_what_the_user_left_unset() -> None:
    env = demo_environment("sft", {"TRAIN_LEARNING_RATE": "1e-4"})
    assert env["TRAIN_METHOD"] == "sft" and env["TRAIN_MODEL_NAME_OR_PATH"] == ".cache/demo-model"
    assert env["TRAIN_LEARNING_RATE"] == "1e-4" and env["TRAIN_DATA_PATH"] == "dev/demo_data/sft_messages.jsonl"
    own_model = demo_environment("dpo", {"TRAIN_MODEL_NAME_OR_PATH": "/models/m", "TRAIN_DATA_PATH": "/d.jsonl"})
    assert "TRAIN_LEARNING_RATE" not in own_model and own_model["TRAIN_DATA_PATH"] == "/d.jsonl"
    validate = demo_environment("validate", {"TRAIN_METHOD": "sft"})
    assert validate["TRAIN_DATA_PATH"] == "dev/demo_data/sft_messages.jsonl"
    assert "TRAIN_MODEL_NAME_OR_PATH" not in validate
