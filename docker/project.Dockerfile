# The project on CUDA, for `docker compose --profile gpu run --rm train`: the same
# parent image, apt packages and pinned requirements as the images ZenML builds for
# the docker stacks (src/visionops/app/docker.py).
ARG PARENT_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${PARENT_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv
# An unprivileged user runs the project. /state is the compose volume's mount point:
# a new named volume takes the ownership of the folder it is mounted on.
RUN useradd --create-home --uid 10001 visionops \
    && mkdir -p /app /state && chown visionops:visionops /app /state
WORKDIR /app
# Dependencies first (pinned in pyproject.toml), so a code change reuses this layer.
COPY pyproject.toml ./
RUN uv pip install --system --no-cache -r pyproject.toml
COPY --chown=visionops:visionops . .
RUN uv pip install --system --no-cache --no-deps .
ENV VISIONOPS_ROOT=/app
USER visionops
CMD ["python", "run.py", "--help"]
