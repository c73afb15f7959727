#!/usr/bin/env bash
# Install the pinned dependencies into the interpreter given as $1 (a venv's python).
# Used identically by the Makefile, the Dockerfile and CI.
#   scripts/install.sh PYTHON [requirements files...]
set -euo pipefail
python=$1; shift
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(requirements.txt)
here=$(cd "$(dirname "$0")/.." && pwd)
torch_pin=$(grep -E '^torch==' "$here/requirements.txt")
# torch first and pinned: an unpinned resolve can pull a multi-GB CUDA build instead of the local CPU wheel.
"$python" -m pip install --quiet --upgrade pip setuptools wheel
"$python" -m pip install --quiet "$torch_pin"
args=()
for f in "${files[@]}"; do args+=(-r "$f"); done
# --no-build-isolation: DeepSpeed's sdist must build against the torch installed above.
"$python" -m pip install --quiet --no-build-isolation "${args[@]}"
