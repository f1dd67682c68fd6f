"""Drift pipeline: the deployed champion's prediction records against its reference."""

from zenml import pipeline

from steps.drift import report_drift
from visionops.config import DriftParameters


@pipeline(name="drift")
def drift(params: DriftParameters) -> None:
    """One drift report over the records of the last days (or requests)."""
    report_drift(
        params.model.name, params.drift, params.days, params.last, params.store
    )
