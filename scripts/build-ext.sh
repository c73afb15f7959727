#!/usr/bin/env bash
# Compiles jobs/data/_scan.c (validation's per-record byte scans) in place for the given interpreter.
#   scripts/build-ext.sh PYTHON [--require]
# Without a C compiler or Python's headers validation still runs, slower, on its Python scans; --require
# (the image build) makes that an error instead.
set -euo pipefail
py=${1:-python3}
require=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
read -r include suffix < <("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX"))')
target="$root/jobs/data/_scan$suffix"
cc=${CC:-cc}
if ! command -v "$cc" >/dev/null || [ ! -f "$include/Python.h" ]; then
    echo "build-ext: no C compiler ($cc) or no Python.h in $include: validation runs on its slower Python scans" >&2
    [ "$require" != --require ] || exit 1
    exit 0
fi
"$cc" -O2 -Wall -Wextra -Werror -shared -fPIC -I"$include" "$root/jobs/data/_scan.c" -o "$target.tmp"
mv "$target.tmp" "$target"
