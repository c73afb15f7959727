"""The staged final model reloaded from disk as a user would load it, and published only if it computes what
training computed.

A model whose published files do not load, or load into something else (a truncated shard, an adapter
saved without its modules, a tokenizer that no longer matches), used to be found at serving time, after
the job reported success. Rank 0 now stages `final.partial/` and writes beside it the logits the trained
model gave a sample prompt (the first training row, up to 64 tokens), taken in memory before the trainer
was freed (jobs/train/publish.py). Once the training processes have exited (so that two copies of the model
are never held at once), the entrypoint loads `final.partial/` alone with `from_pretrained` (a LoRA adapter
through PEFT onto the base model, loaded as training loaded it: dtype, 4-bit), runs the same prompt and
compares. A staged model that does not load, or whose logits differ beyond the tolerance of the dtype it
trained in, is not published: exit 9, `final.partial/` kept for a look, the previous `final/` unchanged.

Tolerances (rtol, atol) on the logits, by the dtype the model trained in: float32 (1e-4, 1e-3); bfloat16
(2e-2, 5e-2) and float16 (5e-3, 1e-2), a few units in the last place of their 8- and 11-bit mantissas after
a forward pass whose sums may run in another order; a 4-bit or 8-bit base (1e-2, 1e-2).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from jobs.config.resolved import ResolvedRun
from jobs.errors import NotPublished

logger = logging.getLogger(__name__)

TOLERANCES = {"float32": (1e-4, 1e-3), "bfloat16": (2e-2, 5e-2), "float16": (5e-3, 1e-2)}
# A 4-bit base dequantises its weights in each forward pass, in an order and dtype the reload need not repeat:
# the tiny QLoRA model on CPU reloads 0.0037 apart in float32. A broken load differs by whole units.
QUANTIZED_TOLERANCE = (1e-2, 1e-2)


def check_and_publish(run: ResolvedRun) -> None:
    """Reload the staged model, compare it with the trained one's logits, and publish it as final/."""
    layout = run.layout
    staged, reference_path = layout.final_partial, layout.reload_reference
    gc.collect()  # an in-process run's trainer, freed before a second copy loads
    reference = _read_reference(staged, reference_path)
    started = time.monotonic()
    try:
        model = _load_staged(run, staged)
    except Exception as error:  # whatever fails to load is the finding, reported as such
        raise NotPublished(_refusal(staged, f"it does not load ({type(error).__name__}: {error})")) from None
    logits = sample_forward(model, reference["input_ids"], next(model.parameters()).device)
    del model
    dtype = str(run.model_setting("dtype") or "float32")
    quantized = bool(run.model_setting("load_in_4bit") or run.model_setting("load_in_8bit"))
    difference, why = compare_logits(logits, reference["logits"], dtype, quantized)
    if why:
        raise NotPublished(_refusal(staged, why))
    logger.info("%s reloads from disk and matches the trained model (max |logit difference| %.2g, %s tolerance; "
                "%.1f s)", staged, difference, dtype, time.monotonic() - started)  # fmt: skip
    publish_final(staged, layout.final)
    reference_path.unlink()
    logger.info("final model saved: %s", layout.final)


def compare_logits(logits: Any, expected: Any, dtype: str, quantized: bool) -> tuple[float, str | None]:
    """The largest difference, and why it is too large (None: within the dtype's tolerance)."""
    import torch

    if logits.shape != expected.shape:
        return math.inf, f"its logits have shape {tuple(logits.shape)}, not {tuple(expected.shape)}"
    rtol, atol = QUANTIZED_TOLERANCE if quantized else TOLERANCES.get(dtype, TOLERANCES["float32"])
    difference = float((logits - expected).abs().max())
    if torch.allclose(logits, expected, rtol=rtol, atol=atol):
        return difference, None
    return difference, (f"its logits differ from the trained model's by up to {difference:.3g} on the sample "
                        f"prompt (tolerance for {dtype}: rtol {rtol}, atol {atol})")  # fmt: skip


def _read_reference(staged: Path, path: Path) -> dict[str, Any]:
    """The trained model's logits, written last by the training process: without them there is nothing to
    compare with (a staging cut short, a file removed by hand)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise NotPublished(_refusal(staged, f"the trained model's logits {path} do not read ({error})")) from None


def _refusal(staged: Path, what: str) -> str:
    return (f"the staged final model {staged} was not published: {what}. The previous final/ is unchanged and "
            "the newest checkpoint is kept; look at the staged files (a full or failing volume, a truncated copy), "
            "then rerun the job: it resumes from that checkpoint and stages the model again")  # fmt: skip


def _load_staged(run: ResolvedRun, staged: Path) -> Any:
    """The staged directory as a user loads it: the model alone, or the base model with the adapter."""
    from jobs.train.model import build_model_config, load_model

    if (staged / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(build_model_config(run.model))
        return PeftModel.from_pretrained(base, str(staged))
    model_args = build_model_config({**run.model, "model_name_or_path": str(staged)})
    return load_model(model_args)


def sample_forward(model: Any, input_ids: Any, device: Any) -> Any:
    """The model's logits for `input_ids` in evaluation mode (no dropout), as float32 on the CPU: the same
    call on the trained model (jobs/train/publish.py) and on its reloaded copy."""
    import torch

    model.eval()  # a 4-bit base stays on the dequantising path training ran (jobs/train/model.py)
    with torch.no_grad():
        return model(input_ids=input_ids.to(device)).logits.float().cpu()


def publish_final(partial: Path, final: Path) -> None:
    """Move a fully written model directory into place, keeping any previous final model. Its files get
    the modes the umask gives new files: safetensors writes weights 0600, which another user (a serving
    or evaluation pod, the volume's group) could not read."""
    readable_as_umask_allows(partial)
    if final.exists():
        kept = final.with_name(f"{final.name}.{time.strftime('%Y%m%d-%H%M%S')}")
        final.rename(kept)
        logger.warning("kept the previous final model as %s", kept)
    partial.rename(final)


def readable_as_umask_allows(directory: Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    for path in directory.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~mask | (path.stat().st_mode & 0o111))
