"""Ingestion pipeline: source -> validate -> anonymise -> split -> versioned dataset."""

from zenml import pipeline

from steps.ingestion import (
    anonymize_faces,
    load_source,
    split_dataset,
    validate_items,
    version_dataset,
)
from visionops.config import IngestionParameters


@pipeline(name="ingestion")
def ingestion(params: IngestionParameters) -> None:
    """Turns a labelled export into a clean, anonymised, versioned dataset."""
    staged = load_source(params.source, params.task, params.archive)
    validated, report = validate_items(staged, params.validation, params.workers)
    anonymized, faces = anonymize_faces(validated, params.anonymize, params.workers)
    plan = split_dataset(anonymized, params.split)
    version_dataset(
        anonymized, validated, plan, report, faces, params.model_dump(mode="json")
    )
