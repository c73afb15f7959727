"""Publishing final/: beside itself, then renamed; readable as the umask allows; its manifest names the data
as preflight recorded it, whatever layout TRAIN_DATA_PATH had."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from dev.demo import DEMOS
from dev.testing import run_entrypoint
from jobs.release.reload import publish_final


def test_publishing_keeps_the_previous_final_model(tmp_path: Path) -> None:
    old, new = tmp_path / "final", tmp_path / "final.partial"
    old.mkdir()
    (old / "model.safetensors").write_text("old")
    new.mkdir()
    (new / "model.safetensors").write_text("new")
    publish_final(new, old)
    assert (old / "model.safetensors").read_text() == "new"
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("final.")]
    assert len(kept) == 1 and (kept[0] / "model.safetensors").read_text() == "old"


def test_the_published_model_is_readable_as_the_umask_allows(tmp_path: Path) -> None:
    """safetensors writes weights 0600; a serving pod or the volume's group must be able to read final/."""
    import torch
    from safetensors.torch import save_file

    partial = tmp_path / "final.partial"
    partial.mkdir()
    save_file({"w": torch.zeros(2)}, str(partial / "model.safetensors"))
    assert (partial / "model.safetensors").stat().st_mode & 0o777 == 0o600
    mask = os.umask(0o027)
    try:
        publish_final(partial, tmp_path / "final")
    finally:
        os.umask(mask)
    assert (tmp_path / "final" / "model.safetensors").stat().st_mode & 0o777 == 0o640


def _shards(root: Path, layout: str) -> str:
    """The SFT demo data in three shards, laid out as `layout`; what TRAIN_DATA_PATH is set to."""
    lines = DEMOS["sft"].data.read_text(encoding="utf-8").splitlines(keepends=True)
    parts = [lines[i::3] for i in range(3)]
    if layout == "snapshot":  # as huggingface_hub downloads a dataset: split names, a card, a cache
        for n, part in enumerate(parts):
            (root / "data").mkdir(parents=True, exist_ok=True)
            (root / "data" / f"train-{n:05d}-of-00003.jsonl").write_text("".join(part), encoding="utf-8")
        (root / "README.md").write_text("---\nconfigs: ...\n---")
        (root / ".cache" / "huggingface").mkdir(parents=True)
        return str(root)
    root.mkdir(parents=True)
    for n, part in enumerate(parts):
        (root / f"part-{n}.jsonl").write_text("".join(part), encoding="utf-8")
    return str(root / "part-*.jsonl") if layout == "glob" else str(root)


@pytest.mark.parametrize("layout", ["directory", "glob", "snapshot"])
def test_a_run_from_shards_publishes_final_with_the_data_preflight_recorded(
    layout: str, demo_model: str, tmp_path: Path
) -> None:
    """Training (not only validation) from each layout the README documents reaches final/. The final save
    once hashed TRAIN_DATA_PATH again and crashed on a directory or a glob after the whole training."""
    data = _shards(tmp_path / "data", layout)
    out = tmp_path / "out"
    run = run_entrypoint(TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=data,
                         TRAIN_OUTPUT_DIR=str(out), TRAIN_MAX_STEPS="3", TRAIN_EVAL_SPLIT="0.1")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((out / "final" / "run_manifest.json").read_text())
    assert manifest["data"]["layout"] == layout
    sources = manifest["data"]["sources"]
    assert len(sources) == 3 and sum(source["records"] for source in sources) == 400
    for source in sources:
        assert source["sha256"] == hashlib.sha256(Path(source["path"]).read_bytes()).hexdigest()
    prepared = manifest["data"]["prepared"]
    assert prepared["train"]["sha256"] == hashlib.sha256((out / "data" / "train.jsonl").read_bytes()).hexdigest()
    assert prepared["train"]["records"] + prepared["eval"]["records"] == 400
