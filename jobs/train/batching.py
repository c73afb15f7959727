"""SFT batches without padding, by default wherever the model's attention keeps records apart.

A padded batch pays for every pad token in every layer. A padding-free batch (TRL's `padding_free`) puts
a step's records end to end in one row, with position ids restarting at each record, and the collator
masks each record's first label. The loss is the same mean over the same label tokens, so the step is
the same step without the padding (tests/jobs/train/test_batching.py).

It is the SFT default wherever the attention runs each record at its own length: a flash-attention
kernel that the user chose, or SDPA, the default, on a model whose attention is plain causal
(`sdpa_varlen`, jobs/train/attention.py). Elsewhere a padding-free row would pay attention over the whole row,
so padded batches stay. A batch of one record has no padding to save. A model with remote code may
not route its attention through transformers' interface, where the position ids keep records apart, so
it keeps padded batches too. TRAIN_PADDING_FREE or TRAIN_PACKING, once set, decide.

BFD packing (TRAIN_PACKING=true) is padding-free too, and a little faster, but it changes what a step
holds: rows of max_length tokens instead of records. It therefore stays the user's choice.

TRL 1.16 refuses padding_free with max_length and without packing ("max_length is not enforced"). That
guard predates SFTTrainer truncating every record during dataset preparation, which it now does whenever
it does not pack. `trainer_class` gets past the guard with max_length unset, and preparation truncates.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from jobs.methods.base import Method
from jobs.train import attention

# Settings with which the user decides the batching; the default applies only where none is set.
USER_CHOICES = frozenset({"padding_free", "packing"})


def choose(method: Method, overrides: Mapping[str, Any], model_args: Any, args: Any) -> bool:
    """Turn on padding-free batches where they are the method's default and the attention keeps records apart."""
    if not method.padding_free_by_default or USER_CHOICES & overrides.keys():
        return False
    if args.per_device_train_batch_size < 2 or getattr(args, "trust_remote_code", False):
        return False
    if not attention.keeps_records_apart(model_args):
        return False
    args.padding_free = True
    return True


def trainer_class(method: Method, args: Any) -> type[Any]:
    """The method's trainer, itself truncating records where TRL's SFTTrainer would refuse padding-free batches
    with max_length (DPO's trainer has no such guard: it pads where it cannot go padding-free)."""
    base = method.trainer_class()
    if not method.padding_free_by_default or not getattr(args, "padding_free", False):
        return base
    if getattr(args, "packing", False) or getattr(args, "max_length", None) is None:
        return base
    return type(base.__name__, (TruncateInPreparation, base), {"truncate_to": args.max_length})


class TruncateInPreparation:
    """Build the trainer with max_length unset and truncate each record to it while preparing the datasets."""

    truncate_to: int

    def __init__(self, *positional: Any, args: Any, **named: Any) -> None:
        args.max_length = None  # past TRL's guard; `_prepare_dataset` truncates
        try:
            super().__init__(*positional, args=args, **named)  # pyright: ignore[reportCallIssue]
        finally:
            args.max_length = self.truncate_to  # what the run resolved to, in the saved config

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, packing: bool, *rest: Any) -> Any:
        args = copy.copy(args)  # unpacked records are truncated to it; packed ones (eval_packing) fill rows of it
        args.max_length = self.truncate_to
        return super()._prepare_dataset(dataset, processing_class, args, packing, *rest)  # pyright: ignore[reportAttributeAccessIssue]
