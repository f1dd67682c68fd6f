"""A seeded paired bootstrap over test images: a metric difference and its interval."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

if TYPE_CHECKING:
    from visionops.engine.report import EvalReport
    from visionops.engine.task import Task

# (R, n) image indices, one resample a row -> (R,) metric values (NaN: undefined).
MetricFn = Callable[[np.ndarray], np.ndarray]
# Resamples handed to a metric function at once: its arrays stay a few MB.
CHUNK = 100


class PerImage(BaseModel):
    """One evaluation's results per test image, from which its task recomputes a
    metric on any subset or resample of the images.

    Attributes:
        images: Image file names, the order of every list in `values`.
        values: Per field (the task chooses them), one list of numbers per image.
        params: What the evaluation was asked that changes its metrics
            (classify: `positive_class`).
    """

    images: list[str]
    values: dict[str, list[list[float]]]
    params: dict[str, str] = {}

    def arrays(self, field: str, dtype: type = np.float64) -> list[np.ndarray]:
        """Field `field` as one array per image."""
        return [np.asarray(v, dtype=dtype) for v in self.values[field]]

    def select(self, names: Sequence[str]) -> PerImage:
        """The results of these images, in this order."""
        where = {name: i for i, name in enumerate(self.images)}
        rows = [where[name] for name in names]
        return PerImage(
            images=list(names),
            values={k: [v[i] for i in rows] for k, v in self.values.items()},
            params=dict(self.params),
        )


class Interval(BaseModel):
    """`metric(a) - metric(b)` on the same test images, with its bootstrap interval.

    Attributes:
        metric: The metric compared.
        difference: The difference on the whole split.
        low: The interval's lower bound (the `(1 - confidence) / 2` quantile).
        high: Its upper bound.
        confidence: The interval's coverage, e.g. 0.95.
        images: Test images both models were measured on.
        resamples: Bootstrap resamples (each draws `images` images with replacement).
        seed: The resampling seed: the same seed gives the same interval.
    """

    metric: str
    difference: float
    low: float
    high: float
    confidence: float
    images: int
    resamples: int
    seed: int

    @property
    def half_width(self) -> float:
        """Half the interval's width: smaller differences cannot be told apart."""
        return (self.high - self.low) / 2

    def text(self) -> str:
        """`+0.0123 (95% CI -0.0200 to +0.0450, 9 images)`."""
        return (
            f"{self.difference:+.4f} ({self.confidence:.0%} CI {self.low:+.4f} to "
            f"{self.high:+.4f}, {self.images} images)"
        )

    def noise(self) -> str | None:
        """Says in words when the split is too small to tell the models apart
        (the interval holds 0), e.g. `9 test images: differences under 0.05 are
        noise`; None when the interval excludes 0."""
        if self.low > 0 or self.high < 0:
            return None
        if self.half_width == 0:
            return f"{self.images} test images: no difference on any resample"
        return (
            f"{self.images} test images: differences under "
            f"{_round_up(self.half_width)} are noise"
        )

    def tags(self, prefix: str) -> dict[str, str]:
        """`<prefix>.ci_low`, `.ci_high`, `.difference`, `.test_images`, `.noise`."""
        return {
            f"{prefix}.difference": f"{self.difference:.6f}",
            f"{prefix}.ci_low": f"{self.low:.6f}",
            f"{prefix}.ci_high": f"{self.high:.6f}",
            f"{prefix}.confidence": f"{self.confidence:g}",
            f"{prefix}.test_images": str(self.images),
            f"{prefix}.noise": self.noise() or "",
        }

    def metrics(self, prefix: str) -> dict[str, float]:
        """The same numbers as MLflow metrics (`<prefix>_ci_low`, ...)."""
        return {
            f"{prefix}_difference": self.difference,
            f"{prefix}_ci_low": self.low,
            f"{prefix}_ci_high": self.high,
            f"{prefix}_test_images": float(self.images),
        }


def _round_up(value: float) -> str:
    """Two significant digits, rounded up (a noise level is not understated)."""
    if value <= 0:
        return "0"
    scale = 10 ** (math.floor(math.log10(value)) - 1)
    return f"{math.ceil(value / scale - 1e-9) * scale:.2g}"


def counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(R, n) resampled indices -> (R, n) times each image was drawn."""
    rows = indices.shape[0]
    flat = (np.arange(rows)[:, None] * n + indices).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n)


def per_resample(metric: Callable[[np.ndarray], float]) -> MetricFn:
    """A `MetricFn` from a function of one resample's indices (a loop: for
    metrics with no vectorised form)."""

    def batch(indices: np.ndarray) -> np.ndarray:
        return np.array([metric(row) for row in indices], dtype=np.float64)

    return batch


def paired_bootstrap(
    metric_a: MetricFn,
    metric_b: MetricFn,
    images: int,
    *,
    metric: str,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile interval of `metric_a - metric_b` over paired resamples.

    Each resample draws `images` image indices with replacement; both models
    are scored on the same draw, so what the two share (an easy or a hard
    image) cancels out of the difference.

    Args:
        metric_a: Model A's metric on resamples (e.g. the challenger).
        metric_b: Model B's, on the same images in the same order.
        images: The number of test images.
        metric: The metric's name (for the report).
        resamples: How many resamples.
        confidence: The interval's coverage.
        seed: Seeds the draw: the same seed gives the same interval.

    Raises:
        ValueError: No image, or the metric is undefined on every resample.
    """
    if images < 1:
        raise ValueError("a bootstrap needs at least one test image")
    everything = np.arange(images)[None, :]
    difference = float(metric_a(everything)[0] - metric_b(everything)[0])
    draws = np.random.default_rng(seed).integers(0, images, size=(resamples, images))
    diffs = np.concatenate(
        [
            metric_a(draws[i : i + CHUNK]) - metric_b(draws[i : i + CHUNK])
            for i in range(0, resamples, CHUNK)
        ]
    )
    diffs = diffs[np.isfinite(diffs)]
    if not diffs.size or not math.isfinite(difference):
        raise ValueError(f"{metric} is undefined on these test images")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(
        metric=metric,
        difference=difference,
        low=float(low),
        high=float(high),
        confidence=confidence,
        images=images,
        resamples=resamples,
        seed=seed,
    )


def compare_reports(
    task: Task,
    a: EvalReport,
    b: EvalReport,
    metric: str,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[Interval | None, str]:
    """The paired bootstrap of `metric(a) - metric(b)` on the images both reports
    hold per-image results for.

    Returns:
        The interval, or None with the reason when there is none (a report
        without per-image results, no image in common, a metric the task
        cannot recompute per image).
    """
    if a.per_image is None or b.per_image is None:
        return None, "no per-image results to bootstrap"
    shared = set(b.per_image.images)
    names = [name for name in a.per_image.images if name in shared]
    if not names:
        return None, "the two evaluations share no test image"
    try:
        interval = paired_bootstrap(
            task.resample_metric(a.per_image.select(names), metric, a.class_names),
            task.resample_metric(b.per_image.select(names), metric, b.class_names),
            len(names),
            metric=metric,
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )
    except ValueError as err:
        return None, str(err)
    return interval, ""
