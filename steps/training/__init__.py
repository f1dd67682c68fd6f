"""Training steps: train, select, evaluate, compare with the champion, promote."""

from steps.training.capture_reference import capture_drift_reference
from steps.training.evaluate_champion import evaluate_champion
from steps.training.evaluate_model import evaluate_model
from steps.training.promote_model import promote_model
from steps.training.select_candidate import select_candidate
from steps.training.train_candidate import train_candidate

__all__ = [
    "capture_drift_reference",
    "evaluate_champion",
    "evaluate_model",
    "promote_model",
    "select_candidate",
    "train_candidate",
]
