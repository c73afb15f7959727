"""Length statistics: characters always; tokens, and what max_length would truncate, with a tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from dev.testing import run_entrypoint, write_jsonl
from jobs.data.chat import ChatRenderer, load_tokenizer_for_data
from jobs.data.lengths import SAMPLE, percentiles, token_lengths


def _renderer(model: str) -> ChatRenderer:
    tokenizer, template = load_tokenizer_for_data(model, None)
    return ChatRenderer(tokenizer, template)


def test_percentiles_of_nothing_is_none() -> None:
    assert percentiles([], "tokens") is None
    assert percentiles([3, 1, 2, 10], "characters") == {
        "unit": "characters", "count": 4, "mean": 4.0, "p50": 3, "p95": 10, "max": 10,
    }  # fmt: skip


def test_token_lengths_count_records_over_max_length(demo_model: str, tmp_path: Path) -> None:
    short = {"messages": [{"role": "user", "content": "Count on from 1."}, {"role": "assistant", "content": "2 3"}]}
    long = {"messages": [{"role": "user", "content": "Count " * 200}, {"role": "assistant", "content": "1"}]}
    prepared = write_jsonl(tmp_path / "train.jsonl", [short, short, long])
    stats = token_lengths(prepared, 3, _renderer(demo_model), max_length=64)
    assert stats is not None and stats["unit"] == "tokens" and stats["count"] == 3
    assert stats["over_max_length"] == 1 and abs(stats["truncated_fraction"] - 1 / 3) < 1e-9


def test_pair_lengths_take_the_longer_side(demo_model: str, tmp_path: Path) -> None:
    long_rejected = {"prompt": "Count on from 1.", "chosen": "2", "rejected": "2 3 4 5 6 7 8 9 10 11 12 13"}
    long_chosen = {**long_rejected, "chosen": long_rejected["rejected"], "rejected": "2"}
    short = {**long_rejected, "rejected": "2 3"}
    prepared = write_jsonl(tmp_path / "p.jsonl", [long_rejected, long_chosen, short])
    stats = token_lengths(prepared, 3, _renderer(demo_model), None)
    assert stats is not None and "over_max_length" not in stats
    assert stats["max"] == stats["p50"] > stats["mean"]  # both long pairs count their long side


def test_lengths_come_from_an_evenly_spaced_sample_of_stated_size(demo_model: str, tmp_path: Path) -> None:
    """Tokenising every record for the report would repeat TRL's own pass: a sample, stated, is enough."""
    records = [{"text": "1 2 3 " * (n % 7 + 1)} for n in range(3 * SAMPLE + 5)]
    prepared = write_jsonl(tmp_path / "t.jsonl", records)
    stats = token_lengths(prepared, len(records), _renderer(demo_model), None)
    assert stats is not None and stats["sample"] == {"records": stats["count"], "of": len(records), "every": 4}
    assert SAMPLE // 2 < stats["count"] <= SAMPLE


def test_validate_counts_tokens_only_when_a_model_is_named(demo_model: str, tmp_path: Path) -> None:
    data = "dev/demo_data/dpo_pairs.jsonl"
    plain = run_entrypoint("validate", TRAIN_METHOD="dpo", TRAIN_DATA_PATH=data, TRAIN_OUTPUT_DIR=str(tmp_path / "a"))
    with_model = run_entrypoint("validate", TRAIN_METHOD="dpo", TRAIN_DATA_PATH=data, TRAIN_MAX_LENGTH="12",
                                TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_OUTPUT_DIR=str(tmp_path / "b"))  # fmt: skip
    assert plain.returncode == with_model.returncode == 0
    assert json.loads((tmp_path / "a" / "validation_report.json").read_text())["lengths"]["unit"] == "characters"
    lengths = json.loads((tmp_path / "b" / "validation_report.json").read_text())["lengths"]
    assert lengths["unit"] == "tokens" and lengths["max_length"] == 12 and lengths["over_max_length"] > 0
    assert "would be truncated" in with_model.stderr
