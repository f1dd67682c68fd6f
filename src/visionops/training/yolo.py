"""Ultralytics training with explicit settings, offline weight resolution and resume."""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from visionops.config import TrainSettings
from visionops.core.console import print_epoch
from visionops.core.env import project_root, state_dir
from visionops.core.files import try_lock
from visionops.engine.ultralytics import (
    configure_ultralytics,
    open_yolo,
    resolve_device,
)

if TYPE_CHECKING:
    from visionops.tasks import Task

logger = logging.getLogger(__name__)
LAST_CHECKPOINT = "weights/last.pt"
# Held (flock) in a training folder while a process trains in it.
TRAINING_LOCK = ".training.lock"


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were required but are not available offline."""


@dataclass(frozen=True)
class WeightsChoice:
    """What a model name resolved to."""

    source: str
    pretrained: bool
    note: str


def weight_search_dirs() -> list[Path]:
    """Folders searched for `<name>.pt` before falling back to the architecture."""
    return [project_root() / "weights", state_dir() / "weights"]


def resolve_weights(model: str, policy: str = "auto") -> WeightsChoice:
    """Resolves a model name or path to what Ultralytics should load.

    Args:
        model: `yolo11n`-style name, or a path to `.pt` weights or a `.yaml`.
        policy: `auto` (pretrained when available, else from scratch with a
            warning), `required` (fail without pretrained weights) or `never`.

    Returns:
        The source to load and whether it is pretrained.

    Raises:
        PretrainedWeightsError: `required` and no weights can be had.
        FileNotFoundError: A given path does not exist.
    """
    if model.endswith((".pt", ".yaml", ".yml")):
        path = Path(model).expanduser()
        if not path.is_absolute():
            path = project_root() / path
        if not path.is_file():
            raise FileNotFoundError(f"Model file {path} does not exist.")
        pretrained = path.suffix == ".pt"
        if policy == "required" and not pretrained:
            raise PretrainedWeightsError(f"{model} is an architecture, not weights.")
        return WeightsChoice(str(path), pretrained, f"local file {path}")
    if policy != "never":
        for folder in weight_search_dirs():
            candidate = folder / f"{model}.pt"
            if candidate.is_file():
                return WeightsChoice(str(candidate), True, f"local weights {candidate}")
        if os.environ.get("YOLO_OFFLINE", "0").lower() in ("0", "false", ""):
            return WeightsChoice(f"{model}.pt", True, "downloaded by Ultralytics")
        if policy == "required":
            dirs = ", ".join(str(d) for d in weight_search_dirs())
            raise PretrainedWeightsError(
                f"pretrained: required, but {model}.pt is not in {dirs} and the "
                "project runs offline (YOLO_OFFLINE=1). Put the weights there, or "
                "set YOLO_OFFLINE=0 on a machine with internet access."
            )
    note = f"no pretrained {model}.pt offline: training from {model}.yaml from scratch"
    if policy == "never":
        note = f"pretrained: never, training from {model}.yaml"
    return WeightsChoice(f"{model}.yaml", False, note)


def run_key(model: str, settings: TrainSettings, dataset_hash: str) -> str:
    """A stable id of one candidate on one dataset: the folder of its checkpoints."""
    payload = json.dumps(
        {"model": model, "train": settings.model_dump(), "dataset": dataset_hash},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class TrainOutcome:
    """What one Ultralytics training left behind."""

    save_dir: Path
    best: Path
    last: Path
    val_metrics: dict[str, float]
    speed_ms: dict[str, float]
    epochs_run: int
    resumed: bool
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    model: str,
    settings: TrainSettings,
    data: Path,
    run_dir: Path,
    *,
    source: str,
    task: Task,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainOutcome:
    """Trains one candidate in a new folder of its own, or resumes one.

    Each training gets a new folder under `run_dir` (`<time>-<random>`) and holds
    a lock in it while it trains, so two trainings of the same candidate at once
    keep apart; `resume` continues the newest folder whose `weights/last.pt` no
    running training holds.

    Args:
        model: The candidate's model name (for messages).
        settings: Training arguments.
        data: What Ultralytics takes as `data=` (`Task.ultralytics_data(dataset)`:
            data.yaml for detection, the dataset folder for classification).
        run_dir: The candidate's folder (`run_key`), holding one folder per
            training: checkpoints, plots, results.csv.
        source: What `resolve_weights` chose to load.
        task: The dataset's task, whose names the validation metrics get.
        resume: Continue an interrupted run from its last checkpoint if there is one.
        on_epoch_end: Called after each epoch's validation with (epoch, metrics).

    Returns:
        Paths and validation metrics of the finished run.
    """
    configure_ultralytics()
    attempt, lock = _resumable(run_dir) if resume else (None, None)
    resumed = attempt is not None
    if resume and not resumed:
        logger.warning(
            "Nothing to resume for %s in %s: training from the start.", model, run_dir
        )
    if attempt is None:
        # A folder of its own: a second training of the same candidate at the
        # same time neither shares nor deletes this one.
        run_dir.mkdir(parents=True, exist_ok=True)
        attempt = Path(
            tempfile.mkdtemp(prefix=f"{datetime.now():%Y%m%d-%H%M%S}-", dir=run_dir)
        )
        lock = try_lock(attempt / TRAINING_LOCK)
    try:
        return _train_in(
            model, settings, data, attempt, source, task, resumed, on_epoch_end
        )
    finally:
        if lock is not None:
            lock.close()


def _resumable(run_dir: Path) -> tuple[Path | None, IO[str] | None]:
    """The newest folder of `run_dir` with a checkpoint no training holds, locked.

    Returns:
        The folder and the handle holding its lock, or (None, None).
    """
    folders = [p.parent.parent for p in run_dir.glob(f"*/{LAST_CHECKPOINT}")]
    for folder in sorted(
        folders, key=lambda p: (p / LAST_CHECKPOINT).stat().st_mtime, reverse=True
    ):
        lock = try_lock(folder / TRAINING_LOCK)
        if lock is not None:
            return folder, lock
    return None, None


def _train_in(
    model: str,
    settings: TrainSettings,
    data: Path,
    run_dir: Path,
    source: str,
    task: Task,
    resumed: bool,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None,
) -> TrainOutcome:
    """Trains (or resumes) one candidate in `run_dir`, its own folder."""
    yolo = open_yolo(run_dir / LAST_CHECKPOINT if resumed else source)
    history: list[dict[str, float]] = []

    def _epoch_end(trainer: Any) -> None:
        metrics = {
            **trainer.label_loss_items(trainer.tloss, prefix="train"),
            **trainer.metrics,
            **trainer.lr,
        }
        clean = {
            k.replace("(", "").replace(")", ""): float(v) for k, v in metrics.items()
        }
        history.append({"epoch": trainer.epoch, **clean})
        print_epoch(trainer.epoch + 1, trainer.epochs, clean)  # YOLO_VERBOSE is off
        if on_epoch_end is not None:
            on_epoch_end(trainer.epoch, clean)

    yolo.add_callback("on_fit_epoch_end", _epoch_end)
    # A pipeline process holds ZenML's, MLflow's and SQLAlchemy's objects (about
    # 450k); Ultralytics calls gc.collect() after training and, on accelerators
    # over half full, twice per epoch, each walking all of them (about a second
    # on 2 busy cores). Frozen, they are skipped; what training allocates is not.
    gc.freeze()
    try:
        results = _ultralytics_train(yolo, settings, data, run_dir, resumed)
    finally:
        gc.unfreeze()
    trainer = yolo.trainer
    save_dir = Path(trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.is_file():  # a run stopped before any checkpoint
        raise RuntimeError(f"Training {model} produced no weights in {save_dir}.")
    return TrainOutcome(
        save_dir=save_dir,
        best=best,
        last=save_dir / "weights" / "last.pt",
        val_metrics=task.val_metrics(
            getattr(results, "results_dict", None) or trainer.metrics
        ),
        speed_ms={
            k: float(v) for k, v in (getattr(results, "speed", None) or {}).items()
        },
        epochs_run=int(trainer.epoch) + 1,
        resumed=resumed,
        history=history,
    )


def _ultralytics_train(
    yolo: Any, settings: TrainSettings, data: Path, run_dir: Path, resumed: bool
) -> Any:
    """Starts or resumes Ultralytics' training with the project's fixed arguments."""
    if resumed:
        return yolo.train(resume=True)
    # Every `TrainSettings` field is an Ultralytics training argument of that name.
    return yolo.train(
        **{**settings.model_dump(), "device": resolve_device(settings.device)},
        data=str(data),
        deterministic=True,
        project=str(run_dir.parent),
        name=run_dir.name,
        exist_ok=True,
        plots=True,
        verbose=False,
    )
