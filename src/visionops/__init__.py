"""VisionOps: ZenML pipelines for YOLO object detection."""

from visionops import env as _env

_env.configure()

__version__ = "0.1.0"
