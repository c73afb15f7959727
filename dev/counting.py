"""The demo task, counting on: "Count on from 17, 5 numbers." -> "18 19 20 21 22".

A random 2-layer model learns it in a few dozen CPU steps, so the built-in demo of every method shows
its loss falling (or its reward margin rising) in about a minute. Each method's demo data
(`DEMOS` in dev/demo.py) is made from these pieces; the demo tokenizer is trained on `corpus()`.
"""

from __future__ import annotations

import random

STARTS = range(0, 90)
LENGTHS = range(3, 7)


def count(start: int, length: int, step: int = 1) -> str:
    return " ".join(str(start + step * (i + 1)) for i in range(length))


def prompt(start: int, length: int) -> str:
    return f"Count on from {start}, {length} numbers."


def draw(rng: random.Random) -> tuple[str, int, int]:
    """A random question: its prompt, start and length."""
    start, length = rng.randrange(STARTS.start, STARTS.stop), rng.randrange(LENGTHS.start, LENGTHS.stop)
    return prompt(start, length), start, length


def wrong_count(rng: random.Random, start: int, length: int) -> str:
    """A plausible wrong answer: counting down, in twos, or from the wrong number."""
    return rng.choice([count(start, length, step=-1), count(start, length, step=2), count(start + 3, length)])


def corpus() -> list[str]:
    """Every text the task can produce, for training the demo tokenizer."""
    texts = [prompt(start, length) for start in STARTS for length in LENGTHS]
    texts += [" ".join(str(i) for i in range(-10, 200))]
    return texts
