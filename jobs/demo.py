"""The built-in default: a tiny Llama-style model made offline, and sample data it can visibly learn.

The task is counting on: "Count on from 17." -> "18 19 20 21 22". The SFT sample teaches it
(`messages`); the DPO sample prefers the right count over a plausible wrong one (`prompt`/`chosen`/
`rejected`). A random 2-layer model learns it in a few dozen CPU steps, so `make sft` / `make dpo`
show a falling loss and rising reward margins in about a minute.

    python -m jobs.demo model .cache/demo-model    # build the model and tokenizer (seconds, offline)
    python -m jobs.demo data jobs/demo_data        # regenerate the bundled sample files
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

DEMO_DATA_DIR = Path(__file__).with_name("demo_data")
SAMPLE_FILES = {"sft": DEMO_DATA_DIR / "sft_messages.jsonl", "dpo": DEMO_DATA_DIR / "dpo_pairs.jsonl"}
SAMPLE_SIZE = 400
SEED = 1234

SPECIAL_TOKENS = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
# `{% generation %}` marks the assistant's tokens, which TRL's assistant_only_loss trains on.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{%- endif %}"
)


def _count(start: int, length: int, step: int = 1) -> str:
    return " ".join(str(start + step * (i + 1)) for i in range(length))


def _prompt(rng: random.Random) -> tuple[str, int, int]:
    start, length = rng.randrange(0, 90), rng.randrange(3, 7)
    return f"Count on from {start}, {length} numbers.", start, length


def sft_records(n: int = SAMPLE_SIZE, seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        prompt, start, length = _prompt(rng)
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": _count(start, length)}]
        records.append({"messages": messages})
    return records


def dpo_records(n: int = SAMPLE_SIZE, seed: int = SEED + 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        prompt, start, length = _prompt(rng)
        wrong = rng.choice([_count(start, length, step=-1), _count(start, length, step=2), _count(start + 3, length)])
        records.append({"prompt": prompt, "chosen": _count(start, length), "rejected": wrong})
    return records


def write_sample_data(directory: Path = DEMO_DATA_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, records in (("sft_messages.jsonl", sft_records()), ("dpo_pairs.jsonl", dpo_records())):
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tokenizer_corpus() -> list[str]:
    texts = [m["content"] for r in sft_records() for m in r["messages"]]
    texts += [r[k] for r in dpo_records() for k in ("prompt", "chosen", "rejected")]
    texts += [" ".join(str(i) for i in range(200))]
    return texts


def build_tokenizer(vocab_size: int = 384) -> Any:
    """A byte-level BPE trained on the demo corpus, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<|end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(directory: Path) -> None:
    """Write a randomly initialised tiny Llama and its tokenizer to `directory` (deterministic, offline)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    partial = directory.with_name(directory.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if directory.exists():
        import shutil

        shutil.rmtree(directory)
    partial.replace(directory)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["model", "data"])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    if args.what == "model":
        build_model(args.directory)
    else:
        write_sample_data(args.directory)


if __name__ == "__main__":
    main()
