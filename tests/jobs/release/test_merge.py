"""A LoRA or QLoRA run's adapter merged into its unquantised base and checked before it is published as
final/merged/ (jobs/release/merge.py, TRAIN_MERGE_ADAPTER, `entrypoint.py merge OUTPUT_DIR`)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from dev.demo import build_model
from dev.testing import run_entrypoint
from jobs.errors import EXIT_CONFIG, EXIT_ENVIRONMENT, NotPublished
from jobs.layout import OutputLayout
from jobs.release import merge
from jobs.release.reload import TOLERANCES
from tests.support.volumes import tmpfs

DATA = {"sft": "dev/demo_data/sft_messages.jsonl", "dpo": "dev/demo_data/dpo_pairs.jsonl"}


def adapter_logits(base: str, adapter: Path, prompts: list[Any]) -> list[Any]:
    """What the adapter computes on the unquantised base, loaded as a user would: the merge's reference."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).eval()
    with torch.no_grad():
        return [model(input_ids=ids).logits.float() for ids in prompts]


def merged_matches_adapter(base: str, final: Path) -> float:
    """final/merged loaded with AutoModelForCausalLM alone: its logits on the fixed prompts against the
    adapter's on the unquantised base; the largest difference."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(final / "merged").eval()
    base_dtype = AutoModelForCausalLM.from_pretrained(base).dtype
    assert merged.dtype == base_dtype
    assert not (final / "merged" / "adapter_config.json").exists()
    prompts = merge.fixed_prompts(AutoTokenizer.from_pretrained(final / "merged"))
    rtol, atol = TOLERANCES[str(base_dtype).removeprefix("torch.")]
    worst = 0.0
    for ids, expected in zip(prompts, adapter_logits(base, final, prompts), strict=True):
        with torch.no_grad():
            logits = merged(input_ids=ids).logits.float()
        torch.testing.assert_close(logits, expected, rtol=rtol, atol=atol)
        worst = max(worst, float((logits - expected).abs().max()))
    return worst


@pytest.mark.parametrize(
    ("method", "quantized"),
    [("sft", False),
     pytest.param("sft", True, marks=pytest.mark.slow, id="sft-qlora"),
     pytest.param("dpo", False, marks=pytest.mark.slow, id="dpo-lora"),
     pytest.param("dpo", True, marks=pytest.mark.slow, id="dpo-qlora")],
)  # fmt: skip
def test_a_lora_run_publishes_a_merged_model_that_loads_alone_and_matches_its_adapter(
    method: str, quantized: bool, demo_model: str, tmp_path: Path
) -> None:
    run = run_entrypoint(TRAIN_METHOD=method, TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_USE_PEFT="true",
                         TRAIN_LOAD_IN_4BIT=str(quantized).lower(), TRAIN_MERGE_ADAPTER="true",
                         TRAIN_DATA_PATH=DATA[method], TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_MAX_STEPS="3",
                         TRAIN_LEARNING_RATE="1e-2")  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    final = OutputLayout(tmp_path).final
    assert "matches the adapter on its base" in run.messages()
    assert merged_matches_adapter(demo_model, final) < 1e-3
    assert json.loads((final / "merged" / "config.json").read_text())["dtype"] == "float32"  # the base's, not 4-bit
    assert "quantization_config" not in json.loads((final / "merged" / "config.json").read_text())
    assert not (final / "merged.partial").exists()


def lora_final(base: Path, final: Path, template: str) -> None:
    """A final/ as a LoRA run publishes it, with a random (non-zero) adapter, a training chat template and a
    generation config that stops on a closing token the base's config lacks."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False))  # fmt: skip
    model.save_pretrained(str(final))
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(final)
    config = GenerationConfig(eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id])
    config.save_pretrained(final)


TRAINING_TEMPLATE = ("{%- for m in messages %}{{ m.role }}: {%- if m.role == 'assistant' %}{%- generation -%} "
                     "{{ m.content }}<|end|>{% endgeneration %}{%- else %} {{ m.content }}\n{% endif %}{% endfor %}"
                     "{%- if add_generation_prompt %}assistant:{% endif %}")  # fmt: skip


def test_merge_command_writes_the_base_dtype_sharded_like_the_base_with_an_inference_template(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from trl.chat_template_utils import has_generation_markers

    base = tmp_path / "base"
    build_model(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
    model.save_pretrained(base, max_shard_size="300KB")  # a bf16 base in shards, as large models come
    (base / "model.safetensors").unlink()
    shards = sorted(path.name for path in base.glob("*.safetensors"))
    assert len(shards) > 1
    final = tmp_path / "out" / "final"
    lora_final(base, final, TRAINING_TEMPLATE)

    run = run_entrypoint("merge", str(tmp_path / "out"))

    assert run.returncode == 0, run.stderr[-3000:]
    merged = final / "merged"
    assert sorted(path.name for path in merged.glob("*.safetensors")) == shards
    assert (merged / "model.safetensors.index.json").is_file()
    worst = merged_matches_adapter(str(base), final)  # bfloat16 tolerance
    assert worst > 0  # the adapter is not a no-op: the merge changed the weights
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert has_generation_markers(TRAINING_TEMPLATE) and not has_generation_markers(tokenizer.chat_template)
    conversation = [{"role": "user", "content": "1 2"}, {"role": "assistant", "content": "3"}]
    trained = AutoTokenizer.from_pretrained(final)
    assert tokenizer.apply_chat_template(conversation, tokenize=False) == trained.apply_chat_template(
        conversation, tokenize=False
    )
    assert GenerationConfig.from_pretrained(merged).eos_token_id == [tokenizer.eos_token_id, tokenizer.pad_token_id]

    again = run_entrypoint("merge", str(tmp_path / "out"))  # a second merge keeps the first, renamed
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(list(final.glob("merged.2*"))) == 1


def test_a_merged_copy_that_does_not_load_is_not_published(demo_model: str, tmp_path: Path) -> None:
    final = tmp_path / "final"
    lora_final(Path(demo_model), final, TRAINING_TEMPLATE)
    partial = final / "merged.partial"
    expected, dtype = merge._merge_into(Path(demo_model), final, partial)
    weights = partial / "model.safetensors"
    with open(weights, "r+b") as handle:  # cut short, as a failing volume leaves it
        handle.truncate(weights.stat().st_size // 2)
    with pytest.raises(NotPublished, match="was not published: it does not load"):
        merge._check_merged(partial, expected, dtype)
    assert not (final / "merged").exists()


def write_header_only_model(directory: Path, parameters: int) -> None:
    """A model directory whose safetensors header declares `parameters` bf16 weights: the estimate reads
    headers only, so a model far larger than this machine needs no such file."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (directory / "tokenizer.json").write_text("{}")  # never read: the estimate refuses first
    side = int(parameters**0.5)
    header = json.dumps({"model.layers.0.mlp.up_proj.weight": {
        "dtype": "BF16", "shape": [side, side], "data_offsets": [0, 2 * side * side]}}).encode()  # fmt: skip
    (directory / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)


def test_a_merge_that_would_not_fit_in_memory_is_refused_with_the_numbers(tmp_path: Path) -> None:
    base = tmp_path / "base"
    write_header_only_model(base, 10**12)  # 2 TB of bf16 weights
    final = tmp_path / "out" / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))

    run = run_entrypoint("merge", str(tmp_path / "out"))

    assert run.returncode == EXIT_ENVIRONMENT, run.stderr[-3000:]
    message = run.messages()
    assert "the merge (TRAIN_MERGE_ADAPTER) would run out of memory" in message
    assert "base weights, its own dtype: 2000.00 GB" in message
    assert "Traceback" not in run.stderr
    assert not (final / "merged").exists() and not (final / "merged.partial").exists()


@pytest.mark.parametrize(("make", "expected"), [
    (lambda out: (out / "final").mkdir(parents=True), "holds no LoRA adapter"),
    (lambda out: out.mkdir(), "has not published a final model yet"),
    (lambda out: None, "needs a finished run's output directory"),
])  # fmt: skip
def test_merge_of_what_holds_no_adapter_is_a_configuration_error(make: Any, expected: str, tmp_path: Path) -> None:
    make(tmp_path / "out")
    run = run_entrypoint("merge", str(tmp_path / "out"))
    assert run.returncode == EXIT_CONFIG, run.stderr[-3000:]
    assert expected in run.messages()


def test_merge_adapter_without_lora_is_refused_before_anything_runs(tmp_path: Path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=DATA["sft"], TRAIN_MERGE_ADAPTER="true",
                         TRAIN_OUTPUT_DIR=str(tmp_path))  # fmt: skip
    assert run.returncode == EXIT_CONFIG
    assert (
        "TRAIN_MERGE_ADAPTER=true merges a LoRA adapter into its base: it needs TRAIN_USE_PEFT=true" in run.messages()
    )


def test_the_inference_template_renders_what_the_training_template_renders() -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    from trl.chat_template_utils import has_generation_markers

    plain = merge.inference_template(TRAINING_TEMPLATE)
    assert not has_generation_markers(plain)
    for add in (False, True):
        rendered = [render_jinja_template([conversation], chat_template=template, add_generation_prompt=add)[0][0]
                    for template in (TRAINING_TEMPLATE, plain)]  # fmt: skip
        assert rendered[0] == rendered[1]
    assert merge.inference_template({"default": TRAINING_TEMPLATE}) == {"default": plain}
    assert merge.inference_template(None) is None


def test_a_base_stored_quantised_or_missing_is_refused_with_what_to_point_at(demo_model: str, tmp_path: Path) -> None:
    import shutil

    base = tmp_path / "base-4bit"
    shutil.copytree(demo_model, base)
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "quantization_config": {"quant_method": "bitsandbytes"}}))
    final = tmp_path / "out" / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))

    run = run_entrypoint("merge", str(tmp_path / "out"))
    assert run.returncode == EXIT_ENVIRONMENT, run.stderr[-3000:]
    assert f"the base model {base} is stored quantised (bitsandbytes): merge the adapter" in run.messages()

    run = run_entrypoint("merge", str(tmp_path / "out"), TRAIN_MODEL_NAME_OR_PATH=str(tmp_path / "nowhere"))
    assert run.returncode == EXIT_ENVIRONMENT, run.stderr[-3000:]
    assert "is not a directory here: mount the base model" in run.messages()
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_a_volume_that_fills_during_the_merge_is_exit_4_and_leaves_the_adapter(demo_model: str, tmp_path: Path) -> None:
    """A real 1 MiB tmpfs: room for the adapter, not for the 2 MB merged copy."""
    with tmpfs(tmp_path / "volume", "1m") as volume:
        final = volume / "final"
        lora_final(Path(demo_model), final, TRAINING_TEMPLATE)
        adapter = (final / "adapter_model.safetensors").read_bytes()

        run = run_entrypoint("merge", str(volume))

        assert run.returncode == EXIT_ENVIRONMENT, run.stderr[-3000:]
        assert f"the output volume of {final} filled while the merged model was written" in run.messages()
        assert "Traceback" not in run.stderr
        assert not (final / "merged").exists() and not (final / "merged.partial").exists()
        assert (final / "adapter_model.safetensors").read_bytes() == adapter


def test_a_damaged_adapter_config_is_named_without_a_traceback(tmp_path: Path) -> None:
    final = tmp_path / "out" / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text('{"base_model_name_or_path": ')
    run = run_entrypoint("merge", str(tmp_path / "out"))
    assert run.returncode == EXIT_ENVIRONMENT, run.stderr[-3000:]
    assert "adapter_config.json does not read as JSON" in run.messages() and "Traceback" not in run.stderr
