"""What a run will cost before its model loads, from the model's config.json and its safetensors
headers (an 8-byte length and a JSON table of every tensor's dtype and shape), never the weights.

Two figures: the size of one checkpoint (preflight compares it with the free disk) and the memory of
one training process at its peak (jobs/estimate/memory.py compares it with the device's). The memory estimate
adds up what a training step holds at once:

- the weights, by dtype or quantization (NF4: half a byte per parameter plus its block constants);
- their gradients and the optimizer's states, for every trainable parameter (all of them, or LoRA's),
  partitioned over the processes by ZeRO;
- the frozen reference copy of a full-fine-tune DPO/KTO (with LoRA the reference is the base model with
  its adapter disabled: no copy);
- the activations autograd saves for the backward pass: per token and layer, the inputs of every linear
  layer and of the attention and MLP (8 hidden + 2 key/value + 4 intermediate values for a Llama-shaped
  layer, counted with saved-tensor hooks), the attention matrices where the kernel materialises them,
  LoRA's dropout copies; with activation checkpointing, one input per layer plus one layer recomputed;
- the logits: several vocabulary-wide copies per token (fp32 logits, log-softmax, their gradients);
- the allocator's overhead on what each step makes and frees (glibc's arenas on CPU, torch's cache on a
  GPU).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Bytes per element of the safetensors dtypes, and of the dtypes a model trains in.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1, "float32": 4, "bfloat16": 2, "float16": 2}  # fmt: skip
ADAM_STATES = 2  # AdamW keeps two moments per trainable parameter
LORA_BYTES = 4  # PEFT keeps adapters in fp32 (autocast_adapter_dtype), whatever the base model's dtype
NF4_BYTES = 0.5 + 4 / 64  # 4 bits per weight, one fp32 absmax per block of 64 (less with double quantization)
INT8_BYTES = 1.0
# Values saved for the backward pass per token in one Llama-shaped layer, measured with saved-tensor
# hooks: the linear layers' inputs (8 x hidden, 2 x key/value width, 4 x intermediate).
SAVED_PER_HIDDEN, SAVED_PER_KV, SAVED_PER_INTERMEDIATE = 8, 2, 4
# Copies of the attention matrix (heads x length per token) that a materialising kernel saves: the
# probabilities (eager), plus the dropout mask and the dropped probabilities when attention dropout is on.
ATTENTION_COPIES, ATTENTION_DROPOUT_COPIES = 1, 3
# Vocabulary-wide fp32 tensors per token at the peak of a step: the logits, their log-softmax, the
# reference's logits, the trainer's extras (entropy, token accuracy). Fitted to peaks measured on CPU.
LOGIT_COPIES = 6
# What the allocator holds for the memory that is made and freed every step (activations, logits,
# gradients), per byte of it in use. CPU: glibc keeps freed pages and fragments; fitted here to the
# resident peaks of SFT/DPO, full and LoRA, on two model sizes (1.29-1.49 each). GPU: torch's caching
# allocator; not measured here (no GPU), 1.2 is its usual reserved/allocated ratio in training.
ALLOCATOR_OVERHEAD = {"cpu": 1.35, "gpu": 1.20}
# Optimizers by TRAIN_OPTIM prefix: (states per trainable parameter, bytes per state; None = the
# parameter's dtype).
OPTIMIZERS: dict[str, tuple[float, float | None]] = {
    "adamw_bnb_8bit": (2, 1), "adamw_8bit": (2, 1), "paged_adamw_8bit": (2, 1), "adamw": (2, None),
    "adam": (2, None), "adafactor": (0.01, 4), "sgd": (1, None), "lion_8bit": (1, 1), "lion": (1, None),
}  # fmt: skip


def human_size(size: float) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_linear(self) -> bool:
        """A weight matrix that LoRA adapts and bitsandbytes quantizes (not the embeddings or the head)."""
        return len(self.shape) == 2 and not any(k in self.name for k in ("embed", "lm_head", "wte", "wpe"))


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
    return sum(rank * (t.shape[0] + t.shape[1]) for t in tensors if t.is_linear)


def checkpoint_bytes(tensors: list[Tensor], *, lora_rank: int | None, train_dtype: str) -> int:
    """The size of one checkpoint: the trained weights and AdamW's two moments for each of them."""
    if lora_rank is not None:
        return lora_parameters(tensors, lora_rank) * LORA_BYTES * (1 + ADAM_STATES)
    parameters = sum(t.numel for t in tensors)
    return parameters * DTYPE_BYTES.get(train_dtype, 4) * (1 + ADAM_STATES)


@dataclass(frozen=True)
class ModelShape:
    """The figures of config.json that activations scale with."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_width: int  # key/value heads x head size
    vocab: int
    attention_dropout: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """Llama-style names first, then the GPT-2/OPT ones; a multimodal model's text part."""
        config = config.get("text_config") or config

        def first(*names: str, default: Any = None) -> Any:
            return next((config[n] for n in names if config.get(n) is not None), default)

        hidden = int(first("hidden_size", "n_embd", "d_model"))
        heads = int(first("num_attention_heads", "n_head", "num_heads"))
        head_dim = int(first("head_dim", default=hidden // heads))
        return cls(
            hidden=hidden,
            layers=int(first("num_hidden_layers", "n_layer", "num_layers")),
            intermediate=int(first("intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)),
            heads=heads,
            kv_width=int(first("num_key_value_heads", default=heads)) * head_dim,
            vocab=int(first("vocab_size")),
            attention_dropout=float(first("attention_dropout", "attn_pdrop", "dropout", default=0.0)),
        )

    @classmethod
    def read(cls, model_dir: Path) -> ModelShape:
        return cls.from_config(json.loads((model_dir / "config.json").read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Plan:
    """What one training process will do, in the terms its memory depends on."""

    gpu: bool
    weight_dtype: str  # float32 | bfloat16 | float16
    quantization: str | None = None  # "4bit" | "8bit"
    lora_rank: int | None = None
    lora_dropout: float = 0.0
    batch_size: int = 8
    max_length: int = 1024
    sequences_per_example: int = 1
    reference_model: bool = False  # the method scores with a reference (frozen copy unless LoRA or precomputed)
    precomputed_reference: bool = False
    activation_checkpointing: bool = False
    attention: str = "sdpa"
    optimizer: str = "adamw_torch"
    zero_stage: int = 0
    processes: int = 1
    offload_optimizer: bool = False

    @property
    def element_bytes(self) -> int:
        return DTYPE_BYTES[self.weight_dtype]

    def describe(self) -> str:
        how = "full fine-tune" if self.lora_rank is None else f"LoRA r={self.lora_rank}"
        if self.quantization:
            how = f"{'Q' if self.lora_rank else ''}{how} on {self.quantization} weights"
        zero = f", ZeRO-{self.zero_stage} over {self.processes} processes" if self.zero_stage else ""
        checkpointing = ", activation checkpointing" if self.activation_checkpointing else ""
        return (f"{how}, {self.weight_dtype}, batch {self.batch_size} x {self.sequences_per_example} x "
                f"{self.max_length} tokens (max_length: the worst case){checkpointing}{zero}")  # fmt: skip


@dataclass
class MemoryEstimate:
    """Bytes one training process holds at its peak, by part; `total` includes the allocator's overhead.

    Weights, the reference copy and the optimizer states are held throughout. The backward pass frees
    activations as it creates gradients, so the peak holds the larger of (activations and logits) and
    (gradients and the optimizer's temporaries), not both.
    """

    parameters: int
    trainable: int
    parts: dict[str, float] = field(default_factory=dict)
    overhead: float = 1.0

    HELD = ("weights", "reference copy", "optimizer states")
    FORWARD = ("activations", "logits")
    UPDATE = ("gradients",)

    @property
    def held(self) -> float:
        return self._sum(self.HELD)

    @property
    def churn(self) -> float:
        """What is made and freed every step, at the peak."""
        return max(self._sum(self.FORWARD), self._sum(self.UPDATE))

    def _sum(self, names: tuple[str, ...]) -> float:
        return sum(self.parts.get(name, 0.0) for name in names)

    @property
    def total(self) -> float:
        return self.held + self.churn * self.overhead

    def lines(self) -> list[str]:
        uncounted = self.UPDATE if self._sum(self.FORWARD) >= self._sum(self.UPDATE) else self.FORWARD
        width = max(len(name) for name in (*self.parts, "allocator overhead"))
        out = []
        for name, size in self.parts.items():
            if size:
                note = "  (not at the peak: made as the activations are freed)" if name in uncounted else ""
                out.append(f"  {name:<{width}}  {human_size(size):>10}{note}")
        out.append(f"  {'allocator overhead':<{width}}  {human_size(self.churn * (self.overhead - 1)):>10}"
                   f"  (x{self.overhead:.2f} of what each step frees)")  # fmt: skip
        out.append(f"  {'peak':<{width}}  {human_size(self.total):>10}")
        return out


def estimate_memory(tensors: list[Tensor], shape: ModelShape, plan: Plan) -> MemoryEstimate:
    """The peak memory of one training process of `plan` on this model (see the module's docstring)."""
    parameters = sum(t.numel for t in tensors)
    trainable = lora_parameters(tensors, plan.lora_rank) if plan.lora_rank else parameters
    weights = _weight_bytes(tensors, plan)
    states, grads = _training_state_bytes(trainable, plan)
    parts = {
        "weights": weights / (plan.processes if plan.zero_stage == 3 else 1),
        "reference copy": _reference_bytes(weights, plan),
        "optimizer states": states,
        "activations": _activation_bytes(shape, plan, _linear_inputs(tensors, shape)),
        "logits": LOGIT_COPIES * 4.0 * _tokens(plan) * shape.vocab,
        "gradients": grads,
    }
    return MemoryEstimate(parameters, trainable, parts, ALLOCATOR_OVERHEAD["gpu" if plan.gpu else "cpu"])


def _weight_bytes(tensors: list[Tensor], plan: Plan) -> float:
    if plan.quantization is None:
        return sum(t.numel for t in tensors) * plan.element_bytes
    per_weight = NF4_BYTES if plan.quantization == "4bit" else INT8_BYTES
    return sum(t.numel * (per_weight if t.is_linear else plan.element_bytes) for t in tensors)


def _training_state_bytes(trainable: int, plan: Plan) -> tuple[float, float]:
    """(optimizer states, gradients) of the trainable parameters, after ZeRO's partitioning."""
    element = LORA_BYTES if plan.lora_rank else plan.element_bytes
    count, state_bytes = next((v for k, v in OPTIMIZERS.items() if plan.optimizer.startswith(k)), (2, None))
    if plan.zero_stage and element == 2:  # DeepSpeed: fp32 master weights, and fp32 states beside them
        states = trainable * (4 + count * (state_bytes or 4))
    else:
        states = trainable * count * (state_bytes or element)
    grads = float(trainable * element)
    if plan.zero_stage >= 1:
        states = 0.0 if plan.offload_optimizer else states / plan.processes
    if plan.zero_stage >= 2:
        grads /= plan.processes
    elif plan.processes > 1:
        grads *= 2  # DDP's gradient buckets hold a second copy
    return states, grads


def _reference_bytes(weights: float, plan: Plan) -> float:
    if not plan.reference_model or plan.lora_rank or plan.precomputed_reference:
        return 0.0
    return weights / (plan.processes if plan.zero_stage == 3 else 1)


def _tokens(plan: Plan) -> int:
    return plan.batch_size * plan.sequences_per_example * plan.max_length


def _linear_inputs(tensors: list[Tensor], shape: ModelShape) -> float:
    """Input width of all linear layers of one decoder layer (6 hidden + 1 intermediate in Llama)."""
    return sum(t.shape[1] for t in tensors if t.is_linear) / shape.layers


def _activation_bytes(shape: ModelShape, plan: Plan, linear_inputs: float) -> float:
    per_layer = _layer_bytes_per_token(shape, plan, linear_inputs)
    if plan.activation_checkpointing:  # each layer's input, and one layer recomputed during backward
        return _tokens(plan) * (shape.layers * shape.hidden * plan.element_bytes + per_layer)
    return _tokens(plan) * shape.layers * per_layer


def _layer_bytes_per_token(shape: ModelShape, plan: Plan, linear_inputs: float) -> float:
    element = plan.element_bytes
    values = (
        SAVED_PER_HIDDEN * shape.hidden + SAVED_PER_KV * shape.kv_width + SAVED_PER_INTERMEDIATE * shape.intermediate
    )
    saved = values * element + (4 * shape.hidden if element == 2 else 0)  # RMSNorm saves fp32 copies
    matrix = shape.heads * plan.max_length  # one attention row per head
    if plan.attention == "eager" or not plan.gpu:  # CPU attention materialises rows; GPU kernels do not
        saved += matrix  # the padding mask, a byte per entry
        copies = (
            ATTENTION_DROPOUT_COPIES if shape.attention_dropout > 0 else (plan.attention == "eager") * ATTENTION_COPIES
        )
        saved += copies * matrix * element
    if plan.lora_rank and plan.lora_dropout > 0:  # dropout copies of each adapted layer's input, and their masks
        saved += linear_inputs * (element + 1)
    return saved
