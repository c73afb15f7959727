"""The Dockerfile's contract, checked without building it (`make image-test` builds and runs the image; it
takes too long for every CI run): the runtime stage has no compiler, runs as uid 1000 under tini with every
writable path on a volume; and the files the image holds, as .dockerignore and the COPY lines select
them, are all the job needs to validate and to print its help."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from dev.testing import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) for each instruction, continuation lines joined."""
    out: list[tuple[str, str, str]] = []
    stage, pending = "", ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        instruction, _, arguments = pending.strip().partition(" ")
        if instruction == "FROM":
            stage = arguments.split(" AS ")[-1].strip()
        out.append((stage, instruction, arguments.strip()))
        pending = ""
    return out


def _stage(name: str) -> list[tuple[str, str]]:
    return [(instruction, arguments) for stage, instruction, arguments in _instructions() if stage == name]


def _environment(stage: str) -> dict[str, str]:
    env = {}
    for instruction, arguments in _stage(stage):
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in arguments.split())
    return env


def test_the_runtime_stage_has_no_compiler_and_runs_unprivileged_under_tini() -> None:
    build, runtime = _stage("build"), _stage("runtime")
    assert any("build-essential" in arguments for _, arguments in build)
    assert not any(word in arguments for _, arguments in runtime for word in ("build-essential", "gcc", "g++"))
    assert ("USER", "1000:1000") in runtime
    entrypoint = json.loads(next(arguments for instruction, arguments in runtime if instruction == "ENTRYPOINT"))
    assert entrypoint[:2] == ["tini", "--"] and entrypoint[2:] == ["python", "entrypoint.py"]  # exec form


def test_every_path_the_job_writes_is_a_volume_so_the_root_can_be_read_only() -> None:
    env = _environment("runtime")
    for name in ("HF_HOME", "TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR", "MPLCONFIGDIR"):
        assert env[name].startswith("/cache/"), name
    assert env["TMPDIR"] == "/tmp" and env["HF_HUB_OFFLINE"] == "1"
    assert not [name for name in env if "SECRET" in name or name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")]


def test_the_build_installs_with_the_makefiles_pins_and_script() -> None:
    runs = [arguments for instruction, arguments in _stage("build") if instruction == "RUN"]
    assert any("scripts/install.sh /opt/venv/bin/python requirements.txt" in run for run in runs)
    copied = [arguments for instruction, arguments in _stage("build") if instruction == "COPY"]
    assert copied == ["requirements.txt ./", "scripts/install.sh scripts/install.sh"]


def test_the_job_is_python_alone() -> None:
    """No compiled code of the job's own: the image's runtime needs no compiler, and every machine runs the
    same data path (the prepared file's bytes, part of the resume identity, do not depend on a build). The
    files the project holds (a checkout may keep an old build's jobs/data/_scan*.so: delete it)."""
    tracked = subprocess.run(["git", "ls-files", "jobs"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not [p for p in tracked.stdout.split() if Path(p).suffix in (".c", ".h", ".so", ".pyx", ".pyi")]


def _matches(path: str, pattern: str) -> bool:
    """Docker's pattern match, for the forms .dockerignore uses: a path glob, or **/name at any depth."""
    if pattern.startswith("**/"):
        return fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern[3:])
    return fnmatch.fnmatch(path, pattern)


def _context(destination: Path) -> Path:
    """The build context as .dockerignore leaves it: '*' excludes everything, '!path' lets a path back in,
    later patterns win (Docker's rules, for the patterns this file uses)."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"]

    def included(relative: str) -> bool:
        keep = True
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for line in patterns:
            negated, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
            if any(_matches(prefix, pattern) for prefix in prefixes):
                keep = negated
        return keep

    local = {".venv", ".git", ".cache", "output"}  # never in a clone's context; large here
    for path in (p for top in ROOT.iterdir() if top.name not in local for p in (top, *top.rglob("*"))):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and included(relative):
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination / relative)
    return destination


def test_the_image_holds_all_the_job_needs(tmp_path: Path) -> None:
    """The runtime stage's COPY lines applied to the context: in that tree alone, the entrypoint prints its
    help and validates the demo data mounted from outside, as a volume would be (the venv stands in for the
    image's /opt/venv). The image holds jobs/, not the development package."""
    context, app = _context(tmp_path / "context"), tmp_path / "app"
    for instruction, arguments in _stage("runtime"):
        if instruction == "COPY" and not arguments.startswith("--from"):
            source, target = arguments.split()
            target_path = app / (source if target in ("./", ".") else target)
            copy = shutil.copytree if (context / source).is_dir() else shutil.copy2
            target_path.parent.mkdir(parents=True, exist_ok=True)
            copy(context / source, target_path)
    assert not (app / "tests").exists() and not (app / "k8s").exists() and not list(app.rglob("__pycache__"))
    assert not (app / "dev").exists() and not (app / "bench").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAIN_", "PYTHON"))}
    help_ = subprocess.run([sys.executable, "entrypoint.py", "--help"], cwd=app, env=env, capture_output=True,
                           text=True, check=False, timeout=120)  # fmt: skip
    assert help_.returncode == 0 and "TRAIN_METHOD" in help_.stdout, help_.stderr[-2000:]
    env.update(TRAIN_METHOD="sft", TRAIN_DATA_PATH=str(ROOT / "dev" / "demo_data" / "sft_messages.jsonl"),
               TRAIN_OUTPUT_DIR=str(tmp_path / "out"))  # fmt: skip
    validate = subprocess.run([sys.executable, "entrypoint.py", "validate"], cwd=app, env=env, capture_output=True,
                              text=True, check=False, timeout=300)  # fmt: skip
    assert validate.returncode == 0, validate.stderr[-3000:]
    assert (tmp_path / "out" / "validation_report.json").is_file()
