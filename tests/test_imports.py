"""The architecture as the imports show it: in jobs/ they go one way (no module reaches, even lazily inside a
function, up to one that imports it), and the code that runs in the parent before any model loads pulls in
no torch, transformers or TRL: not at module level, and not at all for `--help`, `estimate` and
`validate` without a tokenizer pass."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dev.testing import ROOT, clean_env

HEAVY = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "deepspeed", "bitsandbytes")
# Where code runs: the training processes' folder; everything else in jobs/ runs in the parent (config,
# preflight, estimate, data, launch) or in the exporter process, and is shared with the training processes.
TRAINING_PROCESS = "jobs.train"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: resolve against the importing package
            parent = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*parent, base] if base else parent)
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    return []


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere (top level, functions, TYPE_CHECKING blocks)."""
    files = [*sorted((ROOT / "jobs").rglob("*.py")), ROOT / "entrypoint.py"]
    modules = {_module_name(path): path for path in files}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for imported in _imported(node, package):
                target = imported
                while target and target not in modules:  # `from jobs.x import name` -> jobs.x
                    target = target.rpartition(".")[0]
                # A submodule importing its own package (or a package its parent) is not an upward edge.
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports."""
    reach = {node: _reachable(graph, node) for node in graph}
    groups = {tuple(sorted(m for m in reach[node] if node in reach[m])) for node in graph if node in reach[node]}
    return sorted(list(group) for group in groups)


def test_jobs_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30 and sum(map(len, graph.values())) > 50  # the walk really saw the package
    assert cycles(graph) == []


def test_the_check_sees_lazy_imports() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert cycles(graph) == [["a", "b"]]
    assert "jobs.train.run" in import_graph()["jobs.launch.worker"]  # imported inside main() only


def _module_level_imports(path: Path) -> list[str]:
    """What a module imports when it is imported: its top-level statements (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            found += _imported(inner, "")
    return found


def _in_training_process(module: str) -> bool:
    return module == TRAINING_PROCESS or module.startswith(TRAINING_PROCESS + ".")


def test_no_module_outside_the_training_processes_imports_a_heavy_library_at_module_level() -> None:
    offenders = {}
    for path in sorted((ROOT / "jobs").rglob("*.py")):
        name = _module_name(path)
        if _in_training_process(name):
            continue
        heavy = [m for m in _module_level_imports(path) if m.split(".")[0] in HEAVY]
        if heavy:
            offenders[name] = heavy
    assert offenders == {}


def test_nothing_outside_the_training_processes_imports_their_code_at_module_level() -> None:
    """The parent reaches the training code only where it hands over: the launcher's in-process run and the
    worker under `accelerate launch`, both inside a function."""
    offenders = {}
    for path in sorted((ROOT / "jobs").rglob("*.py")):
        name = _module_name(path)
        if _in_training_process(name):
            continue
        inward = [m for m in _module_level_imports(path) if _in_training_process(m)]
        if inward:
            offenders[name] = inward
    assert offenders == {}


def test_bench_does_not_import_the_tests() -> None:
    for path in sorted((ROOT / "bench").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            assert not any(m.split(".")[0] == "tests" for m in _imported(node, "")), path


def test_prometheus_client_is_not_imported_before_the_exporter_sets_its_directory() -> None:
    """prometheus_client picks its value storage (the job's shared files, or memory) on its first import: an
    entrypoint that imported it before the exporter's directory was set would write metrics nobody serves."""
    probe = "import sys, entrypoint; print('prometheus_client' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == "False"


PROBE = """
import json, sys, entrypoint
try:
    code = entrypoint.main(sys.argv[1:])
except SystemExit as done:  # --help: argparse exits once it has printed
    code = done.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize(
    ("command", "settings"),
    [
        pytest.param("--help", {}, id="help"),
        pytest.param("validate", {"TRAIN_METHOD": "dpo", "TRAIN_DATA_PATH": "dev/demo_data/dpo_pairs.jsonl"},
                     id="validate"),
        pytest.param("estimate", {"TRAIN_METHOD": "dpo"}, id="estimate"),
    ],
)  # fmt: skip
def test_the_parents_commands_import_no_heavy_library(
    command: str, settings: dict[str, str], demo_model: str, tmp_path: Path
) -> None:
    if command == "estimate":
        settings = {**settings, "TRAIN_MODEL_NAME_OR_PATH": demo_model}
    env = clean_env(TRAIN_OUTPUT_DIR=str(tmp_path), **settings)
    done = subprocess.run([sys.executable, "-c", PROBE, command], cwd=ROOT, env=env, input=json.dumps(HEAVY),
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    if command == "--help":
        assert "TRAIN_METHOD" in done.stdout, done.stderr[-2000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome == {"code": 0, "heavy": []}, done.stderr[-2000:]
