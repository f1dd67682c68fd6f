# The MLflow tracking server of docker-compose.yml: the project's MLflow, plus the
# PostgreSQL driver (backend store) and boto3 (artifacts on MinIO).
FROM python:3.11-slim
RUN pip install --no-cache-dir mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.43.117
ENV MLFLOW_DISABLE_TELEMETRY=true
EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
