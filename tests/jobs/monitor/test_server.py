"""The exporter's scrape log: scrapes close together share a render, and none after the entrypoint's question
(GET /scrapes, asked once the final values are set) reuses a render begun before it."""

from __future__ import annotations

from jobs.monitor.server import RENDER_REUSE_SECONDS, ScrapeLog


def test_scrapes_close_together_share_one_render() -> None:
    log = ScrapeLog()
    first = log.begin()
    assert log.reusable(now=100.0) is None  # nothing rendered yet
    log.keep(first, 100.0, b"render 1")
    log.answer(first)
    log.begin()
    assert log.reusable(now=100.0 + RENDER_REUSE_SECONDS / 2) == b"render 1"
    assert log.reusable(now=100.0 + RENDER_REUSE_SECONDS) is None  # too old: render afresh


def test_no_scrape_after_the_question_reads_a_render_begun_before_it() -> None:
    log = ScrapeLog()
    early = log.begin()  # began before the end; still rendering when the entrypoint asks
    assert b'"begun": 1' in log.as_json()  # the entrypoint's question after the final values were set
    log.keep(early, 100.0, b"values before the end")
    log.answer(early)
    waited_for = log.begin()
    assert log.reusable(now=100.1) is None  # so the scrape the entrypoint waits for renders the final values
    log.keep(waited_for, 100.1, b"final values")
    log.answer(waited_for)
    log.begin()
    assert log.reusable(now=100.2) == b"final values"


def test_an_older_render_never_replaces_a_newer_one() -> None:
    log = ScrapeLog()
    first, second = log.begin(), log.begin()
    log.keep(second, 100.0, b"newer")
    log.keep(first, 99.9, b"older")  # the slower of two overlapping scrapes finishes last
    assert log.reusable(now=100.1) == b"newer"
