# The project on CUDA, for `docker compose --profile gpu run --rm train`: the same
# parent image, apt packages and pinned requirements as the images ZenML builds for
# the docker stacks (src/visionops/app/docker.py).
ARG PARENT_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime
FROM ${PARENT_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir uv
WORKDIR /app
# Dependencies first (pinned in pyproject.toml), so a code change reuses this layer.
COPY pyproject.toml ./
RUN uv pip install --system --no-cache -r pyproject.toml
COPY . .
RUN uv pip install --system --no-cache --no-deps .
ENV VISIONOPS_ROOT=/app
CMD ["python", "run.py", "--help"]
