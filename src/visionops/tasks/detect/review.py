"""Detection's labelling batch: YOLO `images/` + `labels/` + `data.yaml`, boxes."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from visionops.engine.review import CLASSES_TXT, PreLabel, ReviewExport, normalised
from visionops.tasks.detect.layout import DATA_YAML

# One `train` subset: what CVAT's Ultralytics YOLO import needs
# (`images/<subset>/` or `<subset>/images/`), and `train/` holds what Label
# Studio's YOLO converter reads (`images/`, `labels/`, `classes.txt`).
SUBSET = "train"
IMAGES = f"{SUBSET}/images"
LABELS = f"{SUBSET}/labels"


class DetectReview(ReviewExport):
    """Each image in `train/images/`, its boxes as YOLO lines (`class cx cy w
    h`, normalised) in `train/labels/`; `data.yaml` and `train/classes.txt`
    name the classes.

    The folder is what the YOLO source ingests and what CVAT imports
    (Ultralytics YOLO, zipped); `train/` is what Label Studio's YOLO converter
    reads.
    """

    # The list in the task's answer and the key of one object's outline (None:
    # boxes only).
    objects_key = "detections"

    @classmethod
    def prelabels(cls, predictions: Mapping[str, Any]) -> list[PreLabel]:
        """One pre-label per object of the answer, its box in pixels."""
        found = []
        for obj in predictions.get(cls.objects_key) or []:
            box = obj["box"]
            found.append(
                PreLabel(
                    class_name=str(obj["class_name"]),
                    confidence=float(obj["confidence"]),
                    class_id=int(obj["class_id"]),
                    box=(
                        float(box["x1"]),
                        float(box["y1"]),
                        float(box["x2"]),
                        float(box["y2"]),
                    ),
                    polygon=cls._polygon(obj),
                )
            )
        return found

    @staticmethod
    def _polygon(obj: Mapping[str, Any]) -> tuple[tuple[float, float], ...] | None:
        return None

    def add(
        self,
        image: Path,
        name: str,
        prelabels: Sequence[PreLabel],
        size: tuple[int, int],
    ) -> Path:
        """Copies the image to `train/images/` and writes its label file."""
        placed = self.root / IMAGES / name
        # A copy: the store's image stays as it was whatever the labeller does.
        placed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, placed)
        label = self.root / LABELS / f"{Path(name).stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        lines = [self.line(p, size) for p in prelabels]
        label.write_text("".join(f"{line}\n" for line in lines))
        return placed

    def line(self, prelabel: PreLabel, size: tuple[int, int]) -> str:
        """One YOLO box line: class id, centre, width and height, normalised."""
        assert prelabel.box is not None
        x1, y1 = normalised(*prelabel.box[:2], size)
        x2, y2 = normalised(*prelabel.box[2:], size)
        cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
        return f"{self.class_id(prelabel.class_name)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"

    def finish(self) -> None:
        """Writes `data.yaml` (names in id order, `train: train/images`) and
        `train/classes.txt`."""
        data = {
            "names": dict(enumerate(self.class_names)),
            "nc": len(self.class_names),
            # Relative, no `path:`: the folder can be zipped and moved.
            "train": IMAGES,
        }
        (self.root / SUBSET).mkdir(parents=True, exist_ok=True)
        (self.root / DATA_YAML).write_text(yaml.safe_dump(data, sort_keys=False))
        (self.root / SUBSET / CLASSES_TXT).write_text(
            "".join(f"{n}\n" for n in self.class_names)
        )
