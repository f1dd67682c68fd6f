"""Step: validate every item; quarantine the bad ones, fix the fixable ones."""

from typing import Annotated

from zenml import log_metadata, step

from visionops.app.materializers import work_dir
from visionops.core.names import VALIDATED_DATASET, VALIDATION_REPORT
from visionops.core.parallel import resolve_workers
from visionops.data.manifest import Manifest
from visionops.data.validate import (
    ValidationReport,
    ValidationSettings,
    validate_dataset,
)
from visionops.data.version import StagedDataset
from visionops.tasks import get_task


@step
def validate_items(
    staged: StagedDataset, settings: ValidationSettings, workers: int | str = "auto"
) -> tuple[
    Annotated[StagedDataset, VALIDATED_DATASET],
    Annotated[ValidationReport, VALIDATION_REPORT],
]:
    """Checks images and labels; items in = accepted + quarantined."""
    dest = work_dir("validated")
    report = validate_dataset(
        staged.root,
        dest,
        settings,
        workers=resolve_workers(workers),
        task=get_task(Manifest.read(staged.root).task),
    )
    log_metadata(
        {
            "items_in": report.items_in,
            "accepted": report.accepted,
            "quarantined": report.counts_by_reason(),
            "fixes": report.counts_by_fix(),
        },
    )
    return StagedDataset(dest), report
