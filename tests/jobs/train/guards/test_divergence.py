"""Divergence: a run whose steps stay non-finite stops with exit 6; non-finite weights are never marked
complete or published, and the last good checkpoint and final model stay."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dev.testing import run_entrypoint
from jobs.layout import COMPLETE_MARKER
from jobs.train.guards.divergence import StepHealth, TrainingState, adamw_update_norm, weights_are_finite


@pytest.mark.parametrize(
    ("steps", "diverged_at"),
    [
        pytest.param([1.0, math.nan, math.nan, math.nan], 4, id="three-in-a-row"),
        pytest.param([math.nan, math.nan, 1.0, math.nan, math.nan], None, id="a-finite-step-resets"),
        pytest.param([math.inf, math.nan, -math.inf], 3, id="infinities-count"),
    ],
)
def test_the_streak_of_non_finite_steps(steps: list[float], diverged_at: int | None) -> None:
    health = StepHealth(limit=3)
    for step, loss in enumerate(steps, start=1):
        health.observe(torch.tensor(loss))
        health.observe(1.0)  # a finite gradient norm does not make a bad step good
        health.end_step(step)
    assert health.diverged_at == diverged_at


def test_weights_are_checked_for_non_finite_values() -> None:
    model = torch.nn.Linear(4, 2)
    assert weights_are_finite(model)
    with torch.no_grad():
        model.weight[0, 0] = math.nan
    assert not weights_are_finite(model)


@pytest.mark.slow
def test_a_diverging_run_exits_6_and_keeps_the_last_good_checkpoint_and_final(demo_model: str, tmp_path: Path) -> None:
    """At a learning rate of 1e9 without clipping the weights overflow within a few steps. (At 1e6 the demo
    model's weights grew to ~1e9 and its gradients vanished without overflowing: no divergence to catch.)"""
    previous = tmp_path / "final"
    previous.mkdir()
    (previous / "model.safetensors").write_text("the last good model")
    run = run_entrypoint(
        TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl",
        TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_LEARNING_RATE="1e9", TRAIN_MAX_GRAD_NORM="0", TRAIN_SAVE_STEPS="1",
        TRAIN_SAVE_TOTAL_LIMIT="1", TRAIN_MAX_STEPS="60", TRAIN_LOGGING_STEPS="1",
    )  # fmt: skip
    assert run.returncode == 6, run.stderr[-3000:]
    assert "training diverged" in run.stderr and "Lower TRAIN_LEARNING_RATE" in run.stderr
    complete = [p for p in tmp_path.glob("checkpoint-*") if (p / COMPLETE_MARKER).is_file()]
    # With TRAIN_SAVE_TOTAL_LIMIT=1 transformers' rotation would have deleted it for the non-finite ones.
    assert complete, "no good checkpoint before the divergence"
    newest = max(complete, key=lambda p: int(p.name.split("-")[1]))
    assert f"The newest complete checkpoint is {newest}" in run.stderr
    for checkpoint in complete:  # every complete checkpoint holds finite weights
        assert all(torch.isfinite(t).all() for t in load_file(checkpoint / "model.safetensors").values())
    assert (previous / "model.safetensors").read_text() == "the last good model"
    assert not list(tmp_path.glob("final.*"))  # the good final/ was neither replaced nor moved aside
    losses = [entry["loss"] for entry in run.logs() if "loss" in entry and "step" in entry]
    assert any(math.isnan(loss) for loss in losses)  # logged as it is, not as a running average


@pytest.mark.parametrize(
    ("inputs", "outputs", "tolerance"),
    [
        pytest.param(8, 4, 1e-2, id="small-tensors-read-whole"),
        pytest.param(1024, 512, 3e-2, id="a-large-tensor-read-as-a-strided-sample"),  # 524k elements: 1 in 8
    ],
)
def test_the_adamw_update_norm_is_the_change_of_the_weights(inputs: int, outputs: int, tolerance: float) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(inputs, outputs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        model(torch.randn(16, inputs)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        moved = torch.stack([(p.detach() - b).norm() for p, b in zip(model.parameters(), before, strict=True)]).norm()
        reported = adamw_update_norm(optimizer)
        assert reported == pytest.approx(float(moved), rel=tolerance)  # decay is applied to the weights before the step
    assert adamw_update_norm(torch.optim.SGD(model.parameters(), lr=0.1)) is None


@pytest.mark.parametrize(
    ("readings", "grad_norms", "warning"),
    [
        pytest.param({"update_ratio": 0.3}, [1.0], "the learning rate is far too high", id="updates-too-large"),
        pytest.param({"update_ratio": 1e-9}, [1.0], "the learning rate is too low", id="updates-vanishing"),
        pytest.param({}, [1.0, 1.1, 0.9, 1.0, 1.2, 50.0], "gradients are exploding", id="gradients-exploding"),
        pytest.param({}, [1e-12], "gradients vanished", id="gradients-vanished"),
        pytest.param({"update_ratio": 1e-3}, [1.0, 1.1, 0.9, 1.0, 1.2, 1.3], None, id="healthy"),
        pytest.param({"update_ratio": 0.0}, [1.0], None, id="warmup-starts-at-lr-0"),
    ],
)
def test_training_state_warnings(readings: dict[str, float], grad_norms: list[float], warning: str | None,
                                 caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    state = TrainingState()
    lr = 0.0 if readings.get("update_ratio") == 0.0 else 1e-4
    for step, grad_norm in enumerate(grad_norms, start=1):
        state.pending = dict(readings)
        assert state.take({"loss": 1.0, "grad_norm": grad_norm, "learning_rate": lr}, step) == readings
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert (warning in messages) if warning else not messages
