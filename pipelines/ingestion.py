"""Ingestion pipeline: source -> validate -> anonymise -> split -> versioned dataset."""

from zenml import pipeline

from steps.ingestion import (
    anonymize_faces,
    load_source,
    merge_dataset,
    split_dataset,
    validate_items,
    version_dataset,
)
from visionops.config import IngestionParameters


@pipeline(name="ingestion")
def ingestion(params: IngestionParameters) -> None:
    """Turns a labelled export into a clean, anonymised, versioned dataset; with
    `merge_with`, the export's items are added to that version."""
    staged = load_source(params.source, params.task, params.archive)
    validated, report = validate_items(staged, params.validation, params.workers)
    anonymized, faces = anonymize_faces(validated, params.anonymize, params.workers)
    lineage, kept = None, None
    if params.merge_with:
        anonymized, lineage, kept = merge_dataset(
            anonymized, report, params.merge_with, params.split
        )
    plan = split_dataset(anonymized, params.split, kept)
    version_dataset(
        anonymized,
        validated,
        plan,
        report,
        faces,
        params.model_dump(mode="json"),
        lineage,
    )
