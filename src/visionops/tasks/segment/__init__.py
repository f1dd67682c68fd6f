"""Instance segmentation: masks and outlines, mask mAP and per-class IoU."""

from visionops.tasks.segment.task import SegmentTask

TASK = SegmentTask()

__all__ = ["TASK", "SegmentTask"]
