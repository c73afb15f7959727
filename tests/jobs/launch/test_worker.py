"""A training process's outcome: each rank's exit code is recorded, and the specific cause wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.launch.worker import record_rank_outcome, recorded_exit_code
from jobs.layout import OutputLayout


def test_a_specific_rank_outcome_outranks_the_launchers_generic_failure(tmp_path: Path, monkeypatch) -> None:
    layout = OutputLayout(tmp_path)
    for rank, code in (("0", 1), ("1", 3)):
        monkeypatch.setenv("RANK", rank)
        record_rank_outcome(layout, code)
    assert recorded_exit_code(layout) == 3
    layout.rank_status_file("2").write_text("not json")  # a rank killed mid-write
    assert recorded_exit_code(layout) == 3


@pytest.mark.parametrize(("codes", "expected"), [((0, 0), 0), ((0, 1), 1), ((5, 1), 5), ((), None)],
                         ids=["all-done", "one-crash", "oom-then-crash", "none-recorded"])  # fmt: skip
def test_the_job_code_from_the_ranks_codes(codes: tuple[int, ...], expected: int | None, tmp_path: Path,
                                          monkeypatch) -> None:  # fmt: skip
    layout = OutputLayout(tmp_path)
    for rank, code in enumerate(codes):
        monkeypatch.setenv("RANK", str(rank))
        record_rank_outcome(layout, code)
    assert recorded_exit_code(layout) == expected
