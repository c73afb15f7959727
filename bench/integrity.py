"""Benchmark: what checkpoint checksums cost, on the 76M model: writing a checkpoint, hashing it (in the
save, counted in the stop budget) and verifying it before a resume.

    .venv/bin/python -m bench.run --only integrity

One SFT job of SAVES checkpoints (full fine-tune: the weights and AdamW's two moments, about 0.9 GB each);
each marker records how long the trainer took to write the checkpoint and the ranks to hash it
(jobs/integrity.py). The verification (`damage`, as preflight runs it before a resume) is timed REPEATS
times on the newest checkpoint, in this process, right after the job: the files are in the page cache, as
on a node that restarts the job; a fresh node reads them from the volume first, at the volume's speed.
Timings are never asserted in tests.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.training import run_job
from jobs.integrity import damage
from jobs.layout import COMPLETE_MARKER, OutputLayout

SAVES, QUICK_SAVES = 3, 2
REPEATS = 3
SETTINGS = {"TRAIN_MAX_LENGTH": "128", "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "4", "TRAIN_SAVE_STEPS": "2",
            "TRAIN_SAVE_TOTAL_LIMIT": "10", "TRAIN_EVAL_SPLIT": "0"}  # fmt: skip


def run(quick: bool) -> dict[str, Any]:
    saves = QUICK_SAVES if quick else SAVES
    work = Path(tempfile.mkdtemp(prefix="bench-integrity-"))
    try:
        output = work / "out"
        run_job("76m", "sft", 2 * saves, work, SETTINGS, keep=output)
        layout = OutputLayout(output)
        markers = [json.loads((d / COMPLETE_MARKER).read_text()) for _, d in layout.checkpoints()]
        newest = layout.checkpoints()[-1][1]
        verify = []
        for _ in range(REPEATS):
            started = time.monotonic()
            assert damage(newest) == []
            verify.append(time.monotonic() - started)
        size = sum(entry["size"] for entry in markers[-1]["files"].values())
        save = statistics.median(m["seconds"]["save"] for m in markers)
        checksums = statistics.median(m["seconds"]["checksums"] for m in markers)
        return {
            "checkpoint_bytes": size, "files": len(markers[-1]["files"]), "checkpoints": len(markers),
            "save_seconds": round(save, 2), "checksum_seconds": round(checksums, 2),
            "verify_seconds": round(statistics.median(verify), 2),
            "verify_over_save": round(statistics.median(verify) / save, 3),
            "checksums_over_save": round(checksums / save, 3),
        }  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
