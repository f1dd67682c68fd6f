"""Batch inference steps: resolve the champion, predict a folder."""

from steps.batch.load_champion import load_champion
from steps.batch.predict_folder import predict_folder

__all__ = ["load_champion", "predict_folder"]
