"""Training pipeline wall time vs the same Ultralytics training in a plain script.

Usage: python bench/training_overhead.py [--epochs N] [--imgsz PX] [--repeat N]

Runs in a throwaway ZenML/MLflow state: ingests the bundled sample (no face blurring),
then alternates a direct `YOLO(...).train(...)` and
`run.py --pipeline training --no-cache` with one candidate of the same model, data,
epochs and image size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(tempfile.mkdtemp(prefix="bench-training-"))
os.environ["VISIONOPS_STATE_DIR"] = str(STATE)
sys.path.insert(0, str(ROOT))

import visionops  # noqa: E402, F401


def _direct(data_yaml: Path, epochs: int, imgsz: int, out: Path) -> float:
    from ultralytics import YOLO

    start = time.perf_counter()
    YOLO("yolo11n.yaml").train(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=16,
        workers=2,
        device="cpu",
        seed=0,
        deterministic=True,
        project=str(out),
        name="direct",
        exist_ok=True,
        plots=True,
        verbose=False,
    )
    return time.perf_counter() - start


def _pipeline(epochs: int, imgsz: int) -> tuple[float, float]:
    from zenml.client import Client

    import run

    start = time.perf_counter()
    code = run.main(
        [
            "--pipeline",
            "training",
            "--no-cache",
            "--set",
            f"train.epochs={epochs}",
            "--set",
            f"train.imgsz={imgsz}",
            "--set",
            "train.device=cpu",
            "--set",
            "model.name=bench-detector",
        ]
    )
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"training pipeline failed with exit code {code}")
    step = Client().get_pipeline("training").last_run.steps["train_candidate_0"]
    return wall, (step.end_time - step.start_time).total_seconds()


def main() -> None:
    """Prints the direct and pipeline wall times side by side, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import run
    from visionops.lookup import find_dataset
    from visionops.training.yolo import configure_ultralytics

    try:
        assert run.main(["--stack", "local"]) == 0
        assert (
            run.main(["--pipeline", "ingestion", "--set", "anonymize.enabled=false"])
            == 0
        )
        data_yaml = find_dataset("latest").load().data_yaml
        configure_ultralytics()
        direct, pipeline, step = [], [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine load
            direct.append(_direct(data_yaml, args.epochs, args.imgsz, STATE / "direct"))
            wall, train_step = _pipeline(args.epochs, args.imgsz)
            pipeline.append(wall)
            step.append(train_step)
        d, p, s = min(direct), min(pipeline), min(step)
        print(
            f"\nyolo11n from scratch, {args.epochs} epochs at {args.imgsz}px on the "
            "bundled "
            f"sample, CPU, best of {args.repeat}"
        )
        print(f"{'plain Ultralytics script':<44}{d:>8.1f} s   1.00x")
        print(
            f"{'train_candidate step (training + MLflow)':<44}"
            f"{s:>8.1f} s {s / d:>6.2f}x"
        )
        print(f"{'whole training pipeline':<44}{p:>8.1f} s {p / d:>6.2f}x")
        print(
            "(the pipeline also evaluates on test, exports ONNX and times it, "
            "re-evaluates "
            "the champion and registers the model)"
        )
    finally:
        shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
