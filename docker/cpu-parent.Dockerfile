# A CPU parent image for the Docker stack's step images (src/visionops/app/docker.py,
# VISIONOPS_PARENT_IMAGE) where no image registry is reachable: a Debian bookworm
# base built locally (tests/docker_env.py) with the project's pinned requirements
# preinstalled from a wheelhouse served over HTTP on the host's loopback during the
# build (`docker build --network host`), so the build
# needs neither a package index nor the host's CA bundle, and ZenML's own install
# step finds everything satisfied. uv installs the 3.4 GB of wheels in parallel.
#
# Why 7.5 GB: on Linux x86_64 PyPI's torch is the CUDA build, and torch, triton and
# the nvidia-* libraries it pulls are 5.1 GB of the image (docs/stacks.md). Where
# PyTorch's CPU wheel index is reachable, TORCH_INDEX_URL installs the CPU builds of
# the pinned torch and torchvision from it first (`2.14.1+cpu` satisfies `==2.14.1`),
# so none of the CUDA libraries is installed:
#   docker build --network host --build-arg WHEELHOUSE_URL=... \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu ...
# (or VISIONOPS_TORCH_INDEX_URL=... python -m tests.docker_env images).
ARG BASE_IMAGE=visionops-base:bookworm
FROM ${BASE_IMAGE}
ARG WHEELHOUSE_URL
ARG WHEELHOUSE_HOST=127.0.0.1
ARG TORCH_INDEX_URL=
COPY requirements.txt /tmp/visionops-requirements.txt
RUN pip install --no-cache-dir --no-index --find-links "${WHEELHOUSE_URL}" \
        --trusted-host "${WHEELHOUSE_HOST}" uv \
    && if [ -n "${TORCH_INDEX_URL}" ]; then \
        uv pip install --system --no-cache --index-url "${TORCH_INDEX_URL}" \
            $(grep -E '^torch(vision)?==' /tmp/visionops-requirements.txt); \
    fi \
    && uv pip install --system --no-cache --no-index --find-links "${WHEELHOUSE_URL}" \
        -r /tmp/visionops-requirements.txt \
    && rm /tmp/visionops-requirements.txt
