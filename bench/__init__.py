"""`make bench`: the job's speed and memory as ratios against baselines measured in the same run.

    make bench                     # everything (~50 minutes here), then bench/results/<date>.json and BENCHMARKS.md
    .venv/bin/python -m bench.run --only training --quick     # one part, fewer steps

Parts: training (bench/training.py: the job against the plainest TRL script, bench/bare_trl.py),
validation (bench/validation.py: against an orjson parse-only loop), exporter (bench/exporter.py: step
time with the exporter scraped against off). Never asserted in tests: these machines are noisy, so each
figure comes with its spread over the repetitions.
"""
