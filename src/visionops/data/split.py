"""Seeded, group-aware, class-stratified train/val/test split."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, Field

from visionops.data.manifest import Item, Manifest, group_key

SPLITS = ("train", "val", "test")


class SplitPlan(BaseModel):
    """Which split every item goes to, and what each split ends up holding.

    Attributes:
        assignment: Split of every item id.
        images: Images per split.
        groups: Groups per split.
        boxes_per_class: Boxes per class name and split (detection labels;
            zero for a classification dataset).
        images_per_class: Images holding each class, per split.
        fractions: The requested share of images per split.
        achieved: The share of images each split got.
        seed: Seed of the tie-breaking shuffle.
        group_by: The group expression used (None: the Roboflow stem).
        kept: Items whose split was given (`fixed`: a merge keeps its parent's).
    """

    assignment: dict[str, str]
    images: dict[str, int]
    groups: dict[str, int]
    boxes_per_class: dict[str, dict[str, int]]
    images_per_class: dict[str, dict[str, int]] = Field(default_factory=dict)
    fractions: dict[str, float]
    achieved: dict[str, float] = Field(default_factory=dict)
    seed: int
    group_by: str | None = None
    kept: int = 0


def item_group(item: Item, group_by: str | None = None) -> str:
    """The split group of a staged item: `group_by`'s match in its source file
    name, else the group staging gave it (the Roboflow stem)."""
    return group_key(Path(item.source).name, group_by) if group_by else item.group


def label_classes(label_path: Path) -> Counter[int]:
    """Counts the boxes per class id in a (validated) YOLO label file."""
    counts: Counter[int] = Counter()
    for line in label_path.read_text().splitlines():
        if line.strip():
            counts[int(float(line.split()[0]))] += 1
    return counts


def plan_split(
    root: Path,
    fractions: dict[str, float],
    seed: int,
    group_by: str | None = None,
    fixed: Mapping[str, str] | None = None,
) -> SplitPlan:
    """Assigns every item of a validated staged dataset to train, val or test.

    Items of one group (augmented copies of one photo, X-rays of one patient)
    always share a split, so the test score never sees a near-copy of a
    training image. Two passes place the groups:

    1. Coverage: rarest class first, each split lacking a class gets the
       smallest unplaced group holding it that still fits the split's image
       target, while the class has a group left for every split.
    2. Size: the other groups, largest first, each go to a split they still
       fit in (the one needing their classes most), else to the split furthest
       below its target. Large groups first, single images last, is what
       brings every split to its target share.

    A seeded shuffle breaks ties deterministically.

    With `fixed` (a merge: the parent version's items), those items keep their
    split and the others go to train and val only, so the test split stays the
    parent's; train and val then aim at their share of what test leaves. A new
    item whose group holds fixed items joins their split.

    Args:
        root: A staged dataset directory (after validation).
        fractions: Target share of images per split, e.g. {"train": 0.7, ...}.
        seed: Seed of the tie-breaking shuffle.
        group_by: A regular expression over the file name whose match names
            the group; None keeps the staged group (the Roboflow stem).
        fixed: The split of items already placed (item id -> split).

    Returns:
        The plan, with per-split image, group, class counts and the shares met.

    Raises:
        ValueError: A fixed split is unknown, or a new item's group is fixed in
            test (a merge leaves such items out first).
    """
    manifest = Manifest.read(root)
    names = manifest.class_names
    fixed = dict(fixed or {})
    splits = [s for s in SPLITS if fractions.get(s, 0) > 0]
    # A merge adds to train and val; its test split is the parent's.
    open_splits = [s for s in splits if s != "test"] if fixed else splits
    unknown = sorted(set(fixed.values()) - set(SPLITS))
    if unknown:
        raise ValueError(f"fixed splits {unknown} are not {'/'.join(SPLITS)}")

    group_items: dict[str, list[str]] = defaultdict(list)
    group_boxes: dict[str, Counter[int]] = defaultdict(Counter)
    group_images: dict[str, Counter[int]] = defaultdict(Counter)  # images per class
    item_boxes: dict[str, Counter[int]] = {}
    item_images: dict[str, Counter[int]] = {}
    for item in manifest.items:
        group = item_group(item, group_by)
        group_items[group].append(item.id)
        found: Counter[int] = Counter()
        if item.class_id is not None:
            classes = Counter({item.class_id: 1})
        elif item.label:
            found = label_classes(root / item.label)
            classes = Counter(dict.fromkeys(found, 1))
        else:
            classes = Counter()
        item_boxes[item.id], item_images[item.id] = found, classes
        group_boxes[group].update(found)
        group_images[group].update(classes)

    total = len(manifest.items)
    target = {s: fractions[s] * total for s in splits}
    if fixed:
        held = Counter(fixed[i] for i in item_boxes if i in fixed)
        share = sum(fractions[s] for s in open_splits)
        left = total - held["test"]
        target = {s: fractions[s] / share * left for s in open_splits}
        target["test"] = held["test"]
    class_totals: Counter[int] = Counter()  # images holding each class
    class_groups: Counter[int] = Counter()  # groups holding each class
    for counts in group_images.values():
        class_totals.update(counts)
        class_groups.update(counts.keys())

    order = sorted(group_items)
    random.Random(seed).shuffle(order)
    rank = {group: index for index, group in enumerate(order)}
    placed: Counter[str] = Counter()
    placed_classes: dict[str, Counter[int]] = {s: Counter() for s in splits}
    split_of: dict[str, str] = {}

    def place(group: str, split: str) -> None:
        split_of[group] = split
        placed[split] += len(group_items[group])
        placed_classes[split].update(group_images[group])

    def fits(group: str, split: str) -> bool:
        return len(group_items[group]) <= target[split] - placed[split] + 0.5

    for group in order:  # a group holding fixed items goes where they are
        held_in = sorted({fixed[i] for i in group_items[group] if i in fixed})
        if not held_in:
            continue
        if any(i not in fixed for i in group_items[group]) and "test" in held_in:
            raise ValueError(
                f"group {group!r} is in the fixed test split; leave its new items out"
            )
        place(group, held_in[0])

    for cls in sorted(class_groups, key=lambda c: (class_groups[c], c)):
        if class_groups[cls] < len(splits):
            continue  # Too few groups for every split: pass 2 places them.
        holders = sorted(
            (g for g in order if cls in group_images[g]),
            key=lambda g: (len(group_items[g]), rank[g]),
        )
        for split in sorted(open_splits, key=lambda s: target[s]):
            if placed_classes[split][cls]:
                continue
            free = [g for g in holders if g not in split_of and fits(g, split)]
            if free:
                place(free[0], split)

    def need(group: str, split: str) -> float:
        # Share of each of the group's classes the split still lacks.
        return sum(
            (fractions[split] * class_totals[c] - placed_classes[split][c])
            / class_totals[c]
            for c in group_images[group]
        )

    rest = sorted(
        (g for g in order if g not in split_of),
        key=lambda g: (-len(group_items[g]), rank[g]),
    )
    for group in rest:
        room = [s for s in open_splits if fits(group, s)]
        if room:
            best = max(
                room, key=lambda s: (round(need(group, s), 9), target[s] - placed[s])
            )
        else:
            best = max(open_splits, key=lambda s: target[s] - placed[s])
        place(group, best)

    assignment = {
        item_id: fixed.get(item_id, split_of[group])
        for group, ids in group_items.items()
        for item_id in ids
    }
    boxes: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    per_class: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    group_count: Counter[str] = Counter()
    for ids in group_items.values():
        group_count.update({assignment[i] for i in ids})
        for item_id in ids:
            split = assignment[item_id]
            for cls, n in item_boxes[item_id].items():
                boxes[split][names[cls]] += n
            for cls, n in item_images[item_id].items():
                per_class[split][names[cls]] += n
    images = {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS}
    return SplitPlan(
        assignment={i.id: assignment[i.id] for i in manifest.items},
        images=images,
        groups={s: group_count[s] for s in SPLITS},
        boxes_per_class={s: {name: boxes[s][name] for name in names} for s in SPLITS},
        images_per_class={
            s: {name: per_class[s][name] for name in names} for s in SPLITS
        },
        fractions={s: fractions.get(s, 0.0) for s in SPLITS},
        achieved={s: round(images[s] / total, 4) if total else 0.0 for s in SPLITS},
        seed=seed,
        group_by=group_by,
        kept=sum(1 for i in item_boxes if i in fixed),
    )
