"""Ultralytics as every task runs it: pinned settings and the device to use."""

from __future__ import annotations

from visionops.core.env import state_dir

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
