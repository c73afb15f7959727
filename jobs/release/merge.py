"""A LoRA or QLoRA run's adapter merged into its base model: `final/merged/`, a model to serve as it is.

`TRAIN_MERGE_ADAPTER=true` runs it after the training processes exit and `final/` is published;
`entrypoint.py merge OUTPUT_DIR` runs the same code on a finished run's files. It reads only the disk:
`final/` (the adapter, its tokenizer and generation config) and the base model its adapter_config.json
names (or TRAIN_MODEL_NAME_OR_PATH, given by the job).

- The base loads unquantised in its own dtype (`dtype="auto"`: what its config.json says), also after
  QLoRA: the adapter is merged into the bf16/fp16 weights a user serves, never into dequantised 4-bit ones.
  PEFT's safe_merge refuses an update that would make a weight non-finite.
- The merged weights are written as safetensors in shards of the base's largest weight file, so the
  merged model is sharded as its base is.
- The tokenizer is final/'s with the inference chat template: a template's `{% generation %}` markers
  (which only mark the assistant's tokens for the loss) are removed; they render nothing.
- The generation config is final/'s, whose end-of-sequence ids include the chat template's closing token
  (jobs/train/publish.py), else the base's.
- Before it is published, the merged copy is loaded from disk with `AutoModelForCausalLM` alone and its
  logits on fixed prompts compared with the adapter's on the same unquantised base, taken before the
  merge, within the tolerance of the base's dtype (jobs/release/reload.py). One copy of the model is held
  at a time. It is written to `final/merged.partial/` and renamed into place; a failed check leaves
  `final/` as it was, with exit 9.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

from jobs.errors import ConfigError, EnvironmentProblem, NotPublished
from jobs.estimate.formula import human_size
from jobs.estimate.merge import check_merge_memory, shard_bytes, weight_file_bytes
from jobs.preflight.checks import check_model_dir
from jobs.release.reload import compare_logits, publish_final, sample_forward

logger = logging.getLogger(__name__)

MERGED = "merged"
# The fixed prompts both sides are compared on: plain text, and (with a chat template) a user turn rendered
# with its generation prompt, where a served model starts.
PROMPT_TEXT = "Count from one to ten: one, two, three,"
PROMPT_TURN = [{"role": "user", "content": "What comes after 41?"}]
# `{% generation %}`, `{%- endgeneration -%}`: the tag, and its whitespace control kept.
_GENERATION_MARKER = re.compile(r"\{%([-+]?)\s*((?:end)?generation)\s*([-+]?)%\}")


def merge_final(final: Path, base: str | None = None, memory_check: str = "refuse") -> Path:
    """Merge the adapter in `final/` into its base model (`base`, else the one adapter_config.json names),
    check the merged copy and publish it as `final/merged/`."""
    base_dir = _base_dir(final, base)
    adapter_bytes = sum(path.stat().st_size for path in final.glob("adapter_model.*"))
    check_merge_memory(base_dir, adapter_bytes, memory_check)
    started = time.monotonic()
    partial = final / f"{MERGED}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        expected, dtype = _merge_into(base_dir, final, partial)
    except Exception as error:
        from jobs.train.guards.checkpoints import is_volume_full

        if not is_volume_full(error, final):
            raise
        shutil.rmtree(partial, ignore_errors=True)  # a partial copy only takes the room another try needs
        raise _volume_full(final, base_dir) from error
    gc.collect()
    _check_merged(partial, expected, dtype)
    publish_final(partial, final / MERGED)
    logger.info("merged model saved: %s (%s, %.1f s)", final / MERGED, dtype, time.monotonic() - started)
    return final / MERGED


def _base_dir(final: Path, base: str | None) -> Path:
    config_path = final / "adapter_config.json"
    if not final.is_dir():
        raise ConfigError(f"{final} does not exist: the run has not published a final model yet")
    if not config_path.is_file():
        raise ConfigError(f"{final} holds no LoRA adapter (adapter_config.json): a full fine-tune's final/ is "
                          "already a whole model, with nothing to merge")  # fmt: skip
    named = base or _adapter_config(config_path).get("base_model_name_or_path")
    if not named or not Path(named).is_dir():
        raise EnvironmentProblem(f"the adapter's base model {named!r} (adapter_config.json's base_model_name_or_path) "
                                 "is not a directory here: mount the base model where training read it, or name it "
                                 "with TRAIN_MODEL_NAME_OR_PATH")  # fmt: skip
    check_model_dir(named)
    _check_unquantised(Path(named))
    return Path(named)


def _adapter_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise EnvironmentProblem(
            f"{path} does not read as JSON ({error}); the adapter's files are damaged: "
            "rerun the job, which publishes final/ again from its newest checkpoint"
        ) from None
    return config if isinstance(config, dict) else {}


def _check_unquantised(base_dir: Path) -> None:
    """Merging into stored 4-bit or 8-bit weights would round the update away, and serve a quantised model:
    the adapter goes into the unquantised weights it was made from."""
    quantization = json.loads((base_dir / "config.json").read_text(encoding="utf-8")).get("quantization_config")
    if quantization:
        raise EnvironmentProblem(
            f"the base model {base_dir} is stored quantised ({quantization.get('quant_method')}): merge the adapter "
            "into the unquantised weights instead; point TRAIN_MODEL_NAME_OR_PATH at them and run "
            "`entrypoint.py merge OUTPUT_DIR`"
        )


def _merge_into(base_dir: Path, final: Path, partial: Path) -> tuple[list[Any], str]:
    """Write the merged model into `partial`; the adapter model's logits on the fixed prompts, and the dtype."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    try:
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(final)
        model = PeftModel.from_pretrained(base, final)
    except (OSError, ValueError, RuntimeError) as error:  # a missing or mismatched file: named, no traceback
        raise EnvironmentProblem(f"the merge cannot load the adapter in {final} onto {base_dir}: {error}") from None
    dtype = str(base.dtype).removeprefix("torch.")
    prompts = fixed_prompts(tokenizer)
    expected = [sample_forward(model, ids, torch.device("cpu")) for ids in prompts]
    merged = model.merge_and_unload(safe_merge=True)
    if (final / "generation_config.json").is_file():
        merged.generation_config = GenerationConfig.from_pretrained(final)
    merged.save_pretrained(partial, max_shard_size=max(shard_bytes(base_dir), 1))
    tokenizer.chat_template = inference_template(tokenizer.chat_template)
    tokenizer.save_pretrained(partial)
    return [{"input_ids": ids, "logits": logits} for ids, logits in zip(prompts, expected, strict=True)], dtype


def _check_merged(partial: Path, expected: list[Any], dtype: str) -> None:
    """Load the merged copy as a user would and compare it with the adapter model's logits."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(partial)
    except Exception as error:  # whatever fails to load is the finding, reported as such
        raise NotPublished(_refusal(partial, f"it does not load ({type(error).__name__}: {error})")) from None
    worst = 0.0
    for sample in expected:
        logits = sample_forward(model, sample["input_ids"], next(model.parameters()).device)
        difference, why = compare_logits(logits, sample["logits"], dtype, quantized=False)
        if why:
            raise NotPublished(_refusal(partial, why.replace("the trained model's", "the adapter model's")))
        worst = max(worst, difference)
    logger.info("%s reloads from disk alone and matches the adapter on its base (max |logit difference| %.2g, %s "
                "tolerance)", partial, worst, dtype)  # fmt: skip


def fixed_prompts(tokenizer: Any) -> list[Any]:
    """The prompts the merged model is compared on, as token ids: plain text, and a rendered user turn."""
    import torch

    texts = [PROMPT_TEXT]
    if tokenizer.chat_template:
        texts.append(tokenizer.apply_chat_template(PROMPT_TURN, tokenize=False, add_generation_prompt=True))
    return [torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"][:64]]) for text in texts]


def inference_template(template: Any) -> Any:
    """The chat template without `{% generation %}` markers: they only mark the assistant's tokens for a
    training loss (TRL's training templates add them), but a server's Jinja environment without
    transformers' extension refuses the unknown tag. Each becomes a comment with the same whitespace
    control, so the template renders the same text."""
    if isinstance(template, dict):
        return {name: inference_template(text) for name, text in template.items()}
    if not isinstance(template, str):
        return template
    return _GENERATION_MARKER.sub(r"{#\1 \2 \3#}", template)


def _refusal(partial: Path, what: str) -> str:
    return (f"the merged model {partial} was not published: {what}. final/ (the adapter) is unchanged; look at "
            "the merged files, then run `entrypoint.py merge OUTPUT_DIR` again")  # fmt: skip


def _volume_full(final: Path, base_dir: Path) -> EnvironmentProblem:
    """Exit 4, not a crash that a retry would repeat: the volume, its free bytes, what the merged copy takes."""
    free = shutil.disk_usage(final).free
    return EnvironmentProblem(
        f"the output volume of {final} filled while the merged model was written: {human_size(free)} free, and the "
        f"merged model takes about {human_size(weight_file_bytes(base_dir))}; final/ (the adapter) is published and "
        "unchanged. Free space on the volume or mount a larger one, then run `entrypoint.py merge OUTPUT_DIR`"
    )
