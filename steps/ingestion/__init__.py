"""Ingestion steps: load, validate, anonymise, split, version."""

from steps.ingestion.anonymize_faces import anonymize_faces
from steps.ingestion.load_source import load_source
from steps.ingestion.merge_dataset import merge_dataset
from steps.ingestion.split_dataset import split_dataset
from steps.ingestion.validate_items import validate_items
from steps.ingestion.version_dataset import version_dataset

__all__ = [
    "anonymize_faces",
    "load_source",
    "merge_dataset",
    "split_dataset",
    "validate_items",
    "version_dataset",
]
