"""The LLaMA-Factory and Axolotl layouts (README, "Adapters"): each detected by its keys and converted to
TRL's format, with a good and a bad variant. A bad record is refused at its line (exit 3 in the job)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dev.testing import run_entrypoint, write_jsonl
from jobs.data.adapters import ADAPTERS, detect_adapter
from jobs.data.validate import validate_dataset
from jobs.preflight.data import data_policy

SYSTEM, USER, GOOD, BAD = "Be brief.", "What is 2+2?", "4", "5"


def _turn(role: str, text: Any) -> dict[str, Any]:
    return {"role": role, "content": text}


PREFERENCE = {"prompt": [_turn("system", SYSTEM), _turn("user", USER)], "chosen": [_turn("assistant", GOOD)],
              "rejected": [_turn("assistant", BAD)]}  # fmt: skip
UNPAIRED = {"prompt": [_turn("system", SYSTEM), _turn("user", USER)], "completion": [_turn("assistant", GOOD)],
            "label": True}  # fmt: skip

# (adapter, method, good record, what it converts to, a bad record, the error at the bad record's line)
TABLE = [
    ("alpaca_preference", "dpo",
     {"system": SYSTEM, "history": [["Hi", "Hello"]], "instruction": "What is", "input": "2+2?", "chosen": GOOD,
      "rejected": BAD},
     {"prompt": [_turn("system", SYSTEM), _turn("user", "Hi"), _turn("assistant", "Hello"),
                 _turn("user", "What is\n\n2+2?")],
      "chosen": [_turn("assistant", GOOD)], "rejected": [_turn("assistant", BAD)]},
     {"instruction": USER, "chosen": GOOD, "rejected": " "}, "/rejected/0/content: empty assistant turn"),
    ("alpaca_ranking", "dpo",
     {"system": SYSTEM, "instruction": USER, "input": "", "output": [GOOD, BAD]}, PREFERENCE,
     {"instruction": USER, "output": [GOOD]},
     "/: cannot convert from alpaca_ranking: `output` holds 1 answer(s); a ranked list needs at least 2"),
    ("alpaca_kto", "kto",
     {"system": SYSTEM, "instruction": USER, "output": GOOD, "kto_tag": True}, UNPAIRED,
     {"instruction": USER, "output": GOOD, "kto_tag": "true"}, '/label: "true" is not of type "boolean"'),
    ("sharegpt_kto", "kto",
     {"system": SYSTEM, "conversations": [{"from": "human", "value": USER}, {"from": "gpt", "value": GOOD}],
      "kto_tag": True}, UNPAIRED,
     {"conversations": [{"from": "gpt", "value": GOOD}], "kto_tag": False}, "/prompt: [] should be non-empty"),
    ("axolotl_intel", "dpo", {"system": SYSTEM, "question": USER, "chosen": GOOD, "rejected": BAD}, PREFERENCE,
     {"question": USER, "chosen": GOOD, "rejected": GOOD}, "/rejected: rejected is the same as chosen"),
    ("axolotl_argilla", "dpo",
     {"system": SYSTEM, "instruction": USER, "chosen_response": GOOD, "rejected_response": BAD}, PREFERENCE,
     {"instruction": "", "chosen_response": GOOD, "rejected_response": BAD}, "/prompt/0/content: empty user turn"),
    ("axolotl_icr", "dpo", {"system": SYSTEM, "input": USER, "chosen": GOOD, "rejected": BAD}, PREFERENCE,
     {"input": USER, "chosen": GOOD, "rejected": 5}, "/rejected/0/content: 5 is not one of the accepted shapes"),
    ("axolotl_prompt_pairs", "dpo", {"system": SYSTEM, "prompt": USER, "chosen": GOOD, "rejected": BAD}, PREFERENCE,
     {"system": SYSTEM, "prompt": USER, "chosen": "", "rejected": BAD}, "/chosen/0/content: empty assistant turn"),
    ("axolotl_ultra", "dpo",
     {"system": SYSTEM, "prompt": USER, "chosen": [_turn("user", USER), _turn("assistant", GOOD)],
      "rejected": [_turn("user", USER), _turn("assistant", BAD)]},
     {"chosen": [_turn("system", SYSTEM), _turn("user", USER), _turn("assistant", GOOD)],
      "rejected": [_turn("system", SYSTEM), _turn("user", USER), _turn("assistant", BAD)]},
     {"prompt": "Other?", "chosen": [_turn("user", USER), _turn("assistant", GOOD)],
      "rejected": [_turn("user", USER), _turn("assistant", BAD)]},
     "/: cannot convert from axolotl_ultra: the prompt differs from the first turn of chosen"),
    ("axolotl_chat_template", "dpo",
     {"messages": [_turn("system", SYSTEM), _turn("user", USER)], "chosen": _turn("assistant", GOOD),
      "rejected": BAD}, PREFERENCE,
     {"messages": [_turn("user", USER)], "chosen": _turn("user", GOOD), "rejected": BAD},
     "/chosen/0/role: roles out of order"),
    ("axolotl_kto_intel", "kto", {"system": SYSTEM, "question": USER, "completion": GOOD, "label": True}, UNPAIRED,
     {"question": USER, "completion": GOOD}, "/: unknown format (keys: completion, question)"),
    ("axolotl_kto_argilla", "kto", {"system": SYSTEM, "instruction": USER, "completion": GOOD, "label": True},
     UNPAIRED, {"instruction": USER, "completion": GOOD, "label": 1}, '/label: 1 is not of type "boolean"'),
    ("axolotl_kto_prompt_pairs", "kto", {"system": SYSTEM, "prompt": USER, "completion": GOOD, "label": True},
     UNPAIRED, {"system": SYSTEM, "prompt": USER, "completion": "  ", "label": False},
     "/completion/0/content: empty assistant turn"),
]  # fmt: skip


@pytest.mark.parametrize("case", TABLE, ids=[t[0] for t in TABLE])
def test_each_layout_is_detected_converted_and_its_bad_records_refused_at_their_line(
    case: tuple[Any, ...], tmp_path: Path
) -> None:
    name, method, good, converted, bad, error = case
    adapter = detect_adapter(good)
    assert adapter is not None and adapter.name == name
    assert adapter.convert(good) == converted
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(good) + "\n", encoding="utf-8")
    result = validate_dataset(data, None, data_policy(method), tmp_path / "ok")
    assert result.refused is None and result.files[0].adapter == name, result.problems
    data.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    result = validate_dataset(data, None, data_policy(method), tmp_path / "bad")
    assert result.refused is not None
    assert any(problem.startswith(f"{data}:2 {error}") for problem in result.problems), result.problems


def test_every_adapter_is_in_a_table() -> None:
    tested = {t[0] for t in TABLE} | {"alpaca", "sharegpt", "sharegpt_preference", "openai_preference", "hh_rlhf",
                                      "llamafactory_preference"}  # fmt: skip
    assert tested == set(ADAPTERS)


def test_a_layout_can_be_forced_and_then_every_record_must_fit_it(tmp_path: Path) -> None:
    data = tmp_path / "ranking.jsonl"
    records = [{"instruction": f"Q{n}?", "output": [f"good {n}", f"bad {n}"]} for n in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    run = run_entrypoint("validate", TRAIN_METHOD="dpo", TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "o"),
                         TRAIN_DATA_FORMAT="alpaca_ranking")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "o" / "validation_report.json").read_text())["files"][0]
    assert (report["records"], report["valid"], report["adapter"]) == (3, 3, "alpaca_ranking")


def test_every_adapter_pickles_for_shard_workers() -> None:
    """Shard workers send their validator, holding the file's adapter, back to the parent."""
    import pickle

    for adapter in ADAPTERS.values():
        assert pickle.loads(pickle.dumps(adapter)).name == adapter.name


def test_ranked_lists_give_their_first_pair_or_every_pair(tmp_path: Path) -> None:
    """LLaMA-Factory's oaast_rm shape: `output` ranks 2 to 5 answers, best first. By default each record gives
    one pair (first over second, as LLaMA-Factory trains it); TRAIN_RANKED_PAIRS=all gives k(k-1)/2."""
    sizes = [2, 3, 4, 5, 3, 2, 5]
    records = [{"instruction": f"Question {n}?", "input": "", "history": [],
                "output": [f"Answer {n}.{rank}" for rank in range(k)]} for n, k in enumerate(sizes)]  # fmt: skip
    data = write_jsonl(tmp_path / "oaast_rm.jsonl", records)
    for pairs, expected in (("first", len(sizes)), ("all", sum(k * (k - 1) // 2 for k in sizes))):
        out = tmp_path / pairs
        run = run_entrypoint("validate", TRAIN_METHOD="dpo", TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(out),
                             TRAIN_RANKED_PAIRS=pairs)  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
        report = json.loads((out / "validation_report.json").read_text())
        assert report["split"]["train"] == expected
        assert report["ranked_lists"] == {"records": 5, "pairs": pairs}
        assert "ranked lists: 5 record(s) rank more than two answers" in run.stderr
    first = json.loads((tmp_path / "first" / "data" / "train.jsonl").read_text().splitlines()[1])
    assert (first["chosen"][0]["content"], first["rejected"][0]["content"]) == ("Answer 1.0", "Answer 1.1")
