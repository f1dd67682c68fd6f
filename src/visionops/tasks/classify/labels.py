"""Classification labels: one image-level class per item, no label file."""

from __future__ import annotations

from visionops.data.manifest import Item
from visionops.data.validate import CheckedLabels, LabelCheck, Reject


def check_labels(item: Item, check: LabelCheck) -> CheckedLabels:
    """Checks the image-level class of a classification item.

    Raises:
        Reject: When the item has no class or one outside the class list.
    """
    if item.class_id is None:
        raise Reject("label_missing", "no class (or several) in the source")
    if not 0 <= item.class_id < check.num_classes:
        raise Reject(
            "unknown_class",
            f"class {item.class_id} not in 0..{check.num_classes - 1}",
        )
    return CheckedLabels(item)
