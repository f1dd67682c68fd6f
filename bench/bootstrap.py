"""Paired bootstrap of mAP50-95 on a synthetic 500-image detection test split.

Usage: python bench/bootstrap.py [--images 500] [--resamples 1000] [--rounds 3]

Two synthetic detectors (a stronger and a weaker one) are "evaluated" on the
same images, with per-image matches shaped as Ultralytics' validator keeps
them (`visionops.tasks.detect.resample`): 1 to 5 targets of 3 classes per
image, each found target a true positive up to its IoU, plus 0 to 7 unmatched
low-confidence boxes. The script times `compare_reports` (the promotion's
paired bootstrap: both models on every resample, mAP50-95 recomputed by the
vectorised AP) and, interleaved in the same rounds, the reference it must
equal: Ultralytics' `ap_per_class` on each resample's images concatenated, for
`--reference` resamples (extrapolated to all). Best of `--rounds`; it prints
wall and CPU seconds, the goal (1,000 resamples of 500 images under 2 s on 2
cores) and the speed-up over the reference, and checks that both agree.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from visionops.engine.bootstrap import PerImage, compare_reports  # noqa: E402
from visionops.engine.report import EvalReport  # noqa: E402
from visionops.tasks import get_task  # noqa: E402
from visionops.tasks.detect.resample import Matches, tp_bits  # noqa: E402

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def detections(images: int, skill: float, seed: int) -> PerImage:
    """Per-image matches of a detector that finds `skill` of the targets."""
    rng = np.random.default_rng(seed)
    values: dict[str, list] = {"tp": [], "conf": [], "pred_cls": [], "target_cls": []}
    for _ in range(images):
        targets = rng.integers(0, 3, int(rng.integers(1, 6)))
        found = targets[rng.random(len(targets)) < skill]
        junk = int(rng.integers(0, 8))
        tp = np.zeros((len(found) + junk, 10), bool)
        tp[: len(found)] = rng.uniform(0.4, 1.0, len(found))[:, None] >= THRESHOLDS
        conf = [*rng.uniform(0.3, 1.0, len(found)), *rng.uniform(0.0, 0.6, junk)]
        values["tp"].append(tp_bits(tp))
        values["conf"].append(conf)
        values["pred_cls"].append([*found.tolist(), *rng.integers(0, 3, junk)])
        values["target_cls"].append(targets.tolist())
    return PerImage(images=[f"{i}.jpg" for i in range(images)], values=values)


def report(per_image: PerImage) -> EvalReport:
    """An evaluation report holding only what the bootstrap reads."""
    return EvalReport(
        task="detect",
        split="test",
        dataset_hash="0" * 64,
        weights_sha256="",
        imgsz=640,
        images=len(per_image.images),
        metrics={},
        per_class=[],
        class_names=["a", "b", "c"],
        confusion_matrix=[],
        per_image=per_image,
    )


def timed(work):
    """(result, wall seconds, CPU seconds) of `work()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Times the bootstrap and its reference, interleaved, and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--reference", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    task = get_task("detect")
    challenger = report(detections(args.images, 0.7, seed=1))
    champion = report(detections(args.images, 0.6, seed=2))
    matches = [Matches(r.per_image) for r in (challenger, champion)]
    draws = np.random.default_rng(0).integers(
        0, args.images, (args.reference, args.images)
    )
    boxes = sum(len(c) for c in challenger.per_image.values["conf"])
    print(
        f"{args.images} images, {boxes} + "
        f"{sum(len(c) for c in champion.per_image.values['conf'])} boxes, "
        f"{args.resamples} resamples, {os.cpu_count()} cores, "
        f"{datetime.date.today()}"
    )

    def bootstrap():
        return compare_reports(
            task, challenger, champion, "map50_95", resamples=args.resamples
        )[0]

    def reference():
        return [
            [float(m.ultralytics(draw)[5].mean()) for m in matches] for draw in draws
        ]

    best = {"bootstrap": (np.inf, np.inf), "reference": (np.inf, np.inf)}
    for _ in range(args.rounds):
        interval, wall, cpu = timed(bootstrap)
        best["bootstrap"] = min(best["bootstrap"], (wall, cpu))
        expected, wall, cpu = timed(reference)
        scale = args.resamples / args.reference
        best["reference"] = min(best["reference"], (wall * scale, cpu * scale))
    # The same resamples through both: the vectorised AP is Ultralytics' AP.
    ours = [m.average_precision(draws)[0].mean(axis=(1, 2)) for m in matches]
    worst = float(np.abs(np.array(ours).T - np.array(expected)).max())
    wall, cpu = best["bootstrap"]
    ref_wall, ref_cpu = best["reference"]
    print(f"interval: {interval.text()}")
    print("| what | wall s | CPU s | vs reference |")
    print("|---|---:|---:|---:|")
    print(
        f"| paired bootstrap, both models (goal < 2 s) | {wall:.2f} | {cpu:.2f} | "
        f"{ref_wall / wall:.1f}x faster |"
    )
    print(
        f"| `ap_per_class` per resample (x{scale:g} of {args.reference}) | "
        f"{ref_wall:.2f} | {ref_cpu:.2f} | 1.0x |"
    )
    print(f"largest AP difference from ap_per_class: {worst:.1e}")
    print(
        "goal met" if wall < 2 else "goal NOT met (wall; compare CPU on a busy machine)"
    )


if __name__ == "__main__":
    main()
