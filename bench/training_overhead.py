"""Training wall time, fixed and per epoch: plain Ultralytics vs the project's paths.

Usage: python bench/training_overhead.py [--epochs 3,10] [--imgsz PX] [--repeat N]

Runs in a throwaway ZenML/MLflow state: ingests the bundled sample (no face
blurring), then, for each repeat and each epoch count, alternates four ways of
training the same yolo11n from scratch with the same arguments (those of
`configs/training.yaml`, which `visionops.training.yolo.train` passes):

- a plain script calling `YOLO("yolo11n.yaml").train(...)`;
- the library, `visionops.training.yolo.train(...)`, outside ZenML;
- the `train_candidate` step inside the training pipeline (its start to end,
  from the ZenML run record);
- the whole `run.py --pipeline training --no-cache`.

With two epoch counts a and b, each path's time is fitted as
`fixed + epochs x per_epoch`: per_epoch = (T(b) - T(a)) / (b - a). The ratios of
per-epoch costs and the differences of fixed costs against the plain script say
where the overhead lies. Both wall time and CPU time (this process and its
reaped children) are reported: on a shared machine the wall time of a run
swings with other jobs, its CPU time much less. Data loading runs in-process
(`--workers 0` by default) so that every CPU second is counted.
`--profile DIR` writes a cProfile of each pipeline run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import resource
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

WORKERS = 0  # set from --workers

PATHS = (
    "plain Ultralytics script",
    "library train() outside ZenML",
    "train_candidate step",
    "whole training pipeline",
)


def _settings(epochs: int, imgsz: int):
    from visionops.config import load_parameters

    params = load_parameters("training")
    return params.train.model_copy(  # type: ignore[attr-defined]
        update={"epochs": epochs, "imgsz": imgsz, "device": "cpu", "workers": WORKERS}
    )


def _cpu() -> float:
    """CPU seconds used so far by this process and its reaped children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _direct(data_yaml: Path, epochs: int, imgsz: int, out: Path) -> float:
    from ultralytics import YOLO

    train = _settings(epochs, imgsz)
    shutil.rmtree(out / "direct", ignore_errors=True)
    start = time.perf_counter()
    YOLO("yolo11n.yaml").train(
        data=str(data_yaml),
        epochs=train.epochs,
        imgsz=train.imgsz,
        batch=train.batch,
        patience=train.patience,
        optimizer=train.optimizer,
        lr0=train.lr0,
        seed=train.seed,
        deterministic=True,
        device="cpu",
        workers=train.workers,
        project=str(out),
        name="direct",
        exist_ok=True,
        plots=True,
        verbose=False,
    )
    return time.perf_counter() - start


def _library(data_yaml: Path, epochs: int, imgsz: int, out: Path) -> float:
    from visionops.tasks import get_task
    from visionops.training.yolo import train

    start = time.perf_counter()
    train(
        "yolo11n",
        _settings(epochs, imgsz),
        data_yaml,
        out / "library",
        source="yolo11n.yaml",
        task=get_task(),
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
            f"train.workers={WORKERS}",
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
    """Prints each path's time per epoch count, its fixed and per-epoch costs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="3,10", help="two epoch counts")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="dataloader workers")
    parser.add_argument("--profile", type=Path, help="cProfile the pipeline here")
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    low, high = sorted(int(e) for e in args.epochs.split(","))

    import run
    from visionops.app.lookup import find_dataset
    from visionops.engine.ultralytics import configure_ultralytics

    wall: dict[tuple[str, int], list[float]] = {
        (p, e): [] for p in PATHS for e in (low, high)
    }
    cpu: dict[tuple[str, int], list[float]] = {
        (p, e): [] for p in PATHS if p != PATHS[2] for e in (low, high)
    }

    def timed(path: str, epochs: int, function, *call_args):
        cpu_start, start = _cpu(), time.perf_counter()
        result = function(*call_args)
        wall[path, epochs].append(time.perf_counter() - start)
        cpu[path, epochs].append(_cpu() - cpu_start)
        return result

    try:
        assert run.main(["--stack", "local"]) == 0
        assert (
            run.main(["--pipeline", "ingestion", "--set", "anonymize.enabled=false"])
            == 0
        )
        data_yaml = find_dataset("latest").load().data_yaml
        configure_ultralytics()
        out = STATE / "bench-runs"
        # Untimed warm-up: imports, Matplotlib's font cache, dataset caches.
        _direct(data_yaml, 1, args.imgsz, out)
        # Interleaved, so every path sees the same machine load.
        for _ in range(args.repeat):
            for epochs in (low, high):
                timed(PATHS[0], epochs, _direct, data_yaml, epochs, args.imgsz, out)
                timed(PATHS[1], epochs, _library, data_yaml, epochs, args.imgsz, out)
                profile = cProfile.Profile() if args.profile else None
                if profile:
                    profile.enable()
                _, step = timed(PATHS[3], epochs, _pipeline, epochs, args.imgsz)
                if profile:
                    profile.disable()
                    args.profile.mkdir(parents=True, exist_ok=True)
                    profile.dump_stats(args.profile / f"pipeline-{epochs}.prof")
                wall[PATHS[2], epochs].append(step)
            _report(args, wall, cpu, low, high)  # so far, in case of a long run
    finally:
        shutil.rmtree(STATE, ignore_errors=True)


def _report(args, wall, cpu, low: int, high: int) -> None:
    """Prints the wall and CPU tables and every run."""
    done = len(wall[PATHS[0], high])
    print(
        f"\nyolo11n from scratch at {args.imgsz} px on the bundled sample, CPU, "
        f"configs/training.yaml arguments, {args.workers} dataloader workers, "
        f"best of {done}, interleaved",
        flush=True,
    )
    for title, times in (("wall", wall), ("CPU", cpu)):
        _table(title, times, low, high)
    print("\nall runs, wall s (CPU s):")
    for key, values in wall.items():
        cpus = cpu.get(key, [float("nan")] * len(values))
        runs = ", ".join(
            f"{w:.1f} ({c:.1f})" for w, c in zip(values, cpus, strict=True)
        )
        print(f"  {key[0]}, {key[1]} epochs: {runs}", flush=True)


def _table(
    title: str, times: dict[tuple[str, int], list[float]], low: int, high: int
) -> None:
    """Prints one path per row: times, per-epoch and fixed costs, their ratios."""
    paths = list(dict.fromkeys(p for p, _ in times))
    best = {key: min(values) for key, values in times.items()}
    per_epoch = {p: (best[p, high] - best[p, low]) / (high - low) for p in paths}
    fixed = {p: best[p, low] - low * per_epoch[p] for p in paths}
    base = paths[0]
    print(
        f"\n{title} seconds\n\n| path | {low} epochs | {high} epochs | ratio at "
        f"{high} | per epoch | per-epoch ratio | fixed | fixed overhead |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for p in paths:
        print(
            f"| {p} | {best[p, low]:.1f} | {best[p, high]:.1f} | "
            f"{best[p, high] / best[base, high]:.2f}x | {per_epoch[p]:.2f} | "
            f"{per_epoch[p] / per_epoch[base]:.3f}x | {fixed[p]:.1f} | "
            f"{fixed[p] - fixed[base]:+.1f} |"
        )


if __name__ == "__main__":
    main()
