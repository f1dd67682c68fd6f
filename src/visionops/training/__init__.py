"""Training: candidates, Ultralytics runs, MLflow tracking, evaluation and promotion."""
