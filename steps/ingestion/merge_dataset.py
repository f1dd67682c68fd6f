"""Step: add a reviewed batch to a dataset version, keeping its splits."""

from typing import Annotated

from zenml import log_metadata, step

from visionops.app.lookup import resolve_dataset
from visionops.app.materializers import work_dir
from visionops.config import SplitSettings
from visionops.core.names import KEPT_SPLITS, LINEAGE, MERGED_DATASET
from visionops.data.merge import Lineage, MergeError, merge_batch
from visionops.data.validate import ValidationReport
from visionops.data.version import StagedDataset


# Not cached: `latest` names another version once an ingestion has run.
@step(enable_cache=False)
def merge_dataset(
    batch: StagedDataset,
    validation: ValidationReport,
    merge_with: str,
    split: SplitSettings,
) -> tuple[
    Annotated[StagedDataset, MERGED_DATASET],
    Annotated[Lineage, LINEAGE],
    Annotated[dict[str, str], KEPT_SPLITS],
]:
    """The parent version's items (in their splits) plus the batch's new ones.

    A batch `run.py` could not check first (`picsellia://`) stops here on the
    first item validation quarantined.
    """
    for bad in validation.quarantined:
        raise MergeError(f"nothing merged: {bad.source}: {bad.reason} ({bad.detail})")
    choice = resolve_dataset(merge_with)
    dest = work_dir("merged")
    kept, lineage = merge_batch(
        choice.artifact.load(),
        str(choice.artifact.version),
        batch.root,
        dest,
        task=choice.facts.task,
        group_by=split.group_by,
        refresh_test=split.refresh_test,
    )
    log_metadata(
        {
            "parent_version": lineage.parent_version,
            "parent_hash": lineage.parent_hash,
            "reviewed": lineage.reviewed,
            "added": lineage.added,
            "relabelled": len(lineage.relabelled),
            "held_out": len(lineage.held_out),
            "refresh_test": lineage.refresh_test,
        }
    )
    return StagedDataset(dest), lineage, kept
