"""A review batch on Picsellia (SDK 6.37): data tagged with the reasons, assets in
a dataset version, the predictions as pre-annotations."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import TYPE_CHECKING, Any

from visionops.data.sources.picsellia import connect, find_version, resolve_token

if TYPE_CHECKING:
    from visionops.feedback.review import BatchItem

REVIEW_TAG = "visionops-review"  # every uploaded image carries it beside its reasons


class UploadError(RuntimeError):
    """Picsellia did not take every image of a batch."""


def upload_batch(
    items: Sequence[BatchItem],
    uri: str,
    class_names: Sequence[str],
    *,
    client: Any = None,
) -> list[BatchItem]:
    """Puts a batch into the dataset version `uri` names.

    For each set of reasons: `Datalake.upload_data` of its images, tagged with
    the reasons, then `DatasetVersion.add_data` (the assets tagged alike); then
    per asset one annotation holding the pre-labels: rectangles (`x, y, w, h`
    in whole pixels), polygons (`[[x, y], ...]`) or classifications, each with
    the version's label of its class (created when missing).

    Args:
        items: The batch.
        uri: `picsellia://<dataset>/<version>` or `picsellia://<version id>`.
        class_names: The batch's classes: each gets a label, in this order.
        client: An SDK client; None builds one from `PICSELLIA_TOKEN` (or the
            ZenML secret `picsellia`).

    Returns:
        The items uploaded (all of them; a failure raises).

    Raises:
        SourceError: No token, no connection or no such version.
    """
    client = client or connect(resolve_token())
    version = find_version(client, uri)
    lake = client.get_datalake()
    labels = {name: version.get_or_create_label(name) for name in class_names}

    def tags(item: BatchItem) -> list[str]:
        return [REVIEW_TAG, *sorted(set(item.reasons))]

    for tag_list, group in groupby(sorted(items, key=tags), key=tags):
        chosen = list(group)
        uploaded = lake.upload_data(
            [str(i.selected.image) for i in chosen], tags=tag_list
        )
        data = list(getattr(uploaded, "items", [uploaded]))
        by_name = {d.filename: d for d in data}
        missing = [str(i.selected.image) for i in chosen if i.name not in by_name]
        if missing:  # the SDK only logs a file it could not upload
            raise UploadError(
                f"Picsellia did not take {len(missing)} of {len(chosen)} image(s) "
                f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}); "
                "nothing is marked reviewed: run the review again."
            )
        version.add_data(data, tags=tag_list)
        for item in chosen:
            asset = version.find_asset(data=by_name[item.name])
            _annotate(asset, item, labels)
    return list(items)


def _annotate(asset: Any, item: BatchItem, labels: dict[str, Any]) -> None:
    """One annotation of the asset with the item's pre-labels (none: no
    annotation, the labeller starts from an empty image)."""
    if not item.prelabels:
        return
    annotation = asset.create_annotation()
    rectangles, polygons, classes = [], [], []
    for p in item.prelabels:
        label = labels[p.class_name]
        if p.polygon is not None:
            polygons.append(([[round(x), round(y)] for x, y in p.polygon], label))
        elif p.box is not None:
            x1, y1, x2, y2 = (round(v) for v in p.box)
            rectangles.append((x1, y1, x2 - x1, y2 - y1, label))
        else:
            classes.append(label)
    if rectangles:
        annotation.create_multiple_rectangles(rectangles)
    if polygons:
        annotation.create_multiple_polygons(polygons)
    if classes:
        annotation.create_multiple_classifications(classes)
