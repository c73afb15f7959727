"""DeepSpeed ZeRO-2 and ZeRO-3 for real on CPU: two processes over gloo, SFT and DPO, full and LoRA; a
ZeRO-3 checkpoint resumes, and the final model loads with from_pretrained. The GPU configs no other test
runs (single_gpu, zero3_offload with DeepSpeed's CPU Adam) train here too: every shipped config runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev.demo import DEMOS
from dev.testing import ROOT, run_entrypoint
from jobs.layout import OutputLayout


def _settings(method: str, zero: str, lora: bool, output: Path, *, model: str, steps: int) -> dict[str, str]:
    return {"TRAIN_METHOD": method, "TRAIN_MODEL_NAME_OR_PATH": model, "TRAIN_DATA_PATH": str(DEMOS[method].data),
            "TRAIN_OUTPUT_DIR": str(output), "TRAIN_ACCELERATE_CONFIG": zero, "TRAIN_NUM_PROCESSES": "2",
            "TRAIN_USE_PEFT": str(lora).lower(), "TRAIN_MAX_STEPS": str(steps), "TRAIN_SAVE_STEPS": "4",
            "TRAIN_LOGGING_STEPS": "2", "TRAIN_LEARNING_RATE": str(DEMOS[method].learning_rate)}  # fmt: skip


def _loads(final: Path) -> None:
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    loader = AutoPeftModelForCausalLM if (final / "adapter_config.json").is_file() else AutoModelForCausalLM
    assert loader.from_pretrained(str(final)).num_parameters() > 0


@pytest.mark.slow
@pytest.mark.parametrize("zero", ["zero2", "zero3"])
@pytest.mark.parametrize(("method", "lora"), [("sft", False), ("sft", True), ("dpo", False), ("dpo", True)],
                         ids=["sft-full", "sft-lora", "dpo-full", "dpo-lora"])  # fmt: skip
def test_zero_trains_on_two_cpu_processes_and_the_final_model_loads(zero: str, method: str, lora: bool,
                                                                   demo_model: str, tmp_path: Path) -> None:  # fmt: skip
    run = run_entrypoint(**_settings(method, zero, lora, tmp_path, model=demo_model, steps=4))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "launching:" in run.stderr and "--num_processes 2" in run.stderr
    assert len(run.series("loss")) == 2
    _loads(tmp_path / "final")


@pytest.mark.slow
def test_a_zero3_checkpoint_resumes(demo_model: str, tmp_path: Path) -> None:
    """Full-fine-tune DPO under ZeRO-3 (weights and reference partitioned): save, then resume to more steps."""
    first = run_entrypoint(**_settings("dpo", "zero3", False, tmp_path, model=demo_model, steps=4))
    assert first.returncode == 0, first.stderr[-3000:]
    layout = OutputLayout(tmp_path)
    assert [(step, layout.is_complete(path)) for step, path in layout.checkpoints()] == [(4, True)]
    longer = run_entrypoint(**_settings("dpo", "zero3", False, tmp_path, model=demo_model, steps=8))
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert f"resuming from {layout.checkpoint(4)}" in longer.stderr
    assert [entry["step"] for entry in longer.logs() if "loss" in entry and "step" in entry] == [6, 8]
    _loads(tmp_path / "final")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "processes"), [("cpu", "1"), ("single_gpu", "1"), ("multi_gpu", "2"), ("zero3_offload", "2")]
)
def test_the_other_configs_train_here_on_cpu(config: str, processes: str, demo_model: str, tmp_path: Path) -> None:
    """cpu and single_gpu in one process with the trainer's use_cpu; multi_gpu as DDP over gloo;
    zero3_offload over gloo with the optimizer and parameters offloaded, which compiles DeepSpeed's CPU
    Adam (once, into TORCH_EXTENSIONS_DIR)."""
    settings = {
        **_settings("sft", config, False, tmp_path, model=demo_model, steps=4),
        "TRAIN_NUM_PROCESSES": processes,
    }
    run = run_entrypoint(**settings)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(run.series("loss")) == 2
    _loads(tmp_path / "final")


# Where each shipped accelerate config runs for real.
CONFIGS_RUN = {
    "multi_cpu": "tests/jobs/launch/test_launcher.py", "multi_node": "tests/jobs/config/test_topology.py",
    **{name: __file__ for name in ("cpu", "single_gpu", "multi_gpu", "zero2", "zero3", "zero3_offload")},
}  # fmt: skip


def test_every_shipped_accelerate_config_runs_in_some_test() -> None:
    shipped = {path.stem for path in (ROOT / "accelerate_configs").glob("*.yaml")}
    assert set(CONFIGS_RUN) == shipped
    for name, test in CONFIGS_RUN.items():
        text = (ROOT / test).read_text() if not Path(test).is_absolute() else Path(test).read_text()
        assert f'"{name}"' in text, (name, test)
