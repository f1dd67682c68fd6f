#!/bin/sh
# docker-compose.yml's one-shot MinIO set-up, the only user of the root account: the
# private buckets, and one user per service (MLflow's artifact proxy, ZenML's
# artifact store) allowed its own bucket only. Run again on every `up`: each step
# creates or updates in place.
set -eu
mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing local/mlflow local/zenml
mc anonymous set none local/mlflow
mc anonymous set none local/zenml

# bucket_user BUCKET USER PASSWORD: USER reads, writes and lists BUCKET, nothing else.
bucket_user() {
    policy="/tmp/$1-bucket.json"
    cat > "$policy" <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow",
   "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
   "Resource": ["arn:aws:s3:::$1"]},
  {"Effect": "Allow",
   "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
              "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
   "Resource": ["arn:aws:s3:::$1/*"]}]}
JSON
    mc admin policy create local "$1-bucket" "$policy"
    mc admin user add local "$2" "$3"
    # Attaching a policy the user already has is an error; that user is done.
    mc admin policy attach local "$1-bucket" --user "$2" 2>/dev/null \
        || mc admin user info local "$2" | grep -q "$1-bucket"
}
bucket_user mlflow "$MINIO_MLFLOW_USER" "$MINIO_MLFLOW_PASSWORD"
bucket_user zenml "$MINIO_ZENML_USER" "$MINIO_ZENML_PASSWORD"
