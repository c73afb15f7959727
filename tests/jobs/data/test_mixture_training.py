"""TRAIN_DATA_MIX end to end: a three-source mixture (a file, a glob or snapshot of shards, an adapter)
trains to final/, whose manifest records what each source gave; a restart with a share changed is refused
naming the entry and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dev.demo import dpo_records
from dev.testing import Run, write_jsonl
from jobs.data.mixture import shares
from tests.support.mixtures import docs_recipe, run_job, sft_sources


def _train(demo_model: str, out: Path, method: str, mix: str, **settings: str) -> Run:
    env = {
        "TRAIN_METHOD": method,
        "TRAIN_MODEL_NAME_OR_PATH": demo_model,
        "TRAIN_DATA_MIX": mix,
        "TRAIN_OUTPUT_DIR": str(out),
        "TRAIN_MAX_STEPS": "3",
        "TRAIN_SAVE_STEPS": "3",
        "TRAIN_LOGGING_STEPS": "1",
    }
    return run_job(env={**env, **settings})


def _manifest_mixture(out: Path) -> dict:
    manifest = json.loads((out / "final" / "run_manifest.json").read_text())
    assert manifest["data"]["layout"] == "mixture"
    return manifest["data"]["mixture"]


def test_a_three_source_sft_mixture_trains_and_a_changed_share_is_refused_on_restart(
    demo_model: str, tmp_path: Path
) -> None:
    mix = tmp_path / "mix.yaml"
    mix.write_text(sft_sources(tmp_path / "src"), encoding="utf-8")
    out = tmp_path / "out"
    first = _train(demo_model, out, "sft", str(mix))
    assert first.returncode == 0, first.stderr[-3000:]
    entries = _manifest_mixture(out)["entries"]
    assert [e["selected"] for e in entries] == shares([400, 200, 100], [0.5, 0.3, 0.2]) == [250, 150, 100]
    assert [e["detected"] for e in entries] == ["messages", "messages", "alpaca -> messages"]
    report = json.loads((out / "validation_report.json").read_text())
    assert report["mixture"]["entries"] == entries and report["prepared"]["train"]["records"] > 0

    mix.write_text(mix.read_text().replace("fraction: 0.3", "fraction: 0.5"), encoding="utf-8")
    changed = _train(demo_model, out, "sft", str(mix), TRAIN_MAX_STEPS="6")
    assert changed.returncode == 2, changed.stderr[-3000:]
    assert "datasets[1]" in changed.stderr and "fraction 0.3 then, 0.5 now" in changed.stderr
    assert "Traceback" not in changed.stderr


def _conversational(pair: dict) -> dict:
    return {"prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}  # fmt: skip


@pytest.mark.slow
def test_a_three_source_dpo_mixture_trains(demo_model: str, tmp_path: Path) -> None:
    """A jsonl file, a snapshot folder of parquet shards and LLaMA-Factory's alpaca preference layout, all
    conversational preference once converted."""
    file = write_jsonl(tmp_path / "pairs.jsonl", [_conversational(p) for p in dpo_records(300, seed=11)])
    shards = tmp_path / "snap" / "data"
    shards.mkdir(parents=True)
    records = [_conversational(p) for p in dpo_records(200, seed=12)]
    for i in range(2):
        pq.write_table(pa.Table.from_pylist(records[i * 100 : (i + 1) * 100]),
                       shards / f"train-0000{i}-of-00002.parquet")  # fmt: skip
    alpaca = [{"instruction": p["prompt"], "input": "", "chosen": p["chosen"], "rejected": p["rejected"]}
              for p in dpo_records(100, seed=13)]  # fmt: skip
    (tmp_path / "ranking.json").write_text(json.dumps(alpaca), encoding="utf-8")
    mix = (f"datasets:\n  - path: {file}\n    fraction: 0.6\n  - path: {tmp_path / 'snap'}\n    fraction: 0.3\n"
           f"  - path: {tmp_path / 'ranking.json'}\n    fraction: 0.1\ntest_split_size: 0.1\n")  # fmt: skip
    out = tmp_path / "out"
    run = _train(demo_model, out, "dpo", mix)
    assert run.returncode == 0, run.stderr[-3000:]
    entries = _manifest_mixture(out)["entries"]
    assert [e["layout"] for e in entries] == ["file", "snapshot", "file"]
    assert [e["detected"] for e in entries] == [
        "conversational_preference", "conversational_preference", "alpaca_preference -> conversational_preference"
    ]  # fmt: skip
    assert [e["selected"] for e in entries] == shares([300, 200, 100], [0.6, 0.3, 0.1])


@pytest.mark.slow
def test_trl_docs_recipe_trains_as_it_is(demo_model: str, tmp_path: Path) -> None:
    recipe = tmp_path / "sft_config.yaml"
    recipe.write_text(docs_recipe(tmp_path, demo_model), encoding="utf-8")
    out = tmp_path / "out"
    run = _train(demo_model, out, "sft", str(recipe))
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["selected"] for e in _manifest_mixture(out)["entries"]] == [50, 60]
