"""Mixtures the TRAIN_DATA_MIX tests share: three SFT sources in three layouts, and TRL's documented recipe
with its Hub ids replaced by local folders."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dev.demo import sft_records
from dev.testing import ROOT, Run, clean_env

DEMO = ROOT / "dev" / "demo_data"
TRL_DOCS = ROOT / "tests" / "data" / "trl_docs"


def run_job(*args: str, env: Mapping[str, str]) -> Run:
    """`run_entrypoint` with the settings as one mapping (a type checker cannot tell them from its timeout)."""
    result = subprocess.run([sys.executable, str(ROOT / "entrypoint.py"), *args], env=clean_env(**env), cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    return Run(result.returncode, result.stdout, result.stderr)


def sft_sources(root: Path) -> str:
    """A file (the SFT demo, 400 records), a glob of gzip shards (200) and an Alpaca JSON array (100)."""
    records = sft_records(200, seed=7)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    for i in range(2):
        with gzip.open(root / "shards" / f"part-{i}.jsonl.gz", "wt", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records[i * 100 : (i + 1) * 100])
    alpaca = [{"instruction": r["messages"][0]["content"], "input": "", "output": r["messages"][1]["content"]}
              for r in sft_records(100, seed=8)]  # fmt: skip
    (root / "alpaca.json").write_text(json.dumps(alpaca, indent=1), encoding="utf-8")
    return (
        f"datasets:\n  - path: {DEMO / 'sft_messages.jsonl'}\n    fraction: 0.5\n"
        f"  - path: {root / 'shards' / 'part-*.jsonl.gz'}\n    fraction: 0.3\n"
        f"  - path: {root / 'alpaca.json'}\n    format: alpaca\n    fraction: 0.2\n"
        "test_split_size: 0.1\n"
    )


def docs_recipe(root: Path, model: str) -> str:
    """TRL's documented SFT mixture (tests/data/trl_docs/clis_mixture_sft.yaml) with its Hub ids and model
    replaced by local folders shaped like their snapshots; every other byte as the docs have it."""
    imdb, stories = root / "imdb", root / "tinystories"
    (imdb / "plain_text").mkdir(parents=True)
    (stories / "data").mkdir(parents=True)
    reviews = [{"text": f"Review {n}: the film counts from {n} to {n + 3}.", "label": n % 2} for n in range(60)]
    pq.write_table(pa.Table.from_pylist(reviews[:50]), imdb / "plain_text" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(reviews[50:]), imdb / "plain_text" / "test-00000-of-00001.parquet")
    for i in range(2):
        story = [{"text": f"Once upon a time {i}-{n}, one two three."} for n in range(30)]
        pq.write_table(pa.Table.from_pylist(story), stories / "data" / f"train-0000{i}-of-00002.parquet")
    text = (TRL_DOCS / "clis_mixture_sft.yaml").read_text(encoding="utf-8")
    for hub_id, local in (("stanfordnlp/imdb", imdb), ("roneneldan/TinyStories", stories),
                          ("Qwen/Qwen2.5-0.5B", model)):  # fmt: skip
        assert hub_id in text
        text = text.replace(hub_id, str(local))
    return text
