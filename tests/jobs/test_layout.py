"""The output directory's layout: checkpoints in step order, incomplete ones set aside, never deleted."""

from __future__ import annotations

from pathlib import Path

from jobs.layout import COMPLETE_MARKER, OutputLayout


def _checkpoint(layout: OutputLayout, step: int, complete: bool) -> Path:
    directory = layout.checkpoint(step)
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_text(str(step))
    if complete:
        (directory / COMPLETE_MARKER).write_text(str(step))
    return directory


def test_checkpoints_come_in_step_order_and_other_names_are_ignored(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path)
    for step in (10, 2, 100):
        _checkpoint(layout, step, complete=True)
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "checkpoint-7").write_text("a file, not a checkpoint")
    assert [step for step, _ in layout.checkpoints()] == [2, 10, 100]
    assert OutputLayout(tmp_path / "missing").checkpoints() == []


def test_incomplete_checkpoints_are_set_aside_under_a_clear_name_and_kept(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path)
    _checkpoint(layout, 5, complete=True)
    _checkpoint(layout, 10, complete=False)  # a pod killed mid-save, or non-finite weights
    assert layout.set_aside_incomplete() == [tmp_path / "incomplete-checkpoint-10"]
    assert [step for step, _ in layout.checkpoints()] == [5]
    assert (tmp_path / "incomplete-checkpoint-10" / "model.safetensors").read_text() == "10"
    _checkpoint(layout, 10, complete=False)  # the same step interrupted again: both are kept
    [second] = layout.set_aside_incomplete()
    assert second.name.startswith("incomplete-checkpoint-10.") and (second / "model.safetensors").is_file()
    assert layout.set_aside_incomplete() == []
