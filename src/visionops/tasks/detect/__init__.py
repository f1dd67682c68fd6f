"""Object detection: boxes, mAP, the ONNX detector with NMS."""

from visionops.tasks.detect.task import DetectTask

TASK = DetectTask()

__all__ = ["TASK", "DetectTask"]
