#!/usr/bin/env bash
# Build the job's image (Dockerfile): with docker when a daemon answers, otherwise with buildah.
#   scripts/image.sh [build args ...]        IMAGE=trainjob:latest by default
#   e.g. scripts/image.sh --build-arg BASE_IMAGE=registry.example/python:3.11-slim-bookworm
# Also sourced by scripts/image-test.sh for the buildah/podman settings below.
#
# buildah and podman run daemonless and need no privileges beyond a user namespace. The settings are
# those that work inside unprivileged containers and CI machines (no overlay mounts, no systemd, no
# nested cgroups): vfs storage, chroot isolation, runc with cgroupfs, a file for the event log.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${IMAGE:-trainjob:latest}
STORAGE=(--storage-driver "${STORAGE_DRIVER:-vfs}")
# shellcheck disable=SC2034  # used by scripts/image-test.sh
PODMAN=(podman "${STORAGE[@]}" --runtime runc --cgroup-manager cgroupfs --events-backend file)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

revision() {
  git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown
}

build_image() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "image: docker build -t $image" >&2
    docker build --build-arg GIT_REVISION="$(revision)" -t "$image" "$@" "$root"
    return
  fi
  "$root/scripts/test-tools.sh" image
  echo "image: no docker daemon; buildah bud -t $image" >&2
  buildah "${STORAGE[@]}" bud --isolation chroot --layers "${ULIMITS[@]}" \
    --build-arg GIT_REVISION="$(revision)" -t "$image" "$@" "$root"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  build_image "$@"
fi
