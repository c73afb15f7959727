"""What a model will cost before it is loaded, read from its safetensors headers (an 8-byte length and a
JSON table of every tensor's dtype and shape), never from the weights themselves.

For now: the parameter count and the size of a checkpoint, which preflight compares with the free disk.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

# Bytes per element of the safetensors dtypes, and of the dtypes a model trains in.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1, "float32": 4, "bfloat16": 2, "float16": 2}  # fmt: skip
ADAM_STATES = 2  # AdamW keeps two moments per trainable parameter
LORA_BYTES = 4  # PEFT keeps adapters in fp32 (autocast_adapter_dtype), whatever the base model's dtype


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def read_tensors(model_dir: Path) -> list[Tensor]:
    """Every tensor of the model's safetensors files (sharded or not), from the headers alone; none for
    other weight formats (pytorch_model.bin has no header to read)."""
    tensors = []
    for path in sorted(model_dir.glob("*.safetensors")):
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        tensors += [
            Tensor(name, tuple(entry["shape"]), entry["dtype"])
            for name, entry in header.items()
            if name != "__metadata__"
        ]
    return tensors


def lora_parameters(tensors: list[Tensor], rank: int) -> int:
    """Adapter parameters with LoRA on every linear layer (the job's default): r x (in + out) per matrix."""
    linear = [t for t in tensors if len(t.shape) == 2 and not any(k in t.name for k in ("embed", "lm_head", "wte"))]
    return sum(rank * (t.shape[0] + t.shape[1]) for t in linear)


def checkpoint_bytes(tensors: list[Tensor], *, lora_rank: int | None, train_dtype: str) -> int:
    """The size of one checkpoint: the trained weights and AdamW's two moments for each of them."""
    if lora_rank is not None:
        return lora_parameters(tensors, lora_rank) * LORA_BYTES * (1 + ADAM_STATES)
    parameters = sum(t.numel for t in tensors)
    return parameters * DTYPE_BYTES.get(train_dtype, 4) * (1 + ADAM_STATES)
