"""TRAIN_DATA_MIX, a TRL dataset mixture: TRL's own `get_dataset` is the oracle for what `fraction` takes;
every source is validated (file, glob, snapshot, adapter), duplicates and leakage are found across sources,
and each bad input is refused before any model loads with the entry, the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dev.demo import dpo_records
from dev.testing import write_jsonl
from jobs.data.mixture import TRL_ENTRY_FIELDS, TRL_MIXTURE_FIELDS, read_mixture, shares
from jobs.errors import ConfigError
from tests.support.mixtures import DEMO, docs_recipe, run_job, sft_sources


def _texts(path: Path, source: str, count: int) -> Path:
    return write_jsonl(path, [{"text": f"{source} row {n}: {n} {n + 1} {n + 2}"} for n in range(count)])


def _validate(tmp_path: Path, mix: str, method: str = "sft", **settings: str) -> tuple[Any, dict[str, Any]]:
    out = tmp_path / "out"
    env = {"TRAIN_METHOD": method, "TRAIN_DATA_MIX": mix, "TRAIN_OUTPUT_DIR": str(out), **settings}
    run = run_job("validate", env=env)
    path = out / "validation_report.json"
    return run, (json.loads(path.read_text()) if path.exists() else {})


def _prepared(tmp_path: Path) -> list[dict[str, Any]]:
    """The prepared records, train then eval."""
    records = []
    for side in ("train", "eval"):
        path = tmp_path / "out" / "data" / f"{side}.jsonl"
        if path.exists():
            records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


# --- TRL's get_dataset as the oracle ---------------------------------------------------------------------


def _trl_mixture(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, yaml_text: str) -> list[str]:
    """The texts TRL's own `get_dataset` gives for this mixture YAML, offline, in order."""
    import yaml
    from trl.scripts.utils import DatasetMixtureConfig, get_dataset

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    config = DatasetMixtureConfig(**yaml.safe_load(yaml_text))
    return list(get_dataset(config)["train"]["text"])


MIXES = [
    pytest.param((200, 100, 100), (0.5, 0.3, 0.2), id="trl-docstring-shares"),
    pytest.param((120, 40), (0.75, 0.25), id="trl-test-fraction"),
    pytest.param((30, 50, 70), (1, 1, 1), id="equal-weights-uneven-sizes"),
    pytest.param((90, 90), (3, 1), id="unnormalised"),
    pytest.param((17, 203, 5), (0.2, 0.7, 0.1), id="small-source-caps-the-mixture"),
    pytest.param((25, 35), (None, None), id="no-fraction-concatenates"),
]


@pytest.mark.parametrize(("sizes", "fractions"), MIXES)
def test_the_shares_equal_trl_get_dataset_on_the_same_files(
    sizes: tuple[int, ...], fractions: tuple[float | None, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = ["datasets:"]
    for i, (size, fraction) in enumerate(zip(sizes, fractions, strict=True)):
        _texts(tmp_path / f"s{i}.jsonl", f"s{i}", size)
        lines += ["  - path: json", f"    data_files: {tmp_path / f's{i}.jsonl'}"]
        lines += [f"    fraction: {fraction}"] if fraction is not None else []
    yaml_text = "\n".join(lines) + "\n"
    trl_rows = _trl_mixture(monkeypatch, tmp_path, yaml_text)
    trl_counts = [sum(row.startswith(f"s{i} ") for row in trl_rows) for i in range(len(sizes))]
    assert shares(list(sizes), list(fractions)) == trl_counts

    run, report = _validate(tmp_path, yaml_text)  # the same YAML, as the job reads it
    assert run.returncode == 0, run.stderr[-3000:]
    assert [entry["selected"] for entry in report["mixture"]["entries"]] == trl_counts
    assert [record["text"] for record in _prepared(tmp_path)] == trl_rows  # the same rows, in TRL's order


def test_the_job_knows_every_field_of_trl_mixture_config() -> None:
    """A TRL upgrade that adds a field to DatasetConfig or DatasetMixtureConfig fails here, not silently."""
    import dataclasses

    from trl.scripts.utils import DatasetConfig, DatasetMixtureConfig

    assert {f.name for f in dataclasses.fields(DatasetConfig)} == TRL_ENTRY_FIELDS
    assert {f.name for f in dataclasses.fields(DatasetMixtureConfig)} == TRL_MIXTURE_FIELDS


# --- three layouts and an adapter ------------------------------------------------------------------------


def test_three_sources_report_their_counts_files_and_what_each_gave(tmp_path: Path) -> None:
    run, report = _validate(tmp_path, sft_sources(tmp_path / "src"))
    assert run.returncode == 0, run.stderr[-3000:]
    mixture = report["mixture"]
    entries = mixture["entries"]
    assert report["layout"] == "mixture" and mixture["selection"] == "first"
    assert [(e["layout"], e["detected"]) for e in entries] == [
        ("file", "messages"), ("glob", "messages"), ("file", "alpaca -> messages")
    ]  # fmt: skip
    assert [e["valid"] for e in entries] == [400, 200, 100]
    assert [e["selected"] for e in entries] == shares([400, 200, 100], [0.5, 0.3, 0.2]) == [250, 150, 100]
    assert sum(e["selected_eval"] for e in entries) == report["split"]["eval"] > 0
    assert report["split"]["train"] + report["split"]["eval"] == 500
    assert [len(e["files"]) for e in entries] == [1, 2, 1] and all(f["sha256"] for e in entries for f in e["files"])
    assert {f["source"] for f in report["files"]} == {0, 1, 2}
    assert "250 selected (the first rows, as TRL's fraction takes them)" in run.stderr


def test_a_snapshot_entry_takes_its_split_only_and_says_its_other_splits_are_not_eval_data(tmp_path: Path) -> None:
    snap = tmp_path / "snap" / "data"
    snap.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(dpo_records(40, seed=3)), snap / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(dpo_records(10, seed=4)), snap / "test-00000-of-00001.parquet")
    mix = f"datasets:\n  - path: {tmp_path / 'snap'}\n  - path: {DEMO / 'dpo_pairs.jsonl'}\n"
    run, report = _validate(tmp_path, mix, method="dpo")
    assert run.returncode == 0, run.stderr[-3000:]
    assert report["mixture"]["entries"][0]["other_splits"] == ["test"] and report["split"]["eval"] == 0
    assert "its test split(s) are not evaluation data" in run.stderr
    assert [e["selected"] for e in report["mixture"]["entries"]] == [40, 400]  # no fraction: every record


def test_duplicates_and_leakage_are_found_across_sources(tmp_path: Path) -> None:
    a = _texts(tmp_path / "a.jsonl", "a", 20)
    b = write_jsonl(tmp_path / "b.jsonl", [{"text": "b only"}, json.loads(a.read_text().splitlines()[3])])
    run, report = _validate(tmp_path, f"datasets: [{{path: {a}}}, {{path: {b}}}]")
    assert run.returncode == 0, run.stderr[-3000:]
    duplicate = report["files"][1]["duplicates"]
    assert duplicate["count"] == 1 and duplicate["examples"][0] == {"line": 2, "first_line": 4, "first_file": str(a)}
    leak = write_jsonl(tmp_path / "eval.jsonl", [json.loads(b.read_text().splitlines()[0])])
    run, _ = _validate(tmp_path, f"datasets: [{{path: {a}}}, {{path: {b}}}]", TRAIN_EVAL_DATA_PATH=str(leak))
    assert run.returncode == 3 and "leaks into training" in run.stderr and str(b) in run.stderr


def test_the_same_prompt_in_two_sources_lands_on_one_side(tmp_path: Path) -> None:
    records = [{"prompt": f"Question {n}?", "completion": f"Answer {n}."} for n in range(60)]
    a = write_jsonl(tmp_path / "a.jsonl", records)
    b = write_jsonl(tmp_path / "b.jsonl", [{**r, "completion": r["completion"] + " Indeed."} for r in records])
    run, _ = _validate(tmp_path, f"datasets: [{{path: {a}}}, {{path: {b}}}]\ntest_split_size: 0.25\n")
    assert run.returncode == 0, run.stderr[-3000:]
    sides = {}
    for side in ("train", "eval"):
        for line in (tmp_path / "out" / "data" / f"{side}.jsonl").read_text().splitlines():
            sides.setdefault(json.loads(line)["prompt"], set()).add(side)
    assert len(sides) == 60 and all(len(found) == 1 for found in sides.values())
    assert any(found == {"eval"} for found in sides.values())


def test_columns_cut_each_record_before_its_format_is_detected(tmp_path: Path) -> None:
    pairs = [{**r, "source": "web", "score": 3} for r in dpo_records(30, seed=5)]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    mix = f"datasets:\n  - path: {data}\n    columns: [prompt, chosen, rejected]\n"
    run, report = _validate(tmp_path, mix, method="dpo")
    assert run.returncode == 0, run.stderr[-3000:]
    assert report["files"][0]["format"] == "preference" and not report["files"][0]["warnings"]
    prompt_only = f"datasets:\n  - path: {data}\n    columns: [prompt]\n"
    run, _ = _validate(tmp_path, prompt_only, method="dpo")
    assert run.returncode == 3 and "datasets[0]" in run.stderr, run.stderr[-2000:]
    missing = f"datasets:\n  - path: {data}\n    columns: [prompt, chosen, answer]\n"
    run, _ = _validate(tmp_path, missing, method="dpo")
    assert run.returncode == 3 and "has no column 'answer'" in run.stderr and f"{data}:1" in run.stderr


# --- refusals --------------------------------------------------------------------------------------------

TEXT = DEMO / "sft_messages.jsonl"
REFUSED = [
    pytest.param("datasets:\n  - path: a.jsonl\n    fraction: [0.5\n", {}, "line 4, column 1", id="yaml-syntax"),
    pytest.param(
        f"datasets:\n  - path: {TEXT}\n    path: {TEXT}\n", {}, "the key 'path' is given twice", id="duplicate-key"
    ),
    pytest.param("- path: a.jsonl\n", {}, "nor a YAML mapping with `datasets:`", id="not-a-mapping"),
    pytest.param("datasets: []\n", {}, "`datasets` must be a non-empty list", id="no-datasets"),
    pytest.param("datasets: [3]\n", {}, "datasets[0] is not a mapping", id="entry-not-a-mapping"),
    pytest.param("datasets: [{split: train}]\n", {}, "datasets[0].path is missing", id="no-path"),
    pytest.param(f"datasets: [{{path: {TEXT}, fracton: 0.5}}]\n", {}, "did you mean fraction?", id="entry-typo"),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}, {{path: /nowhere/b.jsonl}}]\n",
        {},
        "datasets[1].path='/nowhere/b.jsonl' is not a local file, glob or folder; the job never downloads: "
        "mount it and give the folder",
        id="missing-file",
    ),
    pytest.param(
        "datasets: [{path: /nowhere/*.jsonl}]\n",
        {},
        "datasets[0].path=/nowhere/*.jsonl matches no file",
        id="empty-glob",
    ),
    pytest.param("datasets: [{path: stanfordnlp/imdb}]\n", {}, "(a Hub id?); the job never downloads", id="hub-id"),
    pytest.param(
        f"datasets: [{{path: {TEXT}, fraction: 0}}]\n", {}, "a share must be a positive number", id="zero-share"
    ),
    pytest.param(
        f"datasets: [{{path: {TEXT}, fraction: -0.5}}]\n", {}, "datasets[0].fraction=-0.5", id="negative-share"
    ),
    pytest.param(f"datasets: [{{path: {TEXT}, fraction: half}}]\n", {}, "is not a number", id="share-not-a-number"),
    pytest.param(
        f"datasets: [{{path: {TEXT}, fraction: 1e-1}}]\n",
        {},
        "YAML 1.1 reads 1e-1 as text: write it with a dot, 0.1",
        id="yaml-1-1-float",
    ),
    pytest.param(f"datasets: [{{path: {TEXT}, fraction: true}}]\n", {}, "is not a number", id="share-bool"),
    pytest.param(
        f"datasets: [{{path: {TEXT}, fraction: 0}}, {{path: {TEXT}, fraction: 0}}]\n",
        {},
        "the shares (`fraction`) sum to 0.0: the mixture would hold nothing",
        id="shares-sum-to-nothing",
    ),
    pytest.param(
        f"datasets: [{{path: {TEXT}, fraction: 0.5}}, {{path: {TEXT}}}]\n",
        {},
        "`fraction` must be set for either all datasets in the mixture or none of them",
        id="partial-shares",
    ),
    pytest.param(f"datasets: [{{path: {TEXT}}}]\nstreaming: true\n", {}, "never streams", id="streaming"),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\ntest_split_size: 2\n", {}, "is a row count to TRL", id="test-split-rows"
    ),
    pytest.param(f"datasets: [{{path: {TEXT}}}]\ntest_split_size: 0.7\n", {}, "at most 0.5", id="test-split-large"),
    pytest.param(
        f"datasets: [{{path: {TEXT}, name: plain_text}}]\n", {}, "datasets[0].name='plain_text'", id="config-name"
    ),
    pytest.param(f"datasets: [{{path: {TEXT}, split: 'train[:10%]'}}]\n", {}, "split slices", id="split-slice"),
    pytest.param(f"datasets: [{{path: {TEXT}, split: test}}]\n", {}, "not 'test'", id="split-of-a-plain-file"),
    pytest.param(f"datasets: [{{path: {TEXT}}}]\nenv: {{A: b}}\n", {}, "set them on the container", id="env"),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\ndataset_name: x/y\n",
        {},
        "`dataset_name` names a single dataset",
        id="dataset-name",
    ),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\ndataset_train_split: other\n",
        {},
        "only TRL's default 'train'",
        id="train-split-key",
    ),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\nlearnin_rate: 0.1\n", {}, "did you mean TRAIN_LEARNING_RATE?", id="unknown-key"
    ),
    pytest.param(f"datasets: [{{path: {TEXT}}}]\nbeta: 0.1\n", {}, "applies to TRAIN_METHOD=", id="other-method"),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\nlearning_rate: 1.0e-4\n",
        {"TRAIN_LEARNING_RATE": "2e-5"},
        "sets learning_rate: 0.0001, but TRAIN_LEARNING_RATE=2e-05; set TRAIN_LEARNING_RATE=0.0001",
        id="setting-disagrees",
    ),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\nlearning_rate: 1.0e-4\n",
        {},
        "TRAIN_LEARNING_RATE is not set; set TRAIN_LEARNING_RATE=0.0001",
        id="setting-unset",
    ),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\n",
        {"TRAIN_DATA_PATH": str(TEXT)},
        "TRAIN_DATA_PATH and TRAIN_DATA_MIX are both set",
        id="path-and-mix",
    ),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\n",
        {"TRAIN_DATA_FORMAT": "messages"},
        "give each entry its `format:`",
        id="data-format-with-mix",
    ),
    pytest.param(
        f"datasets: [{{path: {TEXT}}}]\ntest_split_size: 0.1\n",
        {"TRAIN_EVAL_SPLIT": "0.1"},
        "sets test_split_size and TRAIN_EVAL_SPLIT is set too",
        id="two-eval-sources",
    ),
    pytest.param("/nowhere/mix.yaml", {}, "TRAIN_DATA_MIX=/nowhere/mix.yaml does not read", id="yaml-path-missing"),
]


@pytest.mark.parametrize(("mix", "settings", "expected"), REFUSED)
def test_a_bad_mixture_is_exit_2_naming_the_entry_and_the_fix(
    mix: str, settings: dict[str, str], expected: str, tmp_path: Path
) -> None:
    run, _ = _validate(tmp_path, mix, **settings)
    assert run.returncode == 2, run.stderr[-2000:]
    assert expected in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr


def test_data_that_cannot_train_together_is_exit_3_naming_both_entries(tmp_path: Path) -> None:
    text = _texts(tmp_path / "text.jsonl", "t", 20)
    run, _ = _validate(tmp_path, f"datasets: [{{path: {text}}}, {{path: {DEMO / 'dpo_pairs.jsonl'}}}]")
    assert run.returncode == 3, run.stderr[-2000:]
    assert f"datasets[1] ({DEMO / 'dpo_pairs.jsonl'})" in run.stderr and "set TRAIN_METHOD to dpo" in run.stderr
    run, _ = _validate(tmp_path, f"datasets: [{{path: {text}}}, {{path: {TEXT}}}]")
    assert run.returncode == 3, run.stderr[-2000:]
    assert f"datasets[0] ({text}): text and datasets[1] ({TEXT}): messages cannot train together" in run.stderr
    tiny = f"datasets: [{{path: {text}, fraction: 1000}}, {{path: {TEXT}, fraction: 0.001}}]"
    run, _ = _validate(tmp_path / "tiny", tiny.replace(str(TEXT), str(_texts(tmp_path / "t2.jsonl", "u", 5))))
    assert run.returncode == 3 and "its share 0.001 rounds to 0 of its 5 valid records" in run.stderr
    assert "Traceback" not in run.stderr


def test_refusals_come_before_any_model_loads(demo_model: str, tmp_path: Path) -> None:
    """A training run: the config refusal before preflight, the data refusal in preflight; no training."""
    out = tmp_path / "out"
    base = {"TRAIN_METHOD": "sft", "TRAIN_MODEL_NAME_OR_PATH": demo_model, "TRAIN_OUTPUT_DIR": str(out)}
    config = run_job(env={**base, "TRAIN_DATA_MIX": "datasets: [{path: /nowhere/a.jsonl}]"})
    data = run_job(
        env={**base, "TRAIN_DATA_MIX": f"datasets: [{{path: {TEXT}}}, {{path: {DEMO / 'dpo_pairs.jsonl'}}}]"}
    )
    for run, code in ((config, 2), (data, 3)):
        assert run.returncode == code, run.stderr[-2000:]
        assert "Traceback" not in run.stderr and "training sft on" not in run.stderr
    assert not list(out.glob("checkpoint-*")) and not (out / "final").exists()


# --- TRL's own recipe, as its docs give it ---------------------------------------------------------------


def test_trl_docs_recipe_reads_as_it_is(demo_model: str, tmp_path: Path) -> None:
    recipe = tmp_path / "sft_config.yaml"
    recipe.write_text(docs_recipe(tmp_path, demo_model), encoding="utf-8")
    unset, _ = _validate(tmp_path, str(recipe))
    assert unset.returncode == 2 and f"set TRAIN_MODEL_NAME_OR_PATH={demo_model}" in unset.stderr
    run, report = _validate(tmp_path, str(recipe), TRAIN_MODEL_NAME_OR_PATH=demo_model)
    assert run.returncode == 0, run.stderr[-3000:]
    entries = report["mixture"]["entries"]
    assert [(e["layout"], e["selected"], e["other_splits"]) for e in entries] == [
        ("snapshot", 50, ["test"]), ("snapshot", 60, [])
    ]  # fmt: skip
    assert report["split"]["train"] == 110


def test_read_mixture_takes_inline_yaml_flow_yaml_and_a_path(tmp_path: Path) -> None:
    block = f"datasets:\n  - path: {TEXT}\n    fraction: 2\n"
    (tmp_path / "mix.YML").write_text(block)
    for value in (block, f"{{datasets: [{{path: {TEXT}, fraction: 2}}]}}", str(tmp_path / "mix.YML")):
        mixture = read_mixture(value)
        assert [(e.path, e.fraction) for e in mixture.entries] == [(str(TEXT), 2.0)]
    assert read_mixture(str(tmp_path / "mix.YML")).source == str(tmp_path / "mix.YML")
    with pytest.raises(ConfigError) as refused:
        read_mixture("datasets:\n  - path: a\n  - fraction: x\n")
    assert refused.value.problems == [
        "TRAIN_DATA_MIX datasets[1].path is missing; every entry names its data (a file, glob or folder)",
        "TRAIN_DATA_MIX datasets[1].fraction='x' is not a number; give the entry's share, such as 0.3",
    ]


def test_a_large_source_validated_in_parallel_shards_gives_the_same_mixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each record's side is kept in order across the shards' files, so a source's first records are the same
    whether it was read in one pass or in parallel shards."""
    from jobs.data import shards
    from jobs.data.mixing import validate_mixture
    from jobs.data.mixture import resolve_sources
    from jobs.preflight.data import data_policy

    a, b = _texts(tmp_path / "a.jsonl", "a", 300), _texts(tmp_path / "b.jsonl", "b", 100)
    mixture = read_mixture(f"datasets: [{{path: {a}, fraction: 0.4}}, {{path: {b}, fraction: 0.6}}]")
    policy = data_policy("sft", eval_split=0.2, seed=7)
    outputs = []
    for name, threshold in (("one-pass", shards.SHARD_MIN_BYTES), ("sharded", 1)):
        monkeypatch.setattr(shards, "SHARD_MIN_BYTES", threshold)
        monkeypatch.setattr(shards, "worker_count", lambda: 2)
        result, report = validate_mixture(mixture, resolve_sources(mixture), (), policy, tmp_path / name)
        assert result.refused is None, result.refused
        prepared = [(tmp_path / name / f"{side}.jsonl").read_bytes() for side in ("train", "eval")]
        outputs.append(([e["selected"] for e in report["entries"]], prepared))
    assert outputs[0] == outputs[1] and outputs[0][0] == shares([300, 100], [0.4, 0.6]) == [67, 100]


def test_a_file_named_by_two_entries_counts_its_second_copy_as_duplicates(tmp_path: Path) -> None:
    a, b = _texts(tmp_path / "a.jsonl", "a", 10), _texts(tmp_path / "b.jsonl", "b", 5)
    run, report = _validate(tmp_path, f"datasets: [{{path: {a}}}, {{path: {a}}}, {{path: {b}}}]")
    assert run.returncode == 0, run.stderr[-3000:]
    assert [(f["path"], f["duplicates"]["count"]) for f in report["files"]] == [(str(a), 10), (str(a), 0), (str(b), 0)]
    assert [e["selected"] for e in report["mixture"]["entries"]] == [10, 10, 5]


def test_a_datasets_builder_reads_data_files_or_the_files_of_data_dir(tmp_path: Path) -> None:
    folder = tmp_path / "jsonl"
    folder.mkdir()
    _texts(folder / "a.jsonl", "a", 4)
    _texts(folder / "b.jsonl", "b", 6)
    run, report = _validate(tmp_path, f"datasets: [{{path: json, data_dir: {folder}}}]")
    assert run.returncode == 0, run.stderr[-3000:]
    assert report["mixture"]["entries"][0]["layout"] == "directory" and report["split"]["train"] == 10
    split_files = f"datasets: [{{path: json, data_files: {{train: {folder}/b.jsonl, test: {folder}/a.jsonl}}}}]"
    run, report = _validate(tmp_path, split_files)
    assert run.returncode == 0 and report["split"]["train"] == 6, run.stderr[-3000:]
    run, _ = _validate(tmp_path, "datasets: [{path: json}]")
    assert run.returncode == 2 and "give its files in `data_files`" in run.stderr
