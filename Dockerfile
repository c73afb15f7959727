# The one GPU image: configured only by TRAIN_* environment variables (see README / --help).
# torch from PyPI for linux/x86_64 ships its CUDA runtime; the node needs only the NVIDIA driver.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    PATH=/opt/venv/bin:$PATH

# A compiler for DeepSpeed's sdist build and its JIT ops; git for the run manifest's revision.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
COPY scripts/install.sh scripts/install.sh
RUN python -m venv /opt/venv && scripts/install.sh /opt/venv/bin/python requirements.txt

COPY entrypoint.py ./
COPY jobs jobs
COPY schemas schemas
COPY accelerate_configs accelerate_configs
ARG GIT_REVISION=unknown
ENV GIT_REVISION=$GIT_REVISION

USER 1000:1000
ENTRYPOINT ["python", "entrypoint.py"]
