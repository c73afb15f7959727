#!/usr/bin/env bash
# Build the image offline and run it the way a cluster would (make image-test):
#   1. a Debian bookworm base made locally with debootstrap (no registry is reachable), one with compilers
#      for the build stage and one without for the runtime stage;
#   2. a wheelhouse from the same pins (pip download), installed from with no index and no network;
#   3. the SFT demo in the image: no network, uid 1000, read-only root filesystem, writable volumes for the
#      output and caches; checks the exit code, final/, the user, the read-only root and a /metrics answer;
#   4. a second run stopped with SIGTERM mid-training: exit 143 and a complete checkpoint.
# Results: output/image-test/result.json (and the runs' logs beside it). Needs root (debootstrap) and the
# Makefile's .venv (pip download, the demo model). Not part of `make test`: it takes ~10-20 minutes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=image.sh source-path=SCRIPTDIR
source "$root/scripts/image.sh"
python=${PYTHON:-$root/.venv/bin/python}
cache=$root/.cache/image
results=$root/output/image-test
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
image=${IMAGE:-localhost/trainjob:image-test}
names=()

log() { echo "image-test: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
cleanup() {
  for name in "${names[@]}"; do "${PODMAN[@]}" rm -f "$name" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || fail "debootstrap needs root; run as root (or build with scripts/image.sh and a registry base)"
"$root/scripts/test-tools.sh" image
cd "$root"
mkdir -p "$cache/debs" "$results"

# 1. Local bases: the same Debian release and Python as the default base (python:3.11-slim-bookworm).
base_image() {  # kind, debootstrap --include list
  local tag=localhost/trainjob-base:$1 rootfs
  if "${PODMAN[@]}" image exists "$tag"; then return; fi
  rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
  log "debootstrap bookworm ($1: $2)"
  PATH=$PATH:/usr/sbin debootstrap --variant=minbase --include="$2" --cache-dir="$cache/debs" \
    bookworm "$rootfs" "$mirror" >"$results/debootstrap-$1.log" 2>&1 || fail "debootstrap: see $results/debootstrap-$1.log"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  chmod 755 "$rootfs"  # mktemp made it 0700, and it becomes the image's /
  tar -C "$rootfs" -c . | "${PODMAN[@]}" import --quiet --change 'CMD ["/bin/bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$tag" >/dev/null
  rm -rf "$rootfs"
}
runtime_packages=python3,python3-venv,tini,ca-certificates
base_image runtime "$runtime_packages"
base_image build "$runtime_packages,build-essential,python3-dev"

# 2. The wheelhouse: every pin of requirements.txt and what it needs, for this Python and platform.
log "wheelhouse (pip download of requirements.txt)"
"$python" -m pip download --quiet --no-build-isolation -d "$cache/wheelhouse" -r "$root/requirements.txt" \
  pip setuptools wheel >"$results/wheelhouse.log" 2>&1 || fail "pip download: see $results/wheelhouse.log"

started=$(date +%s)
# chroot isolation shares the host's network, but nothing reaches it: no apt repository is configured in
# the bases and pip has no index (PIP_NO_INDEX).
build_image -v "$cache/wheelhouse:/wheelhouse:ro" \
  --build-arg BASE_IMAGE=localhost/trainjob-base:runtime --build-arg BUILD_IMAGE=localhost/trainjob-base:build \
  --build-arg PIP_FIND_LINKS=/wheelhouse --build-arg PIP_NO_INDEX=1 >"$results/build.log" 2>&1 ||
  fail "build: see $results/build.log"
build_seconds=$(($(date +%s) - started))
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$image")
log "built $image in ${build_seconds}s: $((size / 1000000)) MB"

# 3. The demo, as the cluster runs it. The demo's own variables, with the model and the data (dev/, which the
# image does not hold) mounted read-only.
"$python" -m dev.demo model "$cache/demo-model" >/dev/null
mapfile -t demo_env < <("$python" -c 'import sys
from dev.demo import demo_environment
for name, value in demo_environment(sys.argv[1], {}).items():
    print(f"{name}={value}")' sft)
run_job() {  # name, extra -e arguments
  local name=$1 output=$cache/runs/$1 env=()
  shift
  rm -rf "$output" && mkdir -p "$output/out" "$output/cache" && chown -R 1000:1000 "$output"
  for pair in "${demo_env[@]}" "$@"; do env+=(-e "$pair"); done
  "${PODMAN[@]}" rm -f "$name" >/dev/null 2>&1 || true
  names+=("$name")
  "${PODMAN[@]}" run -d --name "$name" --network none "${ULIMITS[@]}" --read-only --user 1000:1000 \
    --tmpfs /tmp:rw,mode=1777 -v "$output/out:/output" -v "$output/cache:/cache" \
    -v "$cache/demo-model:/models/demo:ro" -v "$root/dev/demo_data:/data:ro" "${env[@]}" \
    -e TRAIN_MODEL_NAME_OR_PATH=/models/demo -e TRAIN_DATA_PATH=/data/sft_messages.jsonl \
    -e TRAIN_OUTPUT_DIR=/output "$image" >/dev/null
}
running() { [ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
# The exporter answers on the pod's network; with --network none, only from inside the container.
scrape() {
  "${PODMAN[@]}" exec "$1" python -c 'import urllib.request
print(urllib.request.urlopen("http://127.0.0.1:9464/metrics", timeout=2).read().decode())' 2>/dev/null
}
global_step() {
  scrape "$1" | awk '$1 == "trainjob_global_step" { print int($2) }'
}
inside() { "${PODMAN[@]}" exec "$1" sh -c "$2" 2>&1; }

log "run 1: the SFT demo (no network, uid 1000, read-only root)"
run_job sft
step_seen="" users="" root_write="" metrics_line=""
while running sft; do
  if [ -z "$step_seen" ] && step=$(global_step sft) && [ -n "$step" ] && [ "$step" -gt 0 ]; then
    step_seen=$step
    metrics_line=$(scrape sft | grep -m1 '^trainjob_global_step') || true
    # shellcheck disable=SC2016  # expanded inside the container
    users=$(inside sft 'for f in /proc/[0-9]*/status; do awk "/^Uid:/ { print \$2 }" "$f"; done | sort -u | tr "\n" " "')
    root_write=$(inside sft 'touch /app/probe && echo writable || true')
  fi
  sleep 1
done
code=$("${PODMAN[@]}" wait sft)
"${PODMAN[@]}" logs sft >"$results/sft.log" 2>&1
out=$cache/runs/sft/out
[ "$code" -eq 0 ] || fail "run 1 exited $code: see $results/sft.log"
if ! [ -f "$out/final/config.json" ] || ! [ -f "$out/final/model.safetensors" ]; then
  fail "run 1 wrote no final/ model"
fi
[ -n "$step_seen" ] || fail "run 1: /metrics never answered with a step during the run"
[ "${users% }" = 1000 ] || fail "run 1: processes ran as uid(s) '$users', not only 1000"
case $root_write in *"Read-only file system"*) ;; *) fail "run 1: the root filesystem was writable: $root_write" ;; esac
log "run 1: exit 0, final/ written, uid ${users% }, root read-only, /metrics: $metrics_line"

# 4. SIGTERM mid-training, as the kubelet sends it: tini (PID 1) forwards it to the job.
log "run 2: SIGTERM mid-training"
run_job sigterm TRAIN_MAX_STEPS=100000 TRAIN_SAVE_STEPS=100000 TRAIN_LOGGING_STEPS=1
stopped_at=""
while running sigterm; do
  step=$(global_step sigterm) || step=""
  if [ -n "$step" ] && [ "$step" -ge 5 ]; then
    stopped_at=$step
    "${PODMAN[@]}" kill --signal TERM sigterm >/dev/null
    break
  fi
  sleep 1
done
code=$("${PODMAN[@]}" wait sigterm)
"${PODMAN[@]}" logs sigterm >"$results/sigterm.log" 2>&1
out=$cache/runs/sigterm/out
[ -n "$stopped_at" ] || fail "run 2 ended (exit $code) before step 5: see $results/sigterm.log"
[ "$code" -eq 143 ] || fail "run 2 exited $code after SIGTERM, not 143: see $results/sigterm.log"
checkpoint=$("$python" -c 'import sys
from pathlib import Path
from jobs.train.guards.checkpoints import latest_complete_checkpoint
from jobs.layout import OutputLayout
print(latest_complete_checkpoint(OutputLayout(Path(sys.argv[1]))) or "")' "$out")
[ -n "$checkpoint" ] || fail "run 2: no complete checkpoint after SIGTERM"
log "run 2: SIGTERM at step $stopped_at -> exit 143, complete checkpoint $(basename "$checkpoint")"

cat >"$results/result.json" <<EOF
{"image": "$image", "revision": "$(revision)", "size_bytes": $size, "build_seconds": $build_seconds,
 "run": {"exit_code": 0, "uids": "${users% }", "root_filesystem": "read-only", "network": "none",
         "metrics": "$metrics_line", "final": "final/"},
 "sigterm": {"at_step": $stopped_at, "exit_code": 143, "checkpoint": "$(basename "$checkpoint")"}}
EOF
log "passed: $results/result.json"
