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
# Flask-WTF: the basic-auth app's dependency (MLflow's `auth` extra).
RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.43.117 \
        "sqlalchemy<2.1" "Flask-WTF<2"
# The basic-auth app's settings; its user database on the /mlflow-auth volume, which
# a new named volume creates owned as the folder here: the unprivileged user's.
COPY mlflow-auth.ini /etc/mlflow/basic_auth.ini
RUN useradd --create-home --uid 10001 mlflow \
    && mkdir -p /mlflow-auth && chown mlflow:mlflow /mlflow-auth
USER mlflow
ENV MLFLOW_DISABLE_TELEMETRY=true \
    MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini
EXPOSE 5000
# The backend store comes from MLFLOW_BACKEND_STORE_URI (the environment), so that
# its password is not on the command line, where `ps` shows it to every user.
CMD ["mlflow", "server", "--app-name", "basic-auth", "--host", "0.0.0.0", "--port", "5000"]
