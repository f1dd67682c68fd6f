"""A drift report over 1,000 prediction records, as `--pipeline drift` makes it.

Usage: python bench/drift.py [--records 1000] [--reference 200] [--rounds 3]

Synthetic feature records shaped as a one-class detector's (`feedback.features`:
the five image features, detections, confidences, the class count, the top
class and 32 embedding components): a reference of `--reference` val and test
images and `--records` current ones, shifted in brightness and embedding so the
verdict is `drift`. The script times `write_report` (Evidently's per-column
tests, the checks, `drift.html` and `drift.json` written) after one warm-up
that pays Evidently's import; best of `--rounds`, wall and CPU seconds, against
the goal (1,000 records under 10 s on these 2 cores).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from visionops.config import DriftSettings  # noqa: E402
from visionops.feedback.drift import write_report  # noqa: E402
from visionops.feedback.features import (  # noqa: E402
    EMBEDDING_DIMS,
    Pca,
    Reference,
    embedding_columns,
)

GOAL_S = 10.0


def records(count: int, shift: float, seed: int, split: str | None = None) -> list:
    """Feature records of `count` images, `shift` moving look and embedding."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        found = int(rng.poisson(2))
        confidence = float(rng.uniform(0.3, 0.95)) if found else 0.0
        row = {
            "width": 640.0,
            "height": float(rng.choice([480, 640])),
            "brightness": float(rng.normal(0.5 + shift, 0.1)),
            "contrast": float(rng.normal(0.2, 0.05)),
            "sharpness": float(rng.gamma(4, 100)),
            "detections": float(found),
            "confidence": confidence,
            "confidence_mean": confidence * 0.8,
            "top_class": "board" if found else "none",
            "count_board": float(found),
            "emb_residual": float(rng.gamma(2, 1)),
        }
        vector = rng.normal(shift, 1, EMBEDDING_DIMS)
        row.update(zip(embedding_columns(EMBEDDING_DIMS), vector.tolist(), strict=True))
        if split:
            row["split"] = split
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--reference", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    half = args.reference // 2
    pca = Pca(
        np.zeros(EMBEDDING_DIMS, np.float32), np.eye(EMBEDDING_DIMS, dtype=np.float32)
    )
    reference = Reference(
        "detect",
        ["board"],
        pca,
        records(half, 0.0, 1, "val") + records(args.reference - half, 0.0, 2, "test"),
    )
    current = records(args.records, 0.3, 3)
    settings = DriftSettings()
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        write_report(current[:50], reference, settings, Path(tmp) / "warm")
        best_wall, best_cpu, verdict = float("inf"), float("inf"), None
        for index in range(args.rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            result = write_report(current, reference, settings, Path(tmp) / str(index))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
            verdict = f"{result.verdict} ({', '.join(result.drifted)})"
    print(
        f"drift report, {args.records} records vs {args.reference} reference images "
        f"({os.cpu_count()} cores, {datetime.date.today()}): best of {args.rounds} "
        f"{best_wall:.2f} s wall, {best_cpu:.2f} s CPU; goal < {GOAL_S:.0f} s: "
        f"{'met' if best_wall < GOAL_S else 'MISSED'}; verdict {verdict}"
    )


if __name__ == "__main__":
    main()
