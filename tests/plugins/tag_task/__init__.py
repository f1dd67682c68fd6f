"""Image tagging, a toy task (`tests/data/test_fourth_task.py`)."""

from tag_task.task import TagTask

TASK = TagTask()

__all__ = ["TASK", "TagTask"]
