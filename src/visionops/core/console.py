"""What a run shows on the terminal: progress bars, per-epoch lines, ZenML's hints.

`--quiet` reaches the library through `VISIONOPS_QUIET` (inherited by worker and
step processes), so no function needs a `quiet` parameter.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

QUIET_ENV = "VISIONOPS_QUIET"
DASHBOARD_HINT = "See the runs in the dashboards: python run.py --dashboard"
MODEL_HINT = (
    "See the registered model with: python run.py --status, or in the MLflow UI "
    "(python run.py --dashboard)"
)
# What ZenML advises, and what this project says instead: `zenml login --local`
# (`run.py --dashboard` starts the server on the project's store), and ZenML
# Pro's model pages (the registered model lives in MLflow's registry).
_ZENML_HINTS = {
    "zenml login --local": DASHBOARD_HINT,
    "Models can be viewed in the dashboard using ZenML Pro": MODEL_HINT,
}
# The ZenML loggers that give that advice.
_ZENML_HINT_LOGGERS = (
    "zenml.pipelines.pipeline_definition",
    "zenml.utils.visualization_utils",
    "zenml.orchestrators.step_run_utils",
)


def quiet() -> bool:
    """Whether progress bars and per-epoch lines are off (`run.py --quiet`)."""
    return os.environ.get(QUIET_ENV, "").lower() in ("1", "true", "yes")


def set_quiet(on: bool) -> None:
    """Turns progress off (or on) here and in processes started from here.

    Quiet also turns ZenML's logs, step logs included, down to warnings.
    """
    if not on:
        os.environ.pop(QUIET_ENV, None)
        return
    os.environ[QUIET_ENV] = "1"
    os.environ["ZENML_LOGGING_VERBOSITY"] = "WARN"
    if "zenml" in sys.modules:  # it read the variable at import: set the level
        logging.getLogger().setLevel(logging.WARNING)


def track(
    items: Iterable[T], description: str, total: int | None = None
) -> Iterator[T]:
    """Yields `items` while a progress bar with counts runs on stderr, unless quiet."""
    from tqdm import tqdm

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with tqdm(
        items,
        desc=description,
        total=total,
        unit="image",
        file=sys.stderr,
        disable=quiet(),
        mininterval=1.0,
        dynamic_ncols=True,
    ) as bar:
        yield from bar


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    """One line per finished epoch: train losses and validation metrics.

    Args:
        epoch: The epoch just finished, from 1; past `epochs`, the final validation.
        epochs: The epochs planned.
        metrics: The epoch's metrics as the project logs them (`train/box_loss`,
            `metrics/mAP50B`, `val/...`, `lr/...`).
    """
    shown = {
        name.removeprefix("metrics/").removeprefix("train/"): value
        for name, value in metrics.items()
        if not name.startswith(("lr/", "val/"))
    }
    width = len(str(epochs))
    fields = "  ".join(f"{name} {value:.4g}" for name, value in shown.items())
    label = f"Epoch {epoch:>{width}}/{epochs}"
    if epoch > epochs:  # Ultralytics validates best.pt once more after the last epoch
        label = "best.pt".ljust(len(label))
    return f"{label}  {fields}"


def print_epoch(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
    """Prints `epoch_line` on stderr, unless quiet."""
    if not quiet():
        print(epoch_line(epoch, epochs, metrics), file=sys.stderr, flush=True)


class _DashboardHint(logging.Filter):
    """Rewrites ZenML's advice (`_ZENML_HINTS`) into the project's hints."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for advice, hint in _ZENML_HINTS.items():
            if advice in message:
                record.msg, record.args = hint, ()
        return True


def replace_zenml_hints() -> None:
    """Installs the rewrite on ZenML's loggers that give that advice (idempotent)."""
    for name in _ZENML_HINT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DashboardHint) for f in logger.filters):
            logger.addFilter(_DashboardHint())
