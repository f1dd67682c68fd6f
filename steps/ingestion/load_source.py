"""Step: stage any supported labelled export as a dataset directory."""

from typing import Annotated

from zenml import log_metadata, step

from visionops.app.materializers import work_dir
from visionops.core.env import project_path
from visionops.core.names import STAGED_DATASET
from visionops.data.sources import ArchiveLimits, stage_source
from visionops.data.version import StagedDataset
from visionops.tasks import ingestion_tasks


# Not cached: the source folder or platform can change behind the same string.
@step(enable_cache=False)
def load_source(
    source: str,
    task: str | None = None,
    archive: ArchiveLimits | None = None,
) -> Annotated[StagedDataset, STAGED_DATASET]:
    """Stages a YOLO/Roboflow/COCO/class-folder export or zip, or a Picsellia version.

    Args:
        source: A path (relative paths are resolved from the project root) or
            `picsellia://<dataset version id>`.
        task: detect, classify or segment; None infers it from the labels.
        archive: Caps on what a zipped source may expand to.

    Returns:
        The staged dataset: images, labels and manifest, untouched.
    """
    if "://" not in source:
        source = str(project_path(source))
    dest = work_dir("staged")
    manifest = stage_source(
        source,
        dest,
        tasks=ingestion_tasks(task),
        archive_limits=archive,
    )
    log_metadata(
        {
            "source": source,
            "task": manifest.task,
            "format": manifest.source_format,
            "items": len(manifest.items),
            "classes": manifest.class_names,
        },
        infer_artifact=True,
    )
    return StagedDataset(dest)
