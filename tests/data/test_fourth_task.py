"""A fourth task is one folder plus one registry line: data/ and config.py unchanged.

The toy `tag` task (tests/plugins/tag_task) keeps image-level classes as
`<split>/<image>` plus a `tags/<split>/<stem>.txt` naming the class, a layout no
other task has (the `count` task of tests/tasks/test_fourth_task.py is another).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.plugin_tasks import registered
from visionops import tasks
from visionops.config import load_parameters
from visionops.data.anonymize import FaceReport
from visionops.data.report import dataset_html
from visionops.data.sources import SourceError, stage_source
from visionops.data.split import plan_split
from visionops.data.validate import ValidationSettings, validate_dataset
from visionops.data.version import build_dataset_version, content_hash


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 40, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def tag_task():
    """The toy `tag` task (tests/plugins/tag_task), registered by one REGISTRY line."""
    with registered("tag") as task:
        yield task


def test_a_new_task_folder_is_ingested_without_touching_data(tag_task, tmp_path):
    export = tmp_path / "export"
    for c, name in enumerate(("cat", "dog")):
        for i in range(10):
            path = export / name / f"{name}{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_jpeg(100 * c + i))
    (export / "dog" / "broken.jpg").write_bytes(b"<html>not found</html>")

    params = load_parameters("ingestion", overrides=["task=tag"])
    manifest = stage_source(
        export, tmp_path / "staged", tasks=tasks.ingestion_tasks(params.task)
    )
    assert manifest.task == "tag"
    report = validate_dataset(
        tmp_path / "staged", tmp_path / "valid", ValidationSettings(), task=tag_task
    )
    assert report.counts_by_reason() == {"unreadable": 1}
    plan = plan_split(tmp_path / "valid", {"train": 0.6, "val": 0.2, "test": 0.2}, 0)
    version = build_dataset_version(
        tmp_path / "valid",
        plan,
        tmp_path / "dataset",
        validation=report,
        faces=FaceReport(images=0, images_with_faces=0, faces=0),
        task=tag_task,
    )
    card = version.card
    assert version.task == "tag" and card["accepted"] == 20
    assert card["hash"] == content_hash(version.root, ("train", "val", "test", "tags"))
    images = [
        p for s in ("train", "val", "test") for p in tag_task.split_images(version, s)
    ]
    assert len(images) == 20
    folder_of = {i.id: Path(i.source).parent.name for i in manifest.items}
    tags = {p.stem: tag_task.layout.image_class(version.root, p) for p in images}
    assert tags == {stem: folder_of[stem] for stem in tags}
    assert set(tags.values()) == {"cat", "dog"}
    page = dataset_html(version, tag_task)
    assert "Images per class" in page and page.count("<figure>") >= 3


def test_a_task_refuses_labels_it_does_not_take(tag_task, sample_dir, tmp_path):
    with pytest.raises(SourceError, match="boxes or polygons, which a tag dataset"):
        stage_source(sample_dir, tmp_path / "staged", tasks=[tag_task])
