"""Hostile and broken exports: quarantined and counted, or one SourceError line.

Every case is staged and validated at library level and must end either with
`items in = accepted + quarantined` or with a `SourceError`; no other exception,
and no byte of a sentinel file outside the export in the staged or validated
dataset. A seeded, bounded batch of random mutations of a good export follows,
and the pre-run check of `run.py` answers exit 2 for refused zips.
"""

from __future__ import annotations

import io
import json
import os
import random
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionops.data.manifest import safe_id
from visionops.data.sources import ArchiveLimits, SourceError, stage_source
from visionops.data.split import plan_split
from visionops.data.validate import ValidationSettings, validate_dataset
from visionops.tasks import get_task, ingestion_tasks

SECRET = b"SENTINEL-outside-the-export-4f1c"


def _jpeg(seed: int, marker: bytes = b"") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (24, 32, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue() + marker  # bytes after EOI are cut by validation


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder beside the export holding files no ingestion may read."""
    folder = tmp_path / "outside"
    # A real image whose bytes carry the sentinel, and a plain secret file.
    _write(folder / "images" / "stolen.jpg", _jpeg(99) + SECRET)
    _write(folder / "labels" / "stolen.txt", "0 0.5 0.5 0.2 0.2\n")
    _write(folder / "secret.txt", SECRET)
    return folder


def _yolo(root: Path, n: int = 3, split: str = "train") -> Path:
    for i in range(n):
        _write(root / split / "images" / f"img{i}.jpg", _jpeg(i))
        _write(root / split / "labels" / f"img{i}.txt", "0 0.5 0.5 0.2 0.2\n")
    _write(root / "data.yaml", "names: [thing]\ntrain: train/images\n")
    return root


def _coco(root: Path, doc: dict) -> Path:
    _write(root / "images" / "a.jpg", _jpeg(1))
    _write(root / "images" / "b.jpg", _jpeg(2))
    _write(root / "annotations.json", json.dumps(doc))
    return root


def _coco_doc(**changes) -> dict:
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 32, "height": 24},
            {"id": 2, "file_name": "b.jpg", "width": 32, "height": 24},
        ],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [4, 4, 10, 10]},
        ],
    }
    doc.update(changes)
    return doc


def _zip(root: Path, archive: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            # zipfile would store a link's target bytes: the archive's own content.
            if path.is_file() and not path.is_symlink():
                zf.write(path, path.relative_to(root).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


def _ingest(source: Path, work: Path, **kwargs) -> dict:
    """Stages and validates; returns what happened, never raising but SourceError."""
    try:
        manifest = stage_source(
            source,
            work / "staged",
            cache_dir=work / "c",
            tasks=ingestion_tasks(),
            **kwargs,
        )
    except SourceError as err:
        message = str(err)
        assert message.strip() and "Traceback" not in message
        return {"error": message}
    report = validate_dataset(
        work / "staged",
        work / "validated",
        ValidationSettings(keep_background=True),
        task=get_task(manifest.task),
    )
    assert report.items_in == len(manifest.items)
    assert report.items_in == report.accepted + len(report.quarantined)
    for folder in (work / "staged", work / "validated"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET not in path.read_bytes(), f"{path} holds outside bytes"
    if report.accepted:  # what validation accepts, later stages read
        plan = plan_split(work / "validated", {"train": 0.8, "val": 0.2}, 0)
        assert sum(plan.images.values()) == report.accepted
    accepted = {i.id for i in _manifest_items(work / "validated")}
    assert not any(i.startswith(".") for i in accepted)  # Ultralytics skips those
    return {"report": report, "manifest": manifest}


def _manifest_items(root: Path):
    from visionops.data.manifest import Manifest

    return Manifest.read(root).items


def _reasons(result: dict) -> dict[str, str]:
    return {q.source: q.reason for q in result["report"].quarantined}


# --- one named case per bullet of the issue ------------------------------------


def test_bom_label_is_accepted_as_written(tmp_path):
    root = _yolo(tmp_path / "export")
    _write(root / "train/labels/img0.txt", b"\xef\xbb\xbf0 0.5 0.5 0.2 0.2\n")
    result = _ingest(root, tmp_path / "w")
    assert result["report"].accepted == 3
    label = tmp_path / "w/validated/labels/train__images__img0.txt"
    assert label.read_bytes() == b"0 0.5 0.5 0.2 0.2\n"
    assert result["report"].counts_by_fix() == {"label_bom_removed": 1}


def _bad_crc_zip(tmp_path: Path) -> Path:
    """A zip whose member `train/images/img1.jpg` fails its CRC when read."""
    archive = _zip(_yolo(tmp_path / "export"), tmp_path / "bad.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("train/images/img1.jpg")
    # Flip a byte of the member's data (after its 30-byte local header + name).
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 5
    data[start] ^= 0xFF
    archive.write_bytes(bytes(data))
    return archive


def test_zip_member_with_bad_crc_is_one_error(tmp_path):
    archive = _bad_crc_zip(tmp_path)
    result = _ingest(archive, tmp_path / "w")
    assert "bad.zip" in result["error"] and "img1.jpg" in result["error"]


@pytest.mark.parametrize(
    "doc",
    [
        _coco_doc(annotations={"1": {"image_id": 1}}),
        _coco_doc(images=[{"id": 1, "file_name": "a.jpg"}, "b.jpg"]),
        _coco_doc(images=[{"id": [1], "file_name": "a.jpg"}]),
        _coco_doc(
            annotations=[{"id": 1, "image_id": [1], "category_id": 1, "bbox": [1]}]
        ),
        _coco_doc(categories=[{"id": {"x": 1}, "name": "thing"}]),
        _coco_doc(annotations=["not an annotation"]),
    ],
    ids=[
        "annotations-dict",
        "image-string",
        "list-id",
        "list-image-id",
        "dict-category-id",
        "annotation-string",
    ],
)
def test_malformed_coco_is_one_error(tmp_path, doc):
    result = _ingest(_coco(tmp_path / "export", doc), tmp_path / "w")
    assert "annotations.json" in result["error"]


@pytest.mark.parametrize(
    "images",
    [
        [{"id": 1, "file_name": ""}, {"id": 2, "file_name": "b.jpg"}],
        [{"id": 1, "file_name": None}, {"id": 2, "file_name": "b.jpg"}],
        [{"id": 1, "file_name": 7}, {"id": 2, "file_name": "b.jpg", "width": "x"}],
    ],
    ids=["empty", "null", "number"],
)
def test_coco_without_usable_file_name_is_quarantined(tmp_path, images):
    result = _ingest(
        _coco(tmp_path / "export", _coco_doc(images=images)), tmp_path / "w"
    )
    assert result["report"].items_in == 2
    assert len(result["report"].quarantined) >= 1


def test_coco_file_names_never_leave_the_export(tmp_path, outside):
    stolen = outside / "images" / "stolen.jpg"
    climbing = os.path.relpath(stolen, tmp_path / "export")
    doc = _coco_doc(
        images=[
            {"id": 1, "file_name": str(stolen)},
            {"id": 2, "file_name": climbing},
            {"id": 3, "file_name": "/etc/hostname"},
            {"id": 4, "file_name": "a.jpg"},
        ]
    )
    result = _ingest(_coco(tmp_path / "export", doc), tmp_path / "w")
    assert result["report"].items_in == 4
    assert result["report"].accepted == 1  # only a.jpg, which is in the export
    # Quarantined for the real reason, as placeholders named by their entry.
    assert sorted(_reasons(result).values()) == ["outside_export"] * 3
    staged = [p.name for p in (tmp_path / "w/staged/images").iterdir()]
    assert not [n for n in staged if "stolen" in n or "hostname" in n], staged
    details = [q.detail for q in result["report"].quarantined]
    assert any("/etc/hostname" in d for d in details), details


@pytest.mark.parametrize("how", ["absolute", "climbing", "path-key"])
def test_data_yaml_in_zip_never_reads_the_host(tmp_path, outside, how):
    root = _yolo(tmp_path / "export")
    target = outside / "images"
    yaml_text = {
        "absolute": f"names: [thing]\ntrain: {target}\n",
        "climbing": "names: [thing]\ntrain: ../../../../../../../../"
        + str(target).lstrip("/")
        + "\n",
        "path-key": f"names: [thing]\npath: {outside}\ntrain: images\n",
    }[how]
    _write(root / "data.yaml", yaml_text)
    archive = _zip(root, tmp_path / "export.zip")
    result = _ingest(archive, tmp_path / "w")
    if "error" in result:
        assert "does not exist inside the export" in result["error"]
    else:
        assert all("stolen" not in i.source for i in result["manifest"].items)


def test_links_out_of_the_export_are_quarantined_unread(tmp_path, outside):
    root = _yolo(tmp_path / "export")
    # A file link and a folder link pointing outside, and a dangling link.
    (root / "train/images/link.jpg").symlink_to(outside / "images" / "stolen.jpg")
    (root / "train/labels/link.txt").symlink_to(outside / "labels" / "stolen.txt")
    (root / "val").mkdir()
    (root / "val/images").symlink_to(outside / "images", target_is_directory=True)
    (root / "train/images/gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    _write(root / "data.yaml", "names: [thing]\ntrain: train/images\n")
    result = _ingest(root, tmp_path / "w")
    reasons = _reasons(result)
    assert reasons == {
        "train/images/link.jpg": "outside_export",
        "train/images/gone.jpg": "image_missing",  # counted, not dropped
    }
    assert result["report"].items_in == 5 and result["report"].accepted == 3

    # A yaml naming the linked folder is refused rather than read.
    _write(root / "data.yaml", "names: [thing]\ntrain: train/images\nval: val/images\n")
    refused = _ingest(root, tmp_path / "w2")
    assert "val/images does not exist inside the export" in refused["error"]


def test_zip_caps_refuse_before_extracting(tmp_path):
    root = _yolo(tmp_path / "export")
    bomb = _zip(root, tmp_path / "bomb.zip", {"padding.bin": b"\0" * (8 << 20)})
    result = _ingest(bomb, tmp_path / "w")
    assert "bomb.zip" in result["error"] and "zip bomb" in result["error"]
    assert not (tmp_path / "w" / "c").exists()  # nothing was extracted

    many = _zip(root, tmp_path / "many.zip")
    limits = ArchiveLimits(max_members=3)
    result = _ingest(many, tmp_path / "w2", archive_limits=limits)
    assert "more than the limit of 3" in result["error"]
    limits = ArchiveLimits(max_bytes=1000)
    result = _ingest(many, tmp_path / "w3", archive_limits=limits)
    assert "archive.max_bytes" in result["error"]


def test_item_ids_are_never_hidden_files():
    for source in ("../train/a.jpg", "./.x.jpg", "../../..hidden.png", ".."):
        assert not safe_id(source).startswith(".")
        assert safe_id(source)


def test_image_named_like_its_label_keeps_both_in_quarantine(tmp_path):
    root = tmp_path / "export"
    _write(root / "images" / "scan.txt", b"<html>not an image</html>")
    doc = _coco_doc(
        images=[{"id": 1, "file_name": "scan.txt"}, {"id": 2, "file_name": "b.jpg"}]
    )
    _coco(root, doc)
    result = _ingest(root, tmp_path / "w")
    (bad,) = result["report"].quarantined
    folder = tmp_path / "w" / "validated" / "quarantine" / bad.reason
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 2 and any(f.endswith(".txt") for f in files)
    assert b"<html>" in b"".join(p.read_bytes() for p in folder.iterdir())


# --- bounded random mutations --------------------------------------------------

Mutation = Callable[[Path, random.Random], None]


def _corrupt_bytes(root: Path, rng: random.Random) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    path = rng.choice(files)
    data = bytearray(path.read_bytes())
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    path.write_bytes(bytes(data[: rng.randint(0, len(data))]))


def _garbage_label(root: Path, rng: random.Random) -> None:
    labels = sorted(root.rglob("*.txt"))
    junk = ["\ufeff", "nan", "1e999", "-1", "0 0 0", "\x00", "é", "0 " * 40, "\r\n"]
    rng.choice(labels).write_text(" ".join(rng.choice(junk) for _ in range(5)))


def _garbage_yaml(root: Path, rng: random.Random) -> None:
    texts = [
        "names: {0: a, 2: b}\ntrain: train/images\n",
        "names: []\n",
        "names: [a]\nnc: x\ntrain: train/images\n",
        "names: [a]\ntrain: [1, 2]\n",
        "names: [a]\ntrain: /\n",
        "- just\n- a list\n",
        "names: [a\n",
        "\xff\xfe",
    ]
    (root / "data.yaml").write_bytes(rng.choice(texts).encode("utf-8", "surrogatepass"))


def _link_out(root: Path, rng: random.Random) -> None:
    target = root.parent / "outside" / rng.choice(["images/stolen.jpg", "secret.txt"])
    link = root / "train" / "images" / f"l{rng.randrange(99)}.jpg"
    if not os.path.lexists(link):
        link.symlink_to(target)


MUTATIONS: list[Mutation] = [_corrupt_bytes, _garbage_label, _garbage_yaml, _link_out]


@pytest.mark.parametrize("seed", range(24))
def test_random_mutations_end_cleanly(tmp_path, outside, seed):
    rng = random.Random(seed)
    root = _yolo(tmp_path / "export", n=4)
    for _ in range(rng.randint(1, 3)):
        rng.choice(MUTATIONS)(root, rng)
    source = root
    if rng.random() < 0.3:
        source = _zip(root, tmp_path / "export.zip")
    _ingest(source, tmp_path / "w")


# --- run.py's pre-run check ----------------------------------------------------


def test_run_pre_check_refuses_a_zip_bomb_with_exit_2(tmp_path, capsys):
    import run

    root = _yolo(tmp_path / "export")
    bomb = _zip(root, tmp_path / "bomb.zip", {"padding.bin": b"\0" * (8 << 20)})
    assert run.main(["--pipeline", "ingestion", "--source", str(bomb)]) == 2
    err = capsys.readouterr().err
    assert "bomb.zip" in err and "zip bomb" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (_bad_crc_zip, "img1.jpg"),
        (
            lambda t: _coco(
                t / "export",
                _coco_doc(categories=[{"id": [1], "name": "thing"}]),
            ),
            "categories[0].id",
        ),
        (
            lambda t: _coco(t / "export", _coco_doc(annotations={"1": {}})),
            "`annotations` is a dict",
        ),
        (
            lambda t: _coco(t / "export", _coco_doc(images=["a.jpg", "b.jpg"])),
            "images[0] is a str",
        ),
    ],
    ids=["zip-bad-crc", "category-id-list", "annotations-object", "image-string"],
)
def test_run_pre_check_refuses_a_malformed_export_with_exit_2(
    tmp_path, capsys, make, named
):
    import run

    source = make(tmp_path)
    assert run.main(["--pipeline", "ingestion", "--source", str(source)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("Configuration error: source: ") and named in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Skipping step" not in out + err  # no pipeline started
