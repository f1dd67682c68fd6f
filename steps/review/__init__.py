"""Review steps: gather the selected images into a labelling batch."""

from steps.review.make_review_batch import make_review_batch

__all__ = ["make_review_batch"]
