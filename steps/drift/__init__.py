"""Drift steps: the deployed champion's prediction records against its reference."""

from steps.drift.report_drift import report_drift

__all__ = ["report_drift"]
