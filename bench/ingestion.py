"""Ingestion throughput: images/s with 1 worker vs all workers, side by side in one run.

Usage: python bench/ingestion.py [SOURCE] [--repeat N]
(default SOURCE: ../shared/datasets/roboflow-boards, else the bundled sample)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import visionops  # noqa: E402, F401
from visionops.core.parallel import resolve_workers  # noqa: E402
from visionops.data.anonymize import AnonymizeSettings, anonymize_dataset  # noqa: E402
from visionops.data.sources import stage_source  # noqa: E402
from visionops.data.validate import ValidationSettings, validate_dataset  # noqa: E402
from visionops.engine.task import Task  # noqa: E402
from visionops.tasks import get_task, ingestion_tasks  # noqa: E402


def _time_stages(
    staged: Path, workers: int, scratch: Path, task: Task
) -> dict[str, float]:
    """Runs validation and anonymisation once; returns seconds per stage."""
    out = Path(tempfile.mkdtemp(dir=scratch))
    t0 = time.perf_counter()
    validate_dataset(
        staged, out / "validated", ValidationSettings(), workers=workers, task=task
    )
    t1 = time.perf_counter()
    anonymize_dataset(
        out / "validated", out / "anonymized", AnonymizeSettings(), workers=workers
    )
    t2 = time.perf_counter()
    shutil.rmtree(out)
    return {"validate": t1 - t0, "anonymize": t2 - t1, "total": t2 - t0}


def main() -> None:
    """Prints images/s per stage for 1 worker and all workers, and the speed-up."""
    default = ROOT.parent / "shared" / "datasets" / "roboflow-boards"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        nargs="?",
        default=str(default if default.is_dir() else ROOT / "data/sample/boards"),
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs per setting; the best counts"
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench-ingestion-"))
    try:
        manifest = stage_source(
            args.source, scratch / "staged", tasks=ingestion_tasks()
        )
        task = get_task(manifest.task)
        n = len(manifest.items)
        all_workers = resolve_workers("auto")
        settings = sorted({1, all_workers})
        best: dict[int, dict[str, float]] = {}
        for _ in range(
            args.repeat
        ):  # interleaved, so both settings see the same machine load
            for workers in settings:
                times = _time_stages(scratch / "staged", workers, scratch, task)
                best[workers] = {
                    k: min(v, best.get(workers, {}).get(k, v)) for k, v in times.items()
                }
        print(f"source: {args.source} ({n} images), best of {args.repeat}")
        print(
            f"{'stage':<10}"
            + "".join(f"{f'{w} worker(s) img/s':>22}" for w in settings)
            + f"{'speed-up':>10}"
        )
        for stage in ("validate", "anonymize", "total"):
            rates = [n / best[w][stage] for w in settings]
            print(
                f"{stage:<10}"
                + "".join(f"{r:>22.1f}" for r in rates)
                + f"{rates[-1] / rates[0]:>9.2f}x"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
