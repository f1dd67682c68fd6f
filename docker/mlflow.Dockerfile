# The MLflow tracking server of docker-compose.yml: the project's MLflow, plus the
# PostgreSQL driver (backend store) and boto3 (artifacts on MinIO).
# BASE_IMAGE and the PIP_* build arguments let a machine without a registry or PyPI
# build it from a local base image and wheelhouse (tests/pipelines/test_docker_compose.py);
# build arguments stay out of the image's environment.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX
ARG PIP_TRUSTED_HOST
# SQLAlchemy 2.1 maps postgresql:// to psycopg 3, not psycopg2: the server would not
# start on BACKEND_STORE_URI (measured); the project runs MLflow on SQLAlchemy 2.0.
RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.43.117 \
        "sqlalchemy<2.1"
ENV MLFLOW_DISABLE_TELEMETRY=true
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
