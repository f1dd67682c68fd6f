"""Step: the images production selected since the last review, as one batch."""

from datetime import datetime
from typing import Annotated

from zenml import log_metadata, step

from visionops.app.lookup import class_name_lookup
from visionops.core.names import REVIEW_BATCH
from visionops.feedback import review
from visionops.feedback.review import ReviewBatch
from visionops.feedback.store import FeedbackStore


# Never cached: the store fills up between two runs with the same parameters.
@step(enable_cache=False)
def make_review_batch(
    target: str,
    model_name: str | None,
    max_images: int,
    store: str | None = None,
) -> Annotated[ReviewBatch, REVIEW_BATCH]:
    """Writes (or uploads) the batch and marks its images reviewed.

    Args:
        target: A folder, relative to the project root if not absolute, or
            `picsellia://<dataset>/<version>`.
        model_name: Only this registered model's images; None: the one found.
        max_images: At most this many images, oldest first.
        store: The feedback store's folder; None: this machine's.
    """
    batch = review.make_review_batch(
        FeedbackStore(store),
        target,
        model=model_name,
        max_images=max_images,
        lookup=class_name_lookup(),  # the model registry's class names
        when=datetime.now(),
    )
    log_metadata(
        {
            "target": batch.target or "",
            "images": batch.images,
            "reasons": batch.reasons,
            "model": batch.model or "",
            "waiting": batch.waiting,
            "skipped": len(batch.skipped),
        }
    )
    return batch
