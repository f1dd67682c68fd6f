# A base for `bentoml containerize` where neither a registry nor PyPI can be reached
# (VISIONOPS_BENTO_BASE_IMAGE when the Bento is built): the local Debian base with
# what BentoML's Dockerfile installs first (build tools, git, OpenCV's libraries,
# uv), and uv configured to install only from the wheelhouse at WHEELHOUSE_URL, so
# the build needs no CA bundle. For tests: the uv configuration stays in the image.
ARG BASE_IMAGE=visionops-base:bookworm
FROM ${BASE_IMAGE}
ARG WHEELHOUSE_URL
ARG WHEELHOUSE_HOST=127.0.0.1
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gnupg2 bash \
        build-essential git libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir --no-index --find-links "${WHEELHOUSE_URL}" \
        --trusted-host "${WHEELHOUSE_HOST}" uv \
    && mkdir -p /etc/uv \
    && printf 'no-index = true\nfind-links = ["%s"]\npython-downloads = "never"\n' \
        "${WHEELHOUSE_URL}" > /etc/uv/uv.toml
