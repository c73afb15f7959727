"""What the model being trained writes: greedy generations for a fixed set of prompts, at each evaluation and
at the end of training, so that a run that learns the loss but not the task (answers that never end, that
repeat, that ignore the prompt) shows before it is published.

The prompts are chosen once (jobs/train/sample_prompts.py): the first TRAIN_SAMPLES distinct prompts of the
evaluation data, else of the training data. Each round generates them in one left-padded batch, greedily
(`do_sample=False`, one beam), at most TRAIN_SAMPLE_MAX_NEW_TOKENS tokens each, ending on the model's
end-of-sequence ids plus the chat template's closing token where preflight found one (validation_report.json
`chat.stop`, the id final/'s generation config gets too). The unwrapped model generates in eval mode (no
dropout) and goes back to train mode after; a PEFT model generates with its adapter.

Rank 0 appends one JSON line per sample to samples.jsonl (each round in one write, flushed: a killed process
leaves whole lines) and, when TensorBoard reporting is on, the same as text through transformers'
TensorBoardCallback's writer; it exports the share that stopped and the round's seconds, and logs the round's
cost against the training time so far. Under DeepSpeed ZeRO-3 every rank generates, since each forward pass
gathers the sharded weights from all of them (transformers' generate then keeps the ranks in step itself:
`synced_gpus`); otherwise only rank 0 does. The final round after an evaluation at the same step reuses its
generations. A run that stops on a signal or diverges gets no final round.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from transformers import TrainerCallback

from jobs.layout import OutputLayout
from jobs.monitor import writer
from jobs.train.sample_prompts import fixed_prompts

logger = logging.getLogger("jobs.train")

COST_WARNING_SHARE = 0.05  # of the training time so far: above it, one warning with the settings that lower it


@dataclass(frozen=True)
class Sample:
    prompt: str
    completion: str
    stopped: bool
    tokens: int
    prompt_tokens: int


@dataclass(frozen=True)
class Round:
    step: int
    samples: list[Sample]
    seconds: float


def cut(generated: Sequence[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    """The tokens one sample generated, through its first end-of-sequence id, and whether it reached one
    (after it, generate pads with the pad id, which is often an end-of-sequence id too)."""
    for index, token in enumerate(generated):
        if token in eos_ids:
            return list(generated[: index + 1]), True
    return list(generated), False


def none_stopped_warning(samples: Sequence[Sample], max_new_tokens: int) -> str | None:
    """The warning for a final round in which no sample ended on an end-of-sequence id."""
    if not samples or any(sample.stopped for sample in samples):
        return None
    return (
        f"none of the {len(samples)} samples stopped within {max_new_tokens} tokens: the model may not have "
        "learned to end its turn. Check that the training answers end with the end-of-sequence token or the chat "
        "template's closing token (validation_report.json: chat.stop), that the loss covers that token (the "
        "loss mask in final/effective_config.json), and read the completions in samples.jsonl; answers longer "
        "than TRAIN_SAMPLE_MAX_NEW_TOKENS also read as not stopped"
    )


def end_of_sequence_ids(model: Any, stop: dict[str, Any] | None) -> list[int]:
    """The model's generation config's end-of-sequence ids, plus the chat template's closing token."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    ids = list(eos) if isinstance(eos, list) else ([eos] if eos is not None else [])
    if stop and stop["id"] not in ids:
        ids.append(stop["id"])
    return ids


def generate(model: Any, tokenizer: Any, prompts: list[list[int]], *, max_new_tokens: int, eos_ids: list[int],
             device: Any) -> list[Sample]:  # fmt: skip
    """One greedy batch, left-padded, in eval mode; the model's mode is restored after."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ([*eos_ids, 0])[0]
    width = max(len(ids) for ids in prompts)
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=device)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
    training = model.training
    model.eval()
    try:
        output = model.generate(input_ids=input_ids, attention_mask=attention, do_sample=False, num_beams=1,
                                max_new_tokens=max_new_tokens, eos_token_id=eos_ids or None, pad_token_id=pad,
                                use_cache=True)  # fmt: skip
    finally:
        model.train(training)
    samples = []
    for ids, row in zip(prompts, output[:, width:].tolist(), strict=True):
        tokens, stopped = cut(row, set(eos_ids))
        prompt = tokenizer.decode(ids, skip_special_tokens=False)  # the chat markup shows what was asked
        completion = tokenizer.decode(tokens, skip_special_tokens=True)
        samples.append(Sample(prompt, completion, stopped, len(tokens), len(ids)))
    return samples


class SampleGenerations(TrainerCallback):
    """The rounds of samples (see the module docstring); `attach` gives it the trainer once it is built."""

    def __init__(self, layout: OutputLayout, count: int, max_new_tokens: int, interrupted: Callable[[], bool]) -> None:
        self.path = layout.samples
        self.report = layout.report
        self.count = count
        self.max_new_tokens = max_new_tokens
        self.interrupted = interrupted  # a stop on a signal, or divergence: no final round
        self.trainer: Any = None
        self.prompts: list[list[int]] | None = None
        self.eos_ids: list[int] = []
        self.last: Round | None = None
        self.started = time.monotonic()
        self.spent = 0.0
        self.cost_warned = False

    def attach(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started, self.spent = time.monotonic(), 0.0

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._round(state.global_step, "eval")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self.interrupted():
            self._round(state.global_step, "final")

    def _round(self, step: int, phase: str) -> None:
        trainer = self.trainer
        writes = trainer.is_world_process_zero()
        if not (writes or _weights_sharded()):
            return
        if self.last is None or self.last.step != step:
            started = time.monotonic()
            model = trainer.accelerator.unwrap_model(trainer.model)
            prompts = self._fixed_prompts(model)
            if not prompts:
                return
            samples = generate(model, trainer.processing_class, prompts, max_new_tokens=self.max_new_tokens,
                               eos_ids=self.eos_ids, device=trainer.accelerator.device)  # fmt: skip
            self.last = Round(step, samples, time.monotonic() - started)
            self.spent += self.last.seconds
        if writes:
            self._record(self.last, phase)

    def _fixed_prompts(self, model: Any) -> list[list[int]]:
        if self.prompts is None:
            dataset = self.trainer.eval_dataset if self.trainer.eval_dataset is not None else self.trainer.train_dataset
            self.prompts = fixed_prompts(dataset, self.count)
            self.eos_ids = end_of_sequence_ids(model, self._chat_stop())
        return self.prompts

    def _chat_stop(self) -> dict[str, Any] | None:
        try:
            report = json.loads(self.report.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # no report: the model's own ids only
            return None
        return (report.get("chat") or {}).get("stop")

    def _record(self, round_: Round, phase: str) -> None:
        lines = [json.dumps({"step": round_.step, "phase": phase, "index": index, **asdict(sample),
                             "max_new_tokens": self.max_new_tokens, "generation_seconds": round(round_.seconds, 3)},
                            ensure_ascii=False) + "\n" for index, sample in enumerate(round_.samples)]  # fmt: skip
        with self.path.open("a", encoding="utf-8") as out:
            out.write(_line_start(self.path) + "".join(lines))
            out.flush()
        self._to_tensorboard(round_)
        stopped = sum(sample.stopped for sample in round_.samples) / len(round_.samples)
        if writer.enabled():
            writer.job_metrics().samples(stopped, round_.seconds)
        self._log_cost(round_, phase, stopped)
        warning = none_stopped_warning(round_.samples, self.max_new_tokens) if phase == "final" else None
        if warning:
            logger.warning(warning)

    def _to_tensorboard(self, round_: Round) -> None:
        tensorboard = _tensorboard_writer(self.trainer)
        if tensorboard is None:
            return
        for index, sample in enumerate(round_.samples):
            ending = "stopped" if sample.stopped else f"did not stop within {self.max_new_tokens} tokens"
            text = f"```\n{sample.prompt}\n```\n\n```\n{sample.completion}\n```\n\n({ending})"
            tensorboard.add_text(f"samples/{index}", text, round_.step)
        tensorboard.flush()

    def _log_cost(self, round_: Round, phase: str, stopped: float) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        share = self.spent / elapsed
        logger.info("samples at step %d (%s): %d of %d stopped; generated in %.2f s, %.1f %% of the training time "
                    "so far (%s)", round_.step, phase, round(stopped * len(round_.samples)), len(round_.samples),
                    round_.seconds, 100 * share, self.path)  # fmt: skip
        if share > COST_WARNING_SHARE and phase == "eval" and not self.cost_warned:
            self.cost_warned = True  # once: the share is in every round's line
            logger.warning("samples took %.1f %% of the training time so far: lower TRAIN_SAMPLES or "
                           "TRAIN_SAMPLE_MAX_NEW_TOKENS, or evaluate less often (TRAIN_EVAL_STEPS)",
                           100 * share)  # fmt: skip


def _weights_sharded() -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return bool(is_deepspeed_zero3_enabled())


def _tensorboard_writer(trainer: Any) -> Any:
    """The writer of transformers' TensorBoardCallback, when TensorBoard reporting is on (never a second one)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            return callback.tb_writer
    return None


def _line_start(path: Any) -> str:
    """A newline first where a killed process left the file's last line unfinished."""
    try:
        with path.open("rb") as existing:
            existing.seek(-1, 2)
            return "" if existing.read(1) == b"\n" else "\n"
    except OSError:  # missing or empty
        return ""
