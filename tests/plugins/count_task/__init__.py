"""Counting, a toy fourth task: how many objects the detector finds in an image."""

from count_task.task import CountTask

TASK = CountTask()

__all__ = ["TASK", "CountTask"]
