"""sdpa_varlen: attention per packed sequence gives what each sequence gives alone, and what transformers' own
block-diagonal SDPA gives, in the forward pass and in the gradients; everything else goes through SDPA."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from dev.demo import sft_records as demo_records
from dev.testing import falls, run_entrypoint, write_jsonl
from jobs.train import attention

LENGTHS = (37, 5, 80, 1, 23)  # a one-token sequence too: its attention is itself


def _model(demo_model: str, implementation: str) -> Any:
    from transformers import AutoModelForCausalLM

    attention.register()
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(demo_model, attn_implementation=implementation)


def _packed_row() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 200, (1, sum(LENGTHS)), generator=generator)
    positions = torch.cat([torch.arange(n) for n in LENGTHS]).unsqueeze(0)
    return ids, positions


def test_each_packed_sequence_attends_only_to_itself(demo_model: str) -> None:
    ids, positions = _packed_row()
    model = _model(demo_model, attention.NAME).eval()
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        start = 0
        for length in LENGTHS:
            alone = model(input_ids=ids[:, start : start + length], use_cache=False).logits
            torch.testing.assert_close(packed[:, start : start + length], alone, rtol=1e-5, atol=1e-5)
            start += length


def test_forward_and_gradients_match_transformers_block_diagonal_sdpa(demo_model: str) -> None:
    ids, positions = _packed_row()
    results = {}
    for implementation in ("sdpa", attention.NAME):
        model = _model(demo_model, implementation).train()
        output = model(input_ids=ids, position_ids=positions, labels=ids, use_cache=False)
        output.loss.backward()
        gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results[implementation] = (output.logits.detach(), gradients)
    (sdpa_logits, sdpa_grads), (ours_logits, our_grads) = results["sdpa"], results[attention.NAME]
    torch.testing.assert_close(ours_logits, sdpa_logits, rtol=1e-5, atol=1e-5)
    assert sdpa_grads.keys() == our_grads.keys()
    for name, gradient in sdpa_grads.items():
        torch.testing.assert_close(our_grads[name], gradient, rtol=1e-4, atol=1e-6, msg=name)


def test_padded_batches_and_single_sequences_go_through_sdpa_unchanged(demo_model: str) -> None:
    ids = torch.randint(3, 200, (2, 30), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0  # the second record is padded
    sdpa, ours = _model(demo_model, "sdpa").eval(), _model(demo_model, attention.NAME).eval()
    with torch.no_grad():
        for inputs in ({"attention_mask": mask}, {}):
            expected = sdpa(input_ids=ids, use_cache=False, **inputs).logits
            torch.testing.assert_close(ours(input_ids=ids, use_cache=False, **inputs).logits, expected)


def test_sequence_bounds() -> None:
    row = torch.tensor([[0, 1, 2, 0, 1, 0]])
    assert attention.sequence_bounds(row, 6) == [(0, 3), (3, 5), (5, 6)]
    assert attention.sequence_bounds(torch.arange(6).unsqueeze(0), 6) is None  # one sequence: plain SDPA
    assert attention.sequence_bounds(None, 6) is None
    assert attention.sequence_bounds(torch.tensor([[0, 1], [0, 1]]), 2) is None  # padded rows, not one packed row
    assert attention.sequence_bounds(torch.tensor([[3, 4, 0, 1]]), 4) is None  # continues a cached sequence


@pytest.mark.parametrize(
    ("config", "supported"),
    [
        ({}, True),
        ({"sliding_window": 4096, "use_sliding_window": False}, True),  # Qwen2's default: the window is off
        ({"sliding_window": 4096}, False),  # Mistral: every layer windowed
        ({"attn_logit_softcapping": 50.0}, False),  # Gemma 2
        ({"layer_types": ["full_attention", "full_attention"]}, True),
        ({"layer_types": ["sliding_attention", "full_attention"]}, False),  # Gemma 3, GPT-OSS
        ({"is_encoder_decoder": True}, False),
    ],
)
def test_supports_plain_causal_attention_only(config: dict[str, Any], supported: bool) -> None:
    assert attention.supports(SimpleNamespace(**config)) is supported


@pytest.mark.parametrize(
    ("training", "chosen", "expected"),
    [
        ({"packing": True, "packing_strategy": "bfd"}, None, attention.NAME),
        ({"padding_free": True}, None, attention.NAME),
        ({"packing": True, "packing_strategy": "wrapped"}, None, None),  # wrapped rows are not cut per record
        ({}, None, None),  # padded batches
        ({"packing": True, "packing_strategy": "bfd"}, "eager", "eager"),  # the user's choice stands
    ],
)
def test_choose_only_replaces_the_default_for_padding_free_batches(
    demo_model: str, training: dict[str, Any], chosen: str | None, expected: str | None
) -> None:
    model_args = SimpleNamespace(model_name_or_path=demo_model, model_revision="main", attn_implementation=chosen)
    attention.choose(model_args, SimpleNamespace(**training))
    assert model_args.attn_implementation == expected


@pytest.mark.slow
def test_packed_sft_trains_with_attention_per_sequence(demo_model: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", demo_records(400))
    out = tmp_path / "out"
    run = run_entrypoint(
        TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(out),
        TRAIN_PACKING="true", TRAIN_PACKING_STRATEGY="bfd", TRAIN_MAX_LENGTH="128", TRAIN_MAX_STEPS="40",
        TRAIN_LOGGING_STEPS="5", TRAIN_LEARNING_RATE="2e-3", TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert attention.NAME in run.stderr
    assert falls(run.series("loss")), run.series("loss")
    # The published model loads anywhere: the job's attention name is not written into its config.
    assert attention.NAME not in (out / "final" / "config.json").read_text()
