"""Batch inference: the champion over a folder or a dataset split, and its report."""

from visionops.batch.predict import PredictionSet, predict_folder

__all__ = ["PredictionSet", "predict_folder"]
