#!/usr/bin/env bash
# The GPU figures (bench/gpu.py): the job against the plainest TRL script, SFT and DPO+LoRA in bf16 on a
# ~0.5B model: tokens/s, MFU, peak memory against the job's estimate, NVML metrics served.
#
#   bench/gpu.sh --fetch      here, with the package registry: cp312 wheels of what the device machine lacks,
#                             into .cache/gpu-wheels (under the device tool's 64 MiB carry limit)
#   bench/gpu.sh              on the device machine (device tool: carry .cache/gpu-wheels): installs those
#                             wheels into .cache/gpu-site, checks they import beside its torch and
#                             transformers, then runs bench/gpu.py (about 4 minutes); results in $OUT
#   bench/gpu.sh --dry-run    here, on CPU: the same path end to end on the tiny demo model
set -euo pipefail
cd "$(dirname "$0")/.."
wheels=.cache/gpu-wheels
site=.cache/gpu-site
# What the device machine lacks (its Python 3.12 has torch 2.11, transformers 5.17, accelerate, peft, pyarrow,
# prometheus-client, nvidia-ml-py, tensorboard), at the pins of requirements.txt where pinned. Its
# transformers is carried too: TRL 1.16 imports with 5.17, but the job's settings use fields that 5.17 lacks
# (activation_checkpointing: "SFTConfig got an unexpected keyword argument"), checked here with 5.17 installed.
# transformers 5.24 needs huggingface-hub >= 1.31 (5.17's is below 2), hence a 1.x hub.
pin() { sed -n "s/^$1==//p" requirements.txt; }
lacking=(
  "transformers==$(pin transformers)" "tokenizers==$(pin tokenizers)" safetensors regex "huggingface-hub>=1.31,<2"
  hf-xet "trl==$(pin trl)" "datasets==$(pin datasets)" "orjson==$(pin orjson)"
  "jsonschema-rs==$(pin jsonschema-rs)" "psutil==$(pin psutil)" "pyyaml==$(pin pyyaml)" "dill<0.4.2" "multiprocess<0.70.20"
  "fsspec<=2026.9.0" pandas python-dateutil pytz tzdata six
)

case "${1:-}" in
  --fetch)
    rm -rf "$wheels" && mkdir -p "$wheels"
    python3 -m pip download --quiet --dest "$wheels" --python-version 3.12 --only-binary=:all: --no-deps \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      "${lacking[@]}"
    du -sh "$wheels"
    ;;
  --dry-run)
    exec .venv/bin/python bench/gpu.py --dry-run
    ;;
  "")
    python3 -m pip install --quiet --no-index --find-links "$wheels" --target "$site" --no-deps "$wheels"/*.whl
    export PYTHONPATH="$PWD/$site${PYTHONPATH:+:$PYTHONPATH}"
    python3 -c 'import torch, transformers, trl, datasets; print("torch", torch.__version__, "transformers",
      transformers.__version__, "trl", trl.__version__, "datasets", datasets.__version__, "cuda", torch.cuda.is_available())'
    exec python3 bench/gpu.py
    ;;
  *)
    sed -n '2,12p' "$0"; exit 2
    ;;
esac
