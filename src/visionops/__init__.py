"""VisionOps: ZenML pipelines for YOLO object detection."""

from visionops.core import env as _env
from visionops.core import import_name as _import_name

_env.configure()
_import_name.install()

__version__ = "0.1.0"
