"""Artifact and model names shared by steps, pipelines, run.py and tests."""

STAGED_DATASET = "staged_dataset"
VALIDATED_DATASET = "validated_dataset"
VALIDATION_REPORT = "validation_report"
ANONYMIZED_DATASET = "anonymized_dataset"
FACE_REPORT = "face_report"
SPLIT_PLAN = "split_plan"
DATASET = "dataset"
