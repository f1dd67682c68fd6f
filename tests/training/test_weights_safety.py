"""Weights from the tracker are checked before anything unpickles them."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest


class _WritesMarker:
    """Unpickling this runs `os.system`, which writes the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tampered_checkpoint(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"model": _WritesMarker(marker), "epoch": -1}, path)
    return path


def _champion_run(tmp_path: Path, weights: Path, *, checked: bool) -> str:
    """A run holding `weights` as weights/best.pt, registered as `cars@champion`."""
    from mlflow.tracking import MlflowClient

    from visionops.tasks import get_task
    from visionops.training.champion import version_tags
    from visionops.training.tracking import log_checked_file, set_alias

    client = MlflowClient()
    experiment = client.create_experiment(
        "weights", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    run_id = client.create_run(experiment).info.run_id
    client.log_param(run_id, "imgsz", 64)
    if checked:
        log_checked_file(run_id, weights, "weights")
    else:  # a run logged before checksums were recorded
        client.log_artifact(run_id, str(weights), "weights")
    client.create_registered_model("cars")
    tags = version_tags(
        task=get_task("detect"),
        class_names=["car"],
        test_metrics={"map50_95": 0.5},
        onnx_artifact="",
        onnx_latency_ms=None,
        serving_imgsz=64,
    )
    version = client.create_model_version(
        "cars", f"runs:/{run_id}/weights", run_id=run_id, tags=tags
    ).version
    set_alias("cars", "champion", str(version))
    return run_id


def test_swapped_champion_weights_are_refused_unopened(
    local_mlflow, tmp_path: Path
) -> None:
    from visionops.training.stages import evaluate_champion
    from visionops.training.tracking import ArtifactChecksumError

    marker = tmp_path / "pwned"
    honest = tmp_path / "honest" / "best.pt"
    honest.parent.mkdir()
    honest.write_bytes(b"the weights training logged")
    run_id = _champion_run(tmp_path, honest, checked=True)
    # Whoever can write the artifact store swaps the file behind the tag.
    stored = next((tmp_path / "artifacts").rglob("weights/best.pt"))
    _tampered_checkpoint(stored, marker)

    with pytest.raises(ArtifactChecksumError) as caught:
        evaluate_champion(
            SimpleNamespace(task="detect"), "cars", None, tmp_path / "eval"
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "weights/best.pt" in message and run_id in message
    from visionops.core.files import sha256_file

    assert sha256_file(honest) in message and sha256_file(stored) in message
    assert not marker.exists()
    assert not (tmp_path / "eval" / "weights" / "best.pt").exists()


def test_unchecked_pickle_is_refused_by_the_weights_only_load(
    local_mlflow, tmp_path: Path
) -> None:
    from visionops.engine.ultralytics import UnsafeWeightsError, open_yolo
    from visionops.training.champion import Champion

    marker = tmp_path / "pwned"
    evil = _tampered_checkpoint(tmp_path / "best.pt", marker)
    _champion_run(tmp_path, evil, checked=False)

    weights = Champion.get("cars").fetch_weights(tmp_path / "got")
    with pytest.raises(UnsafeWeightsError, match="Refusing to open"):
        open_yolo(weights)
    assert not marker.exists()


def test_trained_weights_pass_the_check(local_mlflow, tiny_weights, tmp_path) -> None:
    from visionops.engine.ultralytics import open_yolo
    from visionops.training.champion import Champion

    _champion_run(tmp_path, tiny_weights, checked=True)
    weights = Champion.get("cars").fetch_weights(tmp_path / "got")
    assert weights.read_bytes() == tiny_weights.read_bytes()
    assert open_yolo(weights, task="detect").task == "detect"
