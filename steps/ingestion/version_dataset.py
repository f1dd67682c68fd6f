"""Step: write the versioned dataset in its task's layout, with its hash and card."""

from typing import Annotated, Any

from zenml import log_metadata, step

from visionops.app.materializers import work_dir
from visionops.core.names import DATASET
from visionops.data.anonymize import FaceReport
from visionops.data.manifest import Manifest
from visionops.data.merge import Lineage
from visionops.data.split import SplitPlan
from visionops.data.validate import ValidationReport
from visionops.data.version import DatasetVersion, StagedDataset, build_dataset_version
from visionops.tasks import get_task


@step
def version_dataset(
    anonymized: StagedDataset,
    validated: StagedDataset,
    plan: SplitPlan,
    validation: ValidationReport,
    faces: FaceReport,
    settings: dict[str, Any],
    lineage: Lineage | None = None,
) -> Annotated[DatasetVersion, DATASET]:
    """Builds the dataset version; the quarantined files travel with it, and a
    merge's lineage goes on its card."""
    version = build_dataset_version(
        anonymized.root,
        plan,
        work_dir("dataset"),
        validation=validation,
        faces=faces,
        quarantine=validated.root / "quarantine",
        settings=settings,
        task=get_task(Manifest.read(anonymized.root).task),
        lineage=None if lineage is None else lineage.model_dump(),
    )
    log_metadata({"dataset_hash": version.hash}, infer_artifact=True)
    return version
