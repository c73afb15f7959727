"""Samples from the model being trained: samples.jsonl at each evaluation and at the end, what the published
model generates; the stop flag, the warning when nothing stopped, appending across restarts."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dev.demo import DEMOS
from dev.testing import run_entrypoint
from jobs.layout import OutputLayout
from jobs.train.guards.samples import Round, Sample, SampleGenerations, cut, none_stopped_warning

EOS = {2, 7}


@pytest.mark.parametrize(
    ("generated", "kept", "stopped"),
    [
        pytest.param([5, 6, 2, 0, 0], [5, 6, 2], True, id="ends-on-eos-then-padding"),
        pytest.param([5, 7, 2, 2], [5, 7], True, id="the-chat-templates-closing-token"),
        pytest.param([2, 2, 2], [2], True, id="stops-at-once"),
        pytest.param([5, 6, 8], [5, 6, 8], False, id="runs-to-the-limit"),
    ],
)
def test_the_stop_flag(generated: list[int], kept: list[int], stopped: bool) -> None:
    assert cut(generated, EOS) == (kept, stopped)


def _sample(stopped: bool) -> Sample:
    return Sample(prompt="Count on from 4.", completion="5 6 7", stopped=stopped, tokens=4, prompt_tokens=6)


def test_the_warning_when_no_sample_stopped() -> None:
    warning = none_stopped_warning([_sample(False)] * 3, 64)
    assert warning is not None and warning.startswith("none of the 3 samples stopped within 64 tokens")
    assert "chat.stop" in warning and "TRAIN_SAMPLE_MAX_NEW_TOKENS" in warning
    assert none_stopped_warning([_sample(False), _sample(True)], 64) is None
    assert none_stopped_warning([], 64) is None


def _callback(tmp_path: Path) -> SampleGenerations:
    callback = SampleGenerations(OutputLayout(tmp_path), count=2, max_new_tokens=64, interrupted=lambda: False)
    callback.attach(SimpleNamespace(callback_handler=SimpleNamespace(callbacks=[])))  # TensorBoard off
    return callback


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_final_round_without_a_stop_warns_and_an_evaluation_round_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    callback = _callback(tmp_path)
    with caplog.at_level(logging.INFO, logger="jobs.train"):
        callback._record(Round(step=5, samples=[_sample(False)] * 2, seconds=0.5), "eval")
        assert not [r for r in caplog.records if r.levelno == logging.WARNING and "none of" in r.message]
        callback._record(Round(step=9, samples=[_sample(False)] * 2, seconds=0.5), "final")
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("none of the 2 samples stopped within 64 tokens") for m in warnings)
    assert "samples at step 9 (final): 0 of 2 stopped; generated in 0.50 s" in caplog.text


def test_a_restart_appends_and_finishes_a_line_cut_short(tmp_path: Path) -> None:
    """The lines of earlier rounds stay; a line a killed process left unfinished does not swallow the next."""
    layout = OutputLayout(tmp_path)
    layout.samples.write_text('{"step": 1, "phase": "eval"}\n{"step": 2, "pha', encoding="utf-8")
    _callback(tmp_path)._record(Round(step=3, samples=[_sample(True)] * 2, seconds=0.1), "eval")
    text = layout.samples.read_text(encoding="utf-8").splitlines()
    assert text[:2] == ['{"step": 1, "phase": "eval"}', '{"step": 2, "pha']
    assert [json.loads(line)["step"] for line in text[2:]] == [3, 3]


def _greedy_from_final(final: Path, prompt: str, max_new_tokens: int) -> tuple[str, bool]:
    """What a user gets from the published model: loaded from final/ alone, greedy, its own generation config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    model: Any = AutoModelForCausalLM.from_pretrained(final).eval()  # its generate() is typed for a protocol
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    output = model.generate(ids, attention_mask=ids.new_ones(ids.shape), do_sample=False,
                            max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    eos = model.generation_config.eos_token_id
    generated, stopped = cut(output[0, ids.shape[1] :].tolist(), set(eos if isinstance(eos, list) else [eos]))
    return tokenizer.decode(generated, skip_special_tokens=True), stopped


def _tensorboard_text_steps(directory: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert len(list(directory.glob("events.out.tfevents.*"))) == 1, "a second TensorBoard writer"
    events = EventAccumulator(str(directory), size_guidance={"tensors": 0})
    events.Reload()
    return [event.step for event in events.Tensors(f"{tag}/text_summary")]


def test_samples_at_each_evaluation_and_at_the_end_match_the_published_model(demo_model: str, tmp_path: Path) -> None:
    run = run_entrypoint(TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(DEMOS["dpo"].data),
                         TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_MAX_STEPS="4", TRAIN_EVAL_SPLIT="0.1",
                         TRAIN_EVAL_STEPS="2", TRAIN_SAVE_STRATEGY="no", TRAIN_SAMPLE_MAX_NEW_TOKENS="12",
                         TRAIN_LEARNING_RATE=str(DEMOS["dpo"].learning_rate))  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = _lines(OutputLayout(tmp_path).samples)
    assert Counter((line["step"], line["phase"]) for line in lines) == {(2, "eval"): 8, (4, "eval"): 8, (4, "final"): 8}
    assert all(isinstance(line["stopped"], bool) and 1 <= line["tokens"] <= 12 for line in lines)
    rounds = [[line["prompt"] for line in lines if (line["step"], line["phase"]) == key]
              for key in ((2, "eval"), (4, "eval"), (4, "final"))]  # fmt: skip
    assert rounds[0] == rounds[1] == rounds[2] and len(set(rounds[0])) == 8  # fixed, distinct prompts
    assert "samples at step 4 (final): " in run.messages()
    assert _tensorboard_text_steps(tmp_path / "tensorboard", "samples/0") == [2, 4, 4]  # one writer, still open
    final = next(line for line in lines if line["phase"] == "final")
    assert _greedy_from_final(tmp_path / "final", final["prompt"], 12) == (final["completion"], final["stopped"])


@pytest.mark.slow
def test_under_zero3_every_rank_generates_and_rank_0_alone_writes(demo_model: str, tmp_path: Path) -> None:
    run = run_entrypoint(TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(DEMOS["sft"].data),
                         TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_ACCELERATE_CONFIG="zero3", TRAIN_NUM_PROCESSES="2",
                         TRAIN_MAX_STEPS="4", TRAIN_EVAL_SPLIT="0.1", TRAIN_EVAL_STEPS="2", TRAIN_SAVE_STRATEGY="no",
                         TRAIN_SAMPLE_MAX_NEW_TOKENS="8")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "--num_processes 2" in run.stderr
    lines = _lines(OutputLayout(tmp_path).samples)
    keys = Counter((line["step"], line["phase"], line["index"]) for line in lines)
    assert set(keys.values()) == {1}, "a sample written twice: by both ranks"
    assert Counter((step, phase) for step, phase, _ in keys) == {(2, "eval"): 8, (4, "eval"): 8, (4, "final"): 8}
