"""Step: blur faces in every accepted image with deface."""

from typing import Annotated

from zenml import log_metadata, step

from visionops.app.materializers import work_dir
from visionops.core.names import ANONYMIZED_DATASET, FACE_REPORT
from visionops.core.parallel import resolve_workers
from visionops.data.anonymize import AnonymizeSettings, FaceReport, anonymize_dataset
from visionops.data.version import StagedDataset


@step
def anonymize_faces(
    validated: StagedDataset, settings: AnonymizeSettings, workers: int | str = "auto"
) -> tuple[
    Annotated[StagedDataset, ANONYMIZED_DATASET],
    Annotated[FaceReport, FACE_REPORT],
]:
    """Detects faces (downscaled) and blurs them at full resolution."""
    dest = work_dir("anonymized")
    report = anonymize_dataset(
        validated.root, dest, settings, workers=resolve_workers(workers)
    )
    log_metadata(
        {
            "enabled": settings.enabled,
            "images": report.images,
            "images_with_faces": report.images_with_faces,
            "faces": report.faces,
        },
    )
    return StagedDataset(dest), report
