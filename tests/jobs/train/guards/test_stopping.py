"""Stopping on request: SIGTERM or Ctrl-C saves one complete checkpoint and exits 143, in one process and
across two gloo ranks; the restart resumes to the same weights as a run never stopped; a second signal
aborts at once."""

from __future__ import annotations

import functools
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerControl, TrainerState

from dev.demo import DEMOS
from dev.testing import REALDATA, ROOT, clean_env, run_entrypoint
from jobs.layout import COMPLETE_MARKER, OutputLayout
from jobs.train.guards.stopping import StopBudget
from tests.support.manifests import container_env, shipped_jobs


def _settings(model: str, output: Path, method: str = "sft", **extra: str) -> dict[str, str]:
    return {
        "TRAIN_METHOD": method, "TRAIN_MODEL_NAME_OR_PATH": model,
        "TRAIN_DATA_PATH": str(DEMOS[method].data), "TRAIN_OUTPUT_DIR": str(output),
        "TRAIN_MAX_STEPS": "60", "TRAIN_LOGGING_STEPS": "5", "TRAIN_SAVE_STEPS": "1000",
        "TRAIN_LEARNING_RATE": str(DEMOS[method].learning_rate), **extra,
    }  # fmt: skip


def _stop_after(settings: dict[str, str], step: int, signum: int) -> tuple[int, str]:
    """Run the entrypoint, send `signum` once it has logged `step`, and return its exit status and stderr."""
    process = subprocess.Popen([sys.executable, "entrypoint.py"], cwd=ROOT, env=clean_env(**settings),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if f'"step": {step},' in line and '"loss"' in line:
                process.send_signal(signum)
        # Popen's returncode is 143 for an exit with 143, but -15 for a process the signal killed.
        return process.wait(timeout=120), "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()


def _weights(output: Path) -> dict[str, torch.Tensor]:
    final = output / "final"
    return load_file(final / ("adapter_model.safetensors" if (final / "adapter_config.json").is_file()
                              else "model.safetensors"))  # fmt: skip


@pytest.fixture(scope="module")
def dropout_model(demo_model: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo model with attention dropout on, so that a bit-exact resume proves the RNG state is restored."""
    model = tmp_path_factory.mktemp("dropout-model")
    for item in Path(demo_model).iterdir():
        shutil.copy(item, model / item.name)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "attention_dropout": 0.1}))
    return str(model)


# Every method, full fine-tune and LoRA (whose lora_dropout is on by default); Ctrl-C once.
CASES = [
    *(pytest.param(m, lora, signal.SIGTERM, id=f"{m}-{'lora' if lora else 'full'}") for m in ("sft", "dpo", "kto")
      for lora in (False, True)),
    pytest.param("sft", False, signal.SIGINT, id="sft-full-ctrl-c"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("method", "lora", "signum"), CASES)
def test_a_stopped_run_resumes_to_the_weights_of_a_run_never_stopped(method: str, lora: bool, signum: int,
                                                                    dropout_model: str, tmp_path: Path) -> None:  # fmt: skip
    settings = functools.partial(_settings, dropout_model, method=method, TRAIN_USE_PEFT=str(lora).lower())
    whole = run_entrypoint(**settings(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]

    stopped = tmp_path / "stopped"
    at = random.choice(range(10, 50, 5))  # a logged step, chosen at random
    code, stderr = _stop_after(settings(stopped), at, signum)
    assert code == 143, f"signal after step {at}: " + stderr[-3000:]
    checkpoints = OutputLayout(stopped).checkpoints()
    assert len(checkpoints) == 1 and (checkpoints[0][1] / COMPLETE_MARKER).is_file(), checkpoints
    assert checkpoints[0][0] >= at and not (stopped / "final").exists()

    resumed = run_entrypoint(**settings(stopped))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {checkpoints[0][1]}" in resumed.stderr
    assert all(torch.equal(a, b) for a, b in zip(_weights(stopped).values(), _weights(tmp_path / "whole").values(),
                                                    strict=True)), f"weights differ after a stop at step {at}"  # fmt: skip
    # The first logging window after the resume averages fewer steps; every later one must match exactly.
    after = checkpoints[0][0] + 5
    same_steps = [(s, loss) for s, loss in zip(whole.steps(), whole.series("loss"), strict=True) if s > after]
    assert same_steps and same_steps == [
        (s, loss) for s, loss in zip(resumed.steps(), resumed.series("loss"), strict=True) if s > after
    ]


@pytest.mark.slow
def test_a_slow_accumulated_step_stops_at_the_next_micro_batch_and_resumes_exactly(llama_76m: str,
                                                                                   tmp_path: Path) -> None:  # fmt: skip
    """A genuinely slow step: the 76M model (attention dropout on), 512-token sequences, 4 micro-batches a
    step. The signal arrives in the first micro-batch of step 3; the job stops after that micro-batch and
    saves the state after step 2, instead of finishing step 3 first."""
    settings = functools.partial(
        _settings, llama_76m, TRAIN_DATA_PATH=str(REALDATA / "foundry_gsm8k_chat_train.jsonl"),
        TRAIN_MAX_STEPS="4", TRAIN_LOGGING_STEPS="1", TRAIN_MAX_LENGTH="512", TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="1",
        TRAIN_GRADIENT_ACCUMULATION_STEPS="4", TRAIN_LEARNING_RATE="1e-4",
    )  # fmt: skip
    whole = run_entrypoint(**settings(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    stopped = tmp_path / "stopped"
    code, stderr = _stop_after(settings(stopped), 2, signal.SIGTERM)
    assert code == 143, stderr[-3000:]
    assert "stopped between micro-batches of step 3: saving the state after step 2" in stderr
    assert [step for step, _ in OutputLayout(stopped).checkpoints()] == [2]
    assert OutputLayout(stopped).is_complete(OutputLayout(stopped).checkpoint(2))
    resumed = run_entrypoint(**settings(stopped))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert all(torch.equal(a, b) for a, b in zip(_weights(stopped).values(), _weights(tmp_path / "whole").values(),
                                                    strict=True)), "weights differ after a stop between micro-batches"  # fmt: skip
    assert resumed.series("loss") == whole.series("loss")[2:]


@pytest.mark.slow
def test_two_gloo_ranks_stop_at_one_step_and_write_one_checkpoint(demo_model: str, tmp_path: Path) -> None:
    settings = _settings(demo_model, tmp_path, TRAIN_ACCELERATE_CONFIG="multi_cpu", TRAIN_STOP_GRACE_SECONDS="60")
    code, stderr = _stop_after(settings, 20, signal.SIGTERM)
    assert code == 143, stderr[-3000:]
    assert "forwarding it to 2 training process(es)" in stderr
    checkpoints = OutputLayout(tmp_path).checkpoints()
    assert len(checkpoints) == 1 and (checkpoints[0][1] / COMPLETE_MARKER).is_file(), checkpoints
    assert (
        sorted(p.read_text() for p in OutputLayout(tmp_path).rank_status.glob("rank-*")) == ['{"exit_code": 143}'] * 2
    )
    resumed = run_entrypoint(**{**settings, "TRAIN_MAX_STEPS": "30"})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {checkpoints[0][1]}" in resumed.stderr


def test_a_second_signal_aborts_at_once() -> None:
    script = (
        "import os, signal, time\n"
        "from jobs.logs import setup_logging\n"
        "from jobs.train.guards.stopping import StopRequest\n"
        "setup_logging()\n"
        "StopRequest().install()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(0.2)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(10)\n"
        "raise SystemExit('not aborted')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30,
                            check=False)  # fmt: skip
    assert result.returncode == 143, result.stderr
    assert "SIGTERM received: saving a checkpoint" in result.stderr and "second SIGINT: aborting now" in result.stderr


@pytest.mark.parametrize(("name", "job"), shipped_jobs(), ids=[name for name, _ in shipped_jobs()])
def test_every_job_gives_the_job_its_grace_period(name: str, job: dict[str, Any]) -> None:
    assert float(container_env(job)["TRAIN_STOP_GRACE_SECONDS"]) == job["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]  # fmt: skip


def test_validate_ignores_nothing_about_the_grace_period(tmp_path: Path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl",
                         TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_STOP_GRACE_SECONDS="0")  # fmt: skip
    assert run.returncode == 2 and "TRAIN_STOP_GRACE_SECONDS=0.0 is out of range" in run.stderr


def test_a_stop_that_cannot_fit_the_grace_period_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    budget, state, control = StopBudget(grace_seconds=0.2), TrainerState(), TrainerControl()
    budget.on_step_begin(None, state, control)
    time.sleep(0.12)  # a real step of 0.12 s: within the budget alone
    budget.on_step_end(None, state, control)
    assert not budget.warned
    time.sleep(0.12)  # then a save of 0.12 s: 0.24 s in all, over the 0.2 s of grace
    budget.on_save(None, state, control)
    assert budget.warned and budget.needed > 0.2
    budget.on_step_begin(None, state, control)
    budget.on_step_end(None, state, control)
    assert sum("more than TRAIN_STOP_GRACE_SECONDS=0" in r.getMessage() for r in caplog.records) == 1
