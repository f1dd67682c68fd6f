"""Seeded, group-aware, class-stratified train/val/test split."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

from pydantic import BaseModel

from visionops.data.manifest import Manifest

SPLITS = ("train", "val", "test")


class SplitPlan(BaseModel):
    """Which split every item goes to, and what each split ends up holding."""

    assignment: dict[str, str]
    images: dict[str, int]
    groups: dict[str, int]
    boxes_per_class: dict[str, dict[str, int]]
    fractions: dict[str, float]
    seed: int


def label_classes(label_path: Path) -> Counter[int]:
    """Counts the boxes per class id in a (validated) YOLO label file."""
    counts: Counter[int] = Counter()
    for line in label_path.read_text().splitlines():
        if line.strip():
            counts[int(float(line.split()[0]))] += 1
    return counts


def plan_split(root: Path, fractions: dict[str, float], seed: int) -> SplitPlan:
    """Assigns every item of a validated staged dataset to train, val or test.

    Items of one group (augmented copies of one photo) always share a split, so
    the test score never sees a near-copy of a training image. Groups are placed
    greedily, rarest class first, into the split furthest below its target share
    of that class, then of images; a seeded shuffle breaks ties deterministically.

    Args:
        root: A staged dataset directory (after validation).
        fractions: Target share of images per split, e.g. {"train": 0.7, ...}.
        seed: Seed of the tie-breaking shuffle.

    Returns:
        The plan, with per-split image, group and box counts.
    """
    manifest = Manifest.read(root)
    names = manifest.class_names
    splits = [s for s in SPLITS if fractions.get(s, 0) > 0]

    group_items: dict[str, list[str]] = defaultdict(list)
    group_boxes: dict[str, Counter[int]] = defaultdict(Counter)
    group_images: dict[str, Counter[int]] = defaultdict(Counter)  # images per class
    for item in manifest.items:
        group_items[item.group].append(item.id)
        if item.label:
            boxes = label_classes(root / item.label)
            group_boxes[item.group].update(boxes)
            group_images[item.group].update(dict.fromkeys(boxes, 1))

    total_images = len(manifest.items)
    class_totals: Counter[int] = Counter()  # images holding each class
    for counts in group_images.values():
        class_totals.update(counts)

    groups = sorted(group_items)
    random.Random(seed).shuffle(groups)
    # Rarest class first, bigger groups first: the hard-to-place groups choose
    # while every split still has room.
    groups.sort(
        key=lambda g: (
            min((class_totals[c] for c in group_images[g]), default=total_images + 1),
            -len(group_items[g]),
        )
    )

    placed_images: Counter[str] = Counter()
    placed_classes: dict[str, Counter[int]] = {s: Counter() for s in splits}
    assignment: dict[str, str] = {}
    for group in groups:
        size = len(group_items[group])
        classes = group_images[group]

        def need(split: str, classes: Counter[int] = classes) -> tuple:
            # Class need first (iterative stratification), image need breaks ties;
            # both counted in images, since groups differ in size.
            class_gap = sum(
                (fractions[split] * class_totals[c] - placed_classes[split][c])
                / class_totals[c]
                for c in classes
            )
            image_gap = fractions[split] * total_images - placed_images[split]
            return round(class_gap, 9), image_gap, fractions[split]

        best = max(splits, key=need)
        placed_images[best] += size
        placed_classes[best].update(classes)
        for item_id in group_items[group]:
            assignment[item_id] = best

    boxes: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    group_count: Counter[str] = Counter()
    for group, ids in group_items.items():
        split = assignment[ids[0]]
        group_count[split] += 1
        for cls, n in group_boxes[group].items():
            boxes[split][names[cls]] += n
    return SplitPlan(
        assignment={i.id: assignment[i.id] for i in manifest.items},
        images={s: sum(1 for v in assignment.values() if v == s) for s in SPLITS},
        groups={s: group_count[s] for s in SPLITS},
        boxes_per_class={s: {name: boxes[s][name] for name in names} for s in SPLITS},
        fractions={s: fractions.get(s, 0.0) for s in SPLITS},
        seed=seed,
    )
