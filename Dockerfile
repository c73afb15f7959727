# The job's image: one entrypoint configured only by TRAIN_* variables (README, `entrypoint.py --help`).
#   make image            docker when a daemon answers, else buildah
#   make image-test       the same file from a local Debian base and wheelhouse, run offline (scripts/image-test.sh)
#   BASE_IMAGE            Python 3.11 on Debian bookworm. The pinned PyPI torch bundles its CUDA runtime, so a
#                         GPU node needs only the NVIDIA driver; CUDA or PyTorch base images bring another
#                         Python and torch than the pins. Any local base with python3.11 builds (make image-test).
#   BUILD_IMAGE           the build stage's base: BASE_IMAGE, or the same system with compilers already in it.
#   PIP_FIND_LINKS / PIP_NO_INDEX   install from a local wheelhouse, offline (make image-test).
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG BUILD_IMAGE=${BASE_IMAGE}

# ---- build: compilers and headers stay here ----
FROM ${BUILD_IMAGE} AS build
# Unset unless given: pip reads them from the environment of the install step.
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # DeepSpeed's CPU Adam (zero3_offload) and its CPU communication op, compiled here rather than
    # JIT-compiled at run time: the runtime stage has no compiler. DeepSpeed compiles them with
    # -march=native, so build on the CPU generation the GPU nodes have (or pass DS_BUILD_CPU_ADAM=0 and
    # add a compiler to the runtime to compile them there).
    DS_BUILD_OPS=0 \
    DS_BUILD_CPU_ADAM=1 \
    DS_BUILD_SHM_COMM=1
# Compilers from apt, unless the base already has them (an offline build has no apt repository).
# hadolint ignore=DL3008
RUN command -v g++ >/dev/null \
 || { apt-get update \
   && apt-get install -y --no-install-recommends build-essential \
   && rm -rf /var/lib/apt/lists/*; }
WORKDIR /build
COPY requirements.txt ./
COPY scripts/install.sh scripts/install.sh
# The same pins and the same script as `make`.
RUN python3 -m venv /opt/venv && scripts/install.sh /opt/venv/bin/python requirements.txt

# ---- runtime: the venv, the code, a non-root user ----
FROM ${BASE_IMAGE} AS runtime
ARG GIT_REVISION=unknown
LABEL org.opencontainers.image.title="trainjob" \
      org.opencontainers.image.description="SFT, DPO and KTO fine-tuning as a batch job (TRL, Accelerate, DeepSpeed)" \
      org.opencontainers.image.source="https://example.invalid/trainjob" \
      org.opencontainers.image.revision="${GIT_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# tini as PID 1: it forwards SIGTERM to the job (which saves a checkpoint and exits 143) and reaps zombies.
# hadolint ignore=DL3008
RUN { command -v tini >/dev/null \
   || { apt-get update \
     && apt-get install -y --no-install-recommends tini \
     && rm -rf /var/lib/apt/lists/*; }; } \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /cache --shell /usr/sbin/nologin trainjob
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY entrypoint.py ./
COPY jobs jobs
COPY schemas schemas
COPY accelerate_configs accelerate_configs
# Writable paths are volumes (/output, /cache, /tmp), so the root filesystem can be read-only. Nothing is
# downloaded at run time; no secret is baked in (HF_TOKEN comes from a Secret).
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HOME=/cache/huggingface \
    TORCH_EXTENSIONS_DIR=/cache/torch_extensions \
    TRITON_CACHE_DIR=/cache/triton \
    MPLCONFIGDIR=/cache/matplotlib \
    TMPDIR=/tmp \
    TOKENIZERS_PARALLELISM=false \
    GIT_REVISION=${GIT_REVISION}
USER 1000:1000
EXPOSE 9464
ENTRYPOINT ["tini", "--", "python", "entrypoint.py"]
