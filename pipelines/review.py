"""Review pipeline: what production selected, as a labelling batch with pre-labels."""

from zenml import pipeline

from steps.review import make_review_batch
from visionops.config import ReviewParameters


@pipeline(name="review")
def review(params: ReviewParameters) -> None:
    """Gathers the selected images no review took into one labelling batch."""
    make_review_batch(params.target, params.model.name, params.max_images, params.store)
