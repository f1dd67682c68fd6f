# A CPU parent image for the Docker stack's step images (src/visionops/app/docker.py,
# VISIONOPS_PARENT_IMAGE) where no image registry is reachable: a Debian bookworm
# base built locally (tests/docker_env.py) with the project's pinned requirements
# preinstalled from a wheelhouse served over HTTP on the host's loopback during the
# build (`docker build --network host`), so the build
# needs neither a package index nor the host's CA bundle, and ZenML's own install
# step finds everything satisfied. uv installs the 3.4 GB of wheels in parallel.
ARG BASE_IMAGE=visionops-base:bookworm
FROM ${BASE_IMAGE}
ARG WHEELHOUSE_URL
ARG WHEELHOUSE_HOST=127.0.0.1
COPY requirements.txt /tmp/visionops-requirements.txt
RUN pip install --no-cache-dir --no-index --find-links "${WHEELHOUSE_URL}" \
        --trusted-host "${WHEELHOUSE_HOST}" uv \
    && uv pip install --system --no-cache --no-index --find-links "${WHEELHOUSE_URL}" \
        -r /tmp/visionops-requirements.txt \
    && rm /tmp/visionops-requirements.txt
