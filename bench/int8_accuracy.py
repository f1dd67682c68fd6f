"""INT8 against FP32 on the test split, per task: the deployment gate's own figures.

Usage: python bench/int8_accuracy.py [--tasks detect,classify,segment]
    [--epochs detect=150,classify=3,segment=3] [--source TASK=PATH ...]

In a throwaway ZenML/MLflow state, for each task: `run.py --pipeline ingestion`
on the task's bundled sample (as `make demo`, `make demo-classify` and
`make demo-segment` do, face blurring off: it does not change the comparison),
then `run.py --pipeline training` with `configs/training.yaml` and the task's
epochs (the demos' by default); `--source` ingests another export for a task
instead (e.g. `--source classify=../shared/datasets/chest-xray-small`). The
training pipeline exports the candidate to ONNX, quantizes it to static INT8
calibrated on the validation split, and evaluates both exports on the test
split through ONNX Runtime at the serving size
(`visionops.training.quantization`); this script prints what that gate recorded
on the promoted version's MLflow run: the promotion metric of both, the drop,
both latencies (one thread) and which precision is served.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The ingestion arguments of each task's demo (Makefile), and its demo epochs.
DEMOS = {
    "detect": ([], 150),
    "classify": (
        ["--source", "data/sample/chest-xray", "--set", r"split.group_by=person\d+"],
        3,
    ),
    "segment": (["--source", "data/sample/shoe-soles", "--set", "task=segment"], 3),
}


def main() -> None:
    """Trains each task's demo model and prints the INT8 gate's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="detect,classify,segment")
    parser.add_argument("--epochs", default="", help="e.g. detect=150,classify=3")
    parser.add_argument("--source", action="append", default=[], help="TASK=PATH")
    args = parser.parse_args()
    sources = dict(item.split("=", 1) for item in args.source)
    epochs = {name: default for name, (_, default) in DEMOS.items()}
    for item in filter(None, args.epochs.split(",")):
        name, _, value = item.partition("=")
        epochs[name] = int(value)
    state = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    os.environ["VISIONOPS_STATE_DIR"] = str(state)
    os.chdir(ROOT)  # the demos' relative source paths

    import run  # imports visionops first: offline environment, state in `state`
    from visionops.training.champion import Champion
    from visionops.training.tracking import configure_tracking

    rows = []
    try:
        if run.main(["--stack", "local"]) != 0:
            raise SystemExit("could not apply the local stack")
        for name in args.tasks.split(","):
            ingest, _ = DEMOS[name]
            if name in sources:  # the demo's options, another export
                options = [a for a in ingest if a != "--source"]
                options = [a for a in options if not a.startswith("data/sample/")]
                ingest = ["--source", str(Path(sources[name]).resolve()), *options]
            model = f"bench-{name}"
            steps = [
                [
                    "--pipeline",
                    "ingestion",
                    *ingest,
                    "--set",
                    "anonymize.enabled=false",
                ],
                [
                    "--pipeline",
                    "training",
                    "--set",
                    f"train.epochs={epochs[name]}",
                    "--set",
                    f"model.name={model}",
                ],
            ]
            for argv in steps:
                if run.main(argv) != 0:
                    raise SystemExit(f"{name}: run.py {' '.join(argv)} failed")
            configure_tracking()
            from mlflow.tracking import MlflowClient

            champion = Champion.lookup(model)
            if champion is None:
                raise SystemExit(f"{name}: the training pipeline promoted no model")
            tags = MlflowClient().get_run(champion.run_id).data.tags
            rows.append((name, epochs[name], tags))
    finally:
        shutil.rmtree(state, ignore_errors=True)

    print(
        f"\n{datetime.date.today()}, {os.cpu_count()} CPU cores, each task's bundled "
        "sample, configs/training.yaml, test split, ONNX Runtime\n"
    )
    print(
        "| task (epochs) | metric | FP32 | INT8 | drop | FP32 ms | INT8 ms "
        "| INT8 speed-up | served |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
    )
    for name, count, tags in rows:
        fp32, int8 = (float(tags[f"quantization.{k}_score"]) for k in ("fp32", "int8"))
        fast, slow = (
            float(tags[f"quantization.{k}_latency_ms"]) for k in ("int8", "fp32")
        )
        print(
            f"| {name} ({count}) | {tags['quantization.metric']} | {fp32:.4f} | "
            f"{int8:.4f} | {fp32 - int8:+.4f} | {slow:.2f} | {fast:.2f} | "
            f"{slow / fast:.2f}x | {tags['precision']} |"
        )
    for name, _, tags in rows:
        print(f"{name}: {tags['quantization.reason']}")


if __name__ == "__main__":
    main()
