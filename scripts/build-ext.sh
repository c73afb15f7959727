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
# xxhash.h: pyarrow's copy (a pinned requirement), the same xxh3 as the Python xxhash package.
xxhash=$("$py" -c 'import pyarrow; print(pyarrow.get_include() + "/arrow/vendored/xxhash")')
target="$root/jobs/data/_scan$suffix"
cc=${CC:-cc}
if ! command -v "$cc" >/dev/null || [ ! -f "$include/Python.h" ] || [ ! -f "$xxhash/xxhash.h" ]; then
    echo "build-ext: no C compiler ($cc), Python.h in $include or xxhash.h in $xxhash:" \
        "validation runs on its slower Python scans" >&2
    [ "$require" != --require ] || exit 1
    exit 0
fi
"$cc" -O2 -Wall -Wextra -Werror -shared -fPIC -I"$include" -I"$xxhash" "$root/jobs/data/_scan.c" -o "$target.tmp"
mv "$target.tmp" "$target"
