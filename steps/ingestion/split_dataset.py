"""Step: group-aware, class-stratified split."""

from typing import Annotated

from zenml import log_metadata, step

from visionops.config import SplitSettings
from visionops.core.names import SPLIT_PLAN
from visionops.data.split import SplitPlan, plan_split
from visionops.data.version import StagedDataset


@step
def split_dataset(
    dataset: StagedDataset,
    settings: SplitSettings,
    kept: dict[str, str] | None = None,
) -> Annotated[SplitPlan, SPLIT_PLAN]:
    """Assigns every item to train/val/test; copies of one photo stay together.

    `kept`: the split of items already placed (a merge's parent items), which
    stay; the others then go to train and val.
    """
    plan = plan_split(
        dataset.root,
        {"train": settings.train, "val": settings.val, "test": settings.test},
        settings.seed,
        group_by=settings.group_by,
        fixed=kept,
    )
    log_metadata(
        {
            "images": plan.images,
            "achieved": plan.achieved,
            "kept": plan.kept,
            "groups": plan.groups,
            "boxes_per_class": plan.boxes_per_class,
            "images_per_class": plan.images_per_class,
        }
    )
    return plan
