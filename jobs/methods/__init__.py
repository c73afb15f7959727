"""The registry of training methods: one entry per method, each defined in its own file here.

Everything that differs between methods derives from this table: the allowed TRAIN_METHOD values,
the settings catalog and `--help` sections, the dataset kinds the data checks accept, the extra
metrics, the Makefile's targets (`python -m jobs.methods` lists the names) and the launch dispatch.
"""

from __future__ import annotations

from jobs.methods import dpo, kto, sft
from jobs.methods.base import Method

METHODS: dict[str, Method] = {method.name: method for method in (sft.METHOD, dpo.METHOD, kto.METHOD)}


def methods_for_kind(kind: str) -> list[str]:
    """The methods that train on a dataset kind, for "use this data with ..." hints."""
    return [name for name, method in METHODS.items() if kind in method.dataset_kinds]
