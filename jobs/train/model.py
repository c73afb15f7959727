"""Model and tokenizer loading shared by every method: dtype, 4-bit NF4 (QLoRA), LoRA.

Loads from a local directory only. Full precision is never the silent default on a GPU: weights load
in bf16 where the device supports it, and `TRAIN_LOAD_IN_4BIT=true` loads NF4 weights with double
quantisation through bitsandbytes (defaults: jobs/config/defaults.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from jobs.errors import ConfigError, EnvironmentProblem
from jobs.train import attention

if TYPE_CHECKING:
    from peft import PeftConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import ModelConfig

logger = logging.getLogger(__name__)


def build_model_config(settings: dict[str, Any]) -> ModelConfig:
    """TRL's ModelConfig from the run's resolved model settings (jobs/config/resolved.py)."""
    from trl import ModelConfig

    try:
        return ModelConfig(**settings)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"model settings rejected by TRL: {error}") from None


def load_tokenizer(model_args: ModelConfig) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    path = str(model_args.model_name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision)
    except (OSError, ValueError) as error:
        raise EnvironmentProblem(f"TRAIN_MODEL_NAME_OR_PATH={path}: no usable tokenizer ({error})") from None
    if tokenizer.pad_token is None:
        # Padding with EOS is the common fallback; the attention mask keeps the padded positions out of the loss.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _device_map(quantized: bool) -> Any:
    """Quantized weights must sit on this rank's GPU; distributed runs place the model themselves."""
    from accelerate import PartialState

    state = PartialState()
    device_type = state.device.type if state.device is not None else "cpu"
    if quantized and device_type == "cuda":
        return {"": state.local_process_index}
    if state.num_processes > 1 or device_type == "cpu":
        return None
    return "auto"


def load_model(model_args: ModelConfig, trust_remote_code: bool = False) -> PreTrainedModel:
    """Load the base model with the chosen dtype and quantization."""
    from trl import get_quantization_config
    from trl.trainer.utils import create_model_from_path

    quantization = get_quantization_config(model_args)
    if model_args.attn_implementation == attention.NAME:
        attention.register()
    kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        "attn_implementation": model_args.attn_implementation,
        "trust_remote_code": trust_remote_code,
        "device_map": _device_map(quantization is not None),
    }
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    path = str(model_args.model_name_or_path)
    try:
        model = create_model_from_path(path, **kwargs)
    except (OSError, ValueError) as error:
        raise EnvironmentProblem(f"TRAIN_MODEL_NAME_OR_PATH={path}: the model does not load ({error})") from None
    if quantization is not None:
        dequantising_on_cpu(model)
    logger.info(
        "loaded %s: %.1fM parameters, dtype %s%s",
        path,
        model.num_parameters() / 1e6,
        model_args.dtype,
        ", 4-bit NF4" if model_args.load_in_4bit else (", 8-bit" if model_args.load_in_8bit else ""),
    )
    return model


def dequantising_on_cpu(model: PreTrainedModel) -> None:
    """Keep bitsandbytes' 4-bit layers on the dequantising path that training runs. In evaluation mode on a
    CPU with AVX512-BF16 they switch to an inference kernel that repacks the weights in place, and that
    fails on shapes it does not tile (`shape '[128, 5]' is invalid` on the tiny model); the evaluation
    forward passes (the samples, the reload check's logits) must compute what training computes."""
    layer: Any  # bitsandbytes' Linear4bit, typed by torch as a Module
    for layer in model.modules():
        if getattr(layer, "support_avx512bf16_for_cpu", False):
            layer.support_avx512bf16_for_cpu = False


def peft_config(model_args: ModelConfig) -> PeftConfig | None:
    """The LoRA adapter config when TRAIN_USE_PEFT is set (TRL's own builder, so every LoRA field applies)."""
    from trl import get_peft_config

    return get_peft_config(model_args)
