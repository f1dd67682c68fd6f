"""Ultralytics as every task runs it: pinned settings, the device, validation and
prediction over a split."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionops.core.env import state_dir

# Ultralytics' own image size, for a run or model that recorded none.
DEFAULT_IMGSZ = 640

if TYPE_CHECKING:
    from visionops.engine.task import EvalJob


class UnsafeWeightsError(ValueError):
    """A `.pt` file holds objects a `weights_only=True` load refuses."""


# Integrations Ultralytics would switch on by itself when their packages are
# installed. The project logs to MLflow through its own callback instead, so
# each candidate is exactly one MLflow run (Ultralytics' callback would start its
# own runs, in ./runs/mlflow unless told otherwise, and turn on mlflow.autolog()).
_INTEGRATIONS_OFF = {
    name: False
    for name in (
        "mlflow",
        "clearml",
        "comet",
        "dvc",
        "hub",
        "neptune",
        "raytune",
        "tensorboard",
        "wandb",
    )
}


def configure_ultralytics() -> None:
    """Pins Ultralytics settings: integrations off, folders in the project state."""
    from ultralytics import settings

    wanted = {
        **_INTEGRATIONS_OFF,
        "runs_dir": str(state_dir() / "runs"),
        "weights_dir": str(state_dir() / "weights"),
        "datasets_dir": str(state_dir() / "datasets"),
        "sync": False,
    }
    wanted = {k: v for k, v in wanted.items() if k in settings.defaults}
    if any(settings.get(k) != v for k, v in wanted.items()):
        settings.update(wanted)


def resolve_device(device: str) -> str:
    """Turns `auto` into the first CUDA GPU when there is one, else `cpu`."""
    if device != "auto":
        return device.removeprefix("cuda:") if device.startswith("cuda:") else device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def validate(job: EvalJob, model: Any = None) -> Any:
    """Ultralytics' validation of the job's weights on its split.

    Its plots (curves, confusion matrix, sample predictions) land in `job.out_dir`.

    Args:
        job: The evaluation (weights, dataset, split, image size, batch, device).
        model: The loaded model (`load_model(job)` when None), e.g. one a
            callback was added to.

    Returns:
        Ultralytics' metrics object (`box`, `seg`, `names`, `confusion_matrix`).
    """
    settings = job.settings
    return (model or load_model(job)).val(
        data=str(job.task.ultralytics_data(job.dataset)),
        split=settings.split,
        imgsz=settings.imgsz,
        batch=settings.batch,
        device=resolve_device(settings.device),
        plots=True,
        project=str(job.out_dir.parent),
        name=job.out_dir.name,
        exist_ok=True,
        verbose=False,
    )


def open_yolo(weights: str | Path, task: str | None = None) -> Any:
    """An Ultralytics `YOLO` of `weights`, a `.pt` file only if it cannot run code.

    Ultralytics opens checkpoints with `torch.load(weights_only=False)`, i.e. a
    full unpickle that can run any code the file names. A `.pt` file is first
    loaded with `weights_only=True` against Ultralytics' allow-list of model
    classes (`torch_safe_load(safe_only=True)`), which refuses anything else
    before it runs; only then does Ultralytics open it. Model names and yaml
    files (not local `.pt` files) go to Ultralytics unchanged.

    Raises:
        UnsafeWeightsError: The file fails the restricted load.
    """
    from ultralytics import YOLO
    from ultralytics.nn.tasks import torch_safe_load

    path = Path(weights)
    if path.suffix == ".pt" and path.is_file():
        try:
            torch_safe_load(str(path), safe_only=True)
        except TypeError as err:
            reason = str(err).replace("ERROR ❌️ ", "").splitlines()[0]
            raise UnsafeWeightsError(
                f"Refusing to open {path}: a weights_only load refused it ({reason})"
            ) from err
    return YOLO(str(weights), task=task)


def load_model(job: EvalJob) -> Any:
    """The job's weights as an Ultralytics `YOLO` of its task."""
    configure_ultralytics()
    return open_yolo(job.weights, task=job.task.ultralytics_task)


def predict(job: EvalJob, model: Any = None, **options: Any) -> Iterator[Any]:
    """Ultralytics' `predict` on every image of the job, in order, `batch` at a time.

    Args:
        job: The evaluation (its images, image size, batch and device).
        model: The loaded model (`load_model(job)` when None).
        **options: More `predict` arguments (`retina_masks=True`, ...).

    Yields:
        One Ultralytics `Results` per image.
    """
    model = model or load_model(job)
    settings = job.settings
    device = resolve_device(settings.device)
    for start in range(0, len(job.images), settings.batch):
        chunk = [str(p) for p in job.images[start : start + settings.batch]]
        yield from model.predict(
            chunk, imgsz=settings.imgsz, device=device, verbose=False, **options
        )
