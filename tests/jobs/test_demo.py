"""The built-in default: bundled sample data is what the generator makes; the tokenizer marks assistant turns."""

from __future__ import annotations

from pathlib import Path

from jobs.demo import SAMPLE_FILES, build_tokenizer, write_sample_data


def test_bundled_sample_data_is_reproducible(tmp_path: Path) -> None:
    write_sample_data(tmp_path)
    for path in SAMPLE_FILES.values():
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()


def test_demo_chat_template_marks_assistant_tokens_for_assistant_only_loss() -> None:
    tokenizer = build_tokenizer()
    messages = [{"role": "user", "content": "Count on from 3, 3 numbers."}, {"role": "assistant", "content": "4 5 6"}]
    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    mask = encoded["assistant_masks"]
    assert 0 < sum(mask) < len(mask)
    assistant_ids = [t for t, m in zip(encoded["input_ids"], mask, strict=True) if m]
    assert tokenizer.decode(assistant_ids) == "4 5 6<|end|>"
