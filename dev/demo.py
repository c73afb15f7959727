"""The built-in demo: a tiny Llama-style model made offline, sample data for every method, and the
`make <method>` runner that trains on them unless the user names a model. Development only: the image
holds jobs/, not this package.

The task is counting on (dev/counting.py); each method's sample data is made by its entry in `DEMOS`
(a test holds every registered method to have one). A random 2-layer model learns it in a few dozen
CPU steps.

    python -m dev.demo model .cache/demo-model    # build the model and tokenizer (seconds, offline)
    python -m dev.demo model DIR --shape 76m      # a Llama-shaped 76M model (benchmarks, memory tests)
    python -m dev.demo data                       # regenerate every method's bundled sample file
    python -m dev.demo run sft                    # what `make sft` runs (TRAIN_* still override)
    python -m dev.demo run validate               # what `make validate` runs
    python -m dev.demo run estimate               # what `make estimate` runs (TRAIN_METHOD, default dpo)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev import counting
from jobs.methods import METHODS

ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL = ROOT / ".cache" / "demo-model"
DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
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


def sft_records(n: int = 400, seed: int = 1234) -> list[dict[str, Any]]:
    """Conversations that ask for a count and answer it."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        question, start, length = counting.draw(rng)
        answer = counting.count(start, length)
        records.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    return records


def dpo_records(n: int = 400, seed: int = 1235) -> list[dict[str, Any]]:
    """The right count preferred over a plausible wrong one."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        question, start, length = counting.draw(rng)
        wrong = counting.wrong_count(rng, start, length)
        records.append({"prompt": question, "chosen": counting.count(start, length), "rejected": wrong})
    return records


def kto_records(n: int = 400, seed: int = 1236) -> list[dict[str, Any]]:
    """Counts judged one at a time: the right count is desirable, a plausible wrong one is not."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        question, start, length = counting.draw(rng)
        desirable = rng.random() < 0.5
        answer = counting.count(start, length) if desirable else counting.wrong_count(rng, start, length)
        records.append({"prompt": question, "completion": answer, "label": desirable})
    return records


@dataclass(frozen=True)
class Demo:
    """A method's built-in demo: its bundled data file, how that file is made, and a learning rate at which
    the tiny model shows its loss falling (or its reward margin rising) within the demo's steps."""

    file: str  # in dev/demo_data/
    records: Callable[[], list[dict[str, Any]]]
    learning_rate: float

    @property
    def data(self) -> Path:
        return DEMO_DATA / self.file


DEMOS: dict[str, Demo] = {
    "sft": Demo("sft_messages.jsonl", sft_records, learning_rate=2e-3),
    "dpo": Demo("dpo_pairs.jsonl", dpo_records, learning_rate=5e-4),
    "kto": Demo("kto_unpaired.jsonl", kto_records, learning_rate=5e-4),
}


def write_sample_data() -> None:
    for demo in DEMOS.values():
        lines = [json.dumps(r, ensure_ascii=False) for r in demo.records()]
        demo.data.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_tokenizer(
    vocab_size: int = 384, special_tokens: list[str] | None = None, named: dict[str, str] | None = None
) -> Any:
    """A byte-level BPE trained on the demo corpus, wrapped as a transformers fast tokenizer: the demo's
    special tokens and template, or a model family's (`special_tokens`, and `named` ones such as eos_token)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens or SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(counting.corpus(), trainer=trainer)
    if special_tokens:
        return PreTrainedTokenizerFast(tokenizer_object=core, **(named or {}))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<|end|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# Model shapes: the demo's, and Llama-shaped ones at realistic proportions (a 32k vocabulary, untied
# embeddings, MLP ~3x hidden, grouped KV heads) for benchmarks and memory tests. Dropout is on in those,
# as in many pretrained configs, so resume tests cover the RNG state.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "max_position_embeddings": 512},
    "76m": {"vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 14,
            "num_attention_heads": 8, "num_key_value_heads": 4, "attention_dropout": 0.1,
            "max_position_embeddings": 2048},
    "150m": {"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 16,
             "num_attention_heads": 12, "num_key_value_heads": 4, "attention_dropout": 0.1,
             "max_position_embeddings": 2048},
}  # fmt: skip


def build_model(directory: Path, shape: str = "tiny") -> None:
    """Write a randomly initialised Llama of `shape` and the demo tokenizer to `directory` (deterministic,
    offline). Larger shapes keep their own vocabulary size: the rows past the tokenizer's are never used."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from jobs.release.reload import readable_as_umask_allows

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        **{"vocab_size": len(tokenizer), **SHAPES[shape]},
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
    readable_as_umask_allows(partial)  # it gets mounted into containers that run as another user
    if directory.exists():
        import shutil

        shutil.rmtree(directory)
    partial.replace(directory)


def demo_environment(command: str, environ: dict[str, str]) -> dict[str, str]:
    """The variables `make <method>` / `make validate` run with: the demo's, under whatever the user set.

    The demo model and data apply only when TRAIN_MODEL_NAME_OR_PATH is not set; validation names no
    model (no tokenizer is loaded).
    """
    env = {**environ}
    if command == "validate":
        demo = DEMOS.get(env.setdefault("TRAIN_METHOD", "dpo"))
        if demo is not None:  # an unknown method is the entrypoint's to report
            env.setdefault("TRAIN_DATA_PATH", _relative(demo.data))
        return env
    if command == "estimate":  # of the method asked for, on the demo unless a model is named
        command = env.get("TRAIN_METHOD", "dpo")
        if command not in METHODS:
            return env
    demo = DEMOS[command]
    env["TRAIN_METHOD"] = command
    if "TRAIN_MODEL_NAME_OR_PATH" not in env:
        env["TRAIN_MODEL_NAME_OR_PATH"] = _relative(DEMO_MODEL)
        env.setdefault("TRAIN_DATA_PATH", _relative(demo.data))
        env.setdefault("TRAIN_LEARNING_RATE", str(demo.learning_rate))
        env.setdefault("TRAIN_EVAL_SPLIT", "0.1")
        env.setdefault("TRAIN_LOGGING_STEPS", "10")
    return env


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def run(command: str) -> None:
    """Exec the entrypoint, exactly as a user would run it, with the demo's variables."""
    env = demo_environment(command, dict(os.environ))
    if env.get("TRAIN_MODEL_NAME_OR_PATH") == _relative(DEMO_MODEL) and not (DEMO_MODEL / "config.json").is_file():
        build_model(DEMO_MODEL)
    os.chdir(ROOT)
    subcommand = [command] if command in ("validate", "estimate") else []
    os.execve(sys.executable, [sys.executable, "entrypoint.py", *subcommand], env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    model = sub.add_parser("model")
    model.add_argument("directory", type=Path)
    model.add_argument("--shape", choices=SHAPES, default="tiny")
    sub.add_parser("data")
    sub.add_parser("run").add_argument("command", choices=[*METHODS, "validate", "estimate"])
    args = parser.parse_args(argv)
    if args.what == "model":
        build_model(args.directory, args.shape)
    elif args.what == "data":
        write_sample_data()
    else:
        run(args.command)


if __name__ == "__main__":
    main()
