"""Tiny random models of real families, built offline from their configs: each with its family's model class,
special tokens, end-of-sequence ids and chat template.

The templates are the ones TRL ships for its families (trl/chat_templates/, read byte for byte, so that TRL
recognises them as it would a real checkpoint's), and Mistral's Instruct template, which TRL does not ship
(tests/data/chat_templates/, with its provenance). The tokenizer is the demo's byte-level BPE trained with
the family's special tokens; what the job must get right is what the template renders and where its turns
end, not the vocabulary.
"""

from __future__ import annotations

import fcntl
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trl

from dev.demo import ROOT, SHAPES, build_tokenizer

TRL_TEMPLATES = Path(trl.__file__).parent / "chat_templates"
OWN_TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "chat_templates"
CACHE = ROOT / ".cache" / "families"


@dataclass(frozen=True)
class Family:
    name: str
    config_class: str  # in transformers
    template: Path
    special_tokens: list[str]
    named: dict[str, str]  # bos_token, eos_token, pad_token, unk_token
    # The end-of-sequence tokens of config.json and generation_config.json (an instruct checkpoint's).
    eos: list[str]
    config: dict[str, Any] = field(default_factory=dict)


FAMILIES = {
    f.name: f
    for f in (
        Family("qwen2.5", "Qwen2Config", TRL_TEMPLATES / "qwen2_5.jinja",
               ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"],
               {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, ["<|im_end|>", "<|endoftext|>"]),
        Family("qwen3", "Qwen3Config", TRL_TEMPLATES / "qwen3.jinja",
               ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<think>", "</think>",
                "<tool_response>", "</tool_response>"],
               {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, ["<|im_end|>", "<|endoftext|>"],
               {"head_dim": 32}),
        Family("llama3", "LlamaConfig", TRL_TEMPLATES / "llama3.jinja",
               ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, ["<|end_of_text|>", "<|eot_id|>"]),
        # A base-style Gemma 2: its config stops on <eos> alone, not on the template's <end_of_turn>.
        Family("gemma2", "Gemma2Config", TRL_TEMPLATES / "gemma.jinja",
               ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
               {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}, ["<eos>"],
               {"head_dim": 32, "query_pre_attn_scalar": 32}),
        Family("gemma3", "Gemma3TextConfig", TRL_TEMPLATES / "gemma3.jinja",
               ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
               {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}, ["<eos>", "<end_of_turn>"],
               {"head_dim": 32, "query_pre_attn_scalar": 32}),
        Family("phi3", "Phi3Config", TRL_TEMPLATES / "phi3.jinja",
               ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
               {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, ["<|endoftext|>", "<|end|>"],
               {"pad_token_id": None}),
        Family("mistral", "MistralConfig", OWN_TEMPLATES / "mistral_instruct.jinja",
               ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
               {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, ["</s>"]),
    )
}  # fmt: skip


def build_family_model(family: Family, directory: Path) -> None:
    """A 2-layer model of the family with its tokenizer and template, written to `directory`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    tokenizer = build_tokenizer(special_tokens=family.special_tokens, named=family.named)
    tokenizer.chat_template = family.template.read_text(encoding="utf-8")
    eos_ids = tokenizer.convert_tokens_to_ids(family.eos)
    shape = {k: v for k, v in SHAPES["tiny"].items() if k != "max_position_embeddings"}
    config = getattr(transformers, family.config_class)(
        **{"vocab_size": len(tokenizer), **shape, "max_position_embeddings": 1024,
           "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
           "eos_token_id": eos_ids[0], "tie_word_embeddings": False, **family.config},
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=eos_ids if len(eos_ids) > 1 else eos_ids[0])  # fmt: skip
    partial = directory.with_name(directory.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(directory)


def family_model(name: str) -> str:
    """The family's tiny model, built once per checkout (a lock keeps pytest-xdist workers from racing)."""
    family = FAMILIES[name]
    key = hashlib.sha256((repr(family) + family.template.read_text(encoding="utf-8")).encode()).hexdigest()[:10]
    directory = CACHE / f"{name}-{key}"  # rebuilt when the family's definition changes
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "config.json").is_file():
            build_family_model(family, directory)
    return str(directory)
