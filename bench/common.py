"""What the benchmarks share: the project root, and where each part's results go."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def publish(name: str, results: dict[str, Any]) -> None:
    """Print the results and keep them in output/bench/<name>.json."""
    text = json.dumps(results, indent=2) + "\n"
    out = ROOT / "output" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(text)
    sys.stdout.write(text)
