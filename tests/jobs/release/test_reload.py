"""The staged final model is reloaded from disk and compared with the trained model before it is published
(jobs/release/reload.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dev.testing import ROOT, clean_env, run_entrypoint
from jobs.errors import EXIT_NOT_PUBLISHED
from jobs.layout import OutputLayout
from tests.support.servers import started


@pytest.mark.parametrize(("method", "data", "peft"), [("sft", "sft_messages.jsonl", "true"),
                                                       ("dpo", "dpo_pairs.jsonl", "false")])  # fmt: skip
def test_the_staged_model_reloads_matches_and_is_published(
    method: str, data: str, peft: str, demo_model: str, tmp_path: Path
) -> None:
    run = run_entrypoint(TRAIN_METHOD=method, TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_USE_PEFT=peft,
                         TRAIN_DATA_PATH=f"dev/demo_data/{data}", TRAIN_OUTPUT_DIR=str(tmp_path),
                         TRAIN_MAX_STEPS="3", TRAIN_LEARNING_RATE="1e-3")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "reloads from disk and matches the trained model (max |logit difference| " in run.stderr
    layout = OutputLayout(tmp_path)
    assert (layout.final / ("adapter_config.json" if peft == "true" else "model.safetensors")).is_file()
    assert not layout.final_partial.exists() and not layout.reload_reference.exists()


@pytest.mark.slow
def test_a_staged_file_truncated_before_the_check_is_not_published_and_final_stays(
    demo_model: str, tmp_path: Path
) -> None:
    layout = OutputLayout(tmp_path)
    layout.final.mkdir(parents=True)
    (layout.final / "model.safetensors").write_text("the last good model")
    env = clean_env(TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_OUTPUT_DIR=str(tmp_path),
                    TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl", TRAIN_MAX_STEPS="3",
                    TRAIN_ACCELERATE_CONFIG="cpu", TRAIN_METRICS_PORT="0")  # fmt: skip
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr, started([sys.executable, "entrypoint.py"], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=stderr) as run:  # fmt: skip
        # The training process staged the model and, last, its logits; the entrypoint (its parent) is held
        # before it checks them, while a file of the staged copy is cut short, as a failing volume would.
        deadline = time.monotonic() + 300
        while not layout.reload_reference.is_file():
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.01)
        os.kill(run.pid, signal.SIGSTOP)
        weights = layout.final_partial / "model.safetensors"
        with open(weights, "r+b") as handle:
            handle.truncate(weights.stat().st_size // 2)
        os.kill(run.pid, signal.SIGCONT)
        code = run.wait(timeout=300)
    text = log.read_text()
    assert code == EXIT_NOT_PUBLISHED, text[-3000:]
    assert f"the staged final model {layout.final_partial} was not published: it does not load" in text
    assert "Traceback" not in text
    assert (layout.final / "model.safetensors").read_text() == "the last good model"
    assert layout.final_partial.is_dir() and not list(tmp_path.glob("final.2*"))
    manifest = json.loads((layout.final_partial / "run_manifest.json").read_text())
    assert manifest["global_step"] == 3


def test_a_staging_without_the_trained_models_logits_is_not_published(tmp_path: Path) -> None:
    from jobs.errors import NotPublished
    from jobs.release.reload import _read_reference

    layout = OutputLayout(tmp_path)
    with pytest.raises(NotPublished, match=r"the trained model's logits .* do not read"):
        _read_reference(layout.final_partial, layout.reload_reference)
    layout.reload_reference.write_bytes(b"cut sho")
    with pytest.raises(NotPublished, match="do not read"):
        _read_reference(layout.final_partial, layout.reload_reference)
