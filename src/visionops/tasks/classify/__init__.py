"""Image classification: one label per image, top-1, per-class and two-class metrics."""

from visionops.tasks.classify.task import ClassifyTask

TASK = ClassifyTask()

__all__ = ["TASK", "ClassifyTask"]
