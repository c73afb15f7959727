"""Padding-free attention through PyTorch's SDPA: each packed sequence attends to itself, at its own length.

In a padding-free or packed batch, several sequences share one row and their position ids restart at 0.
transformers' `sdpa` runs such a row under a block-diagonal mask over the whole row: every sequence pays
the attention of one as long as the row, and the mask is rebuilt each step. Flash-attention's
variable-length kernels avoid both, on GPUs where flash-attn is installed. `sdpa_varlen` does the same
with SDPA alone: the row is cut where its position ids restart, and each sequence goes through SDPA
causally and without a mask (on a GPU, SDPA's own flash kernel). The results are the block-diagonal
mask's, to float rounding (tests/jobs/train/test_attention.py).

Everything else (padded batches, rows without restarts, generation with a cache) goes through
transformers' `sdpa` unchanged. Models with sliding-window or soft-capped attention keep `sdpa`: the cut
rows would lose those limits (`supports`).
"""

from __future__ import annotations

import functools
from typing import Any

NAME = "sdpa_varlen"
# Kernels of transformers' that run each record of a padding-free row at its own length, besides ours.
VARLEN_KERNELS = ("flash_attention_2", "flash_attention_3", NAME)
# TRL's packing strategies that hand the model padding-free rows (position ids restarting per sequence).
_PADDING_FREE_PACKING = ("bfd", "bfd_split")


def padding_free(args: Any) -> bool:
    """Whether the trainer's batches are padding-free rows: TRL's padding_free, or BFD packing (which implies it)."""
    packing = getattr(args, "packing", False) and getattr(args, "packing_strategy", None) in _PADDING_FREE_PACKING
    return bool(getattr(args, "padding_free", False) or packing)


def choose(model_args: Any, args: Any) -> str | None:
    """`sdpa_varlen` for padding-free batches where the attention was left to transformers' default (SDPA) and
    the model's attention is plain causal attention; the attention is otherwise what the user set."""
    if model_args.attn_implementation is not None or not padding_free(args):
        return None
    if not supports(_text_config(model_args, trust_remote_code=getattr(args, "trust_remote_code", False))):
        return None
    model_args.attn_implementation = NAME
    return NAME


def keeps_records_apart(model_args: Any) -> bool:
    """Whether padding-free rows would run each record at its own length: a varlen kernel the user chose, or
    the default on a model whose attention `sdpa_varlen` keeps exactly."""
    if model_args.attn_implementation is not None:
        return model_args.attn_implementation in VARLEN_KERNELS
    return supports(_text_config(model_args))


def _text_config(model_args: Any, trust_remote_code: bool = False) -> Any:
    return _load_text_config(str(model_args.model_name_or_path), model_args.model_revision, trust_remote_code)


@functools.cache  # asked by the batching default and then by `choose`, in the same process
def _load_text_config(path: str, revision: str | None, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code).get_text_config()


def supports(config: Any) -> bool:
    """Whether a model's attention is plain causal attention, which the cut rows keep exactly."""
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        return False
    if getattr(config, "attn_logit_softcapping", None):
        return False
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return False  # some layers windowed or chunked (Gemma 3, GPT-OSS, Llama 4)
    return not getattr(config, "is_encoder_decoder", False)


def register() -> None:
    """Make `attn_implementation="sdpa_varlen"` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, sdpa_varlen_forward)
    AttentionMaskInterface.register(NAME, _mask)


def _mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """No mask where no token is padding: causality, per sequence, is the attention's. With padding, SDPA's."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None or bool(attention_mask.all()):
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def sequence_bounds(position_ids: Any, length: int) -> list[tuple[int, int]] | None:
    """The [start, end) of each sequence packed in a single row, or None when the row holds one sequence."""
    if position_ids is None or position_ids.shape[0] != 1 or position_ids.shape[-1] != length:
        return None
    starts = (position_ids[0] == 0).nonzero().flatten().tolist()
    if len(starts) < 2 or starts[0] != 0:
        return None
    return list(zip(starts, [*starts[1:], length], strict=True))


def sdpa_varlen_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    *,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    bounds = None
    if attention_mask is None and key.shape[2] == query.shape[2] and getattr(module, "is_causal", True):
        bounds = sequence_bounds(kwargs.get("position_ids"), query.shape[2])
    if bounds is None or kwargs.get("position_bias") is not None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    # split, not slices: its backward is one concatenation, where each slice's fills a zero tensor of the row
    lengths = [end - start for start, end in bounds]
    pieces = [
        sdpa(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True)
        for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2), strict=True)
    ]
    return torch.cat(pieces, dim=2).transpose(1, 2).contiguous(), None
