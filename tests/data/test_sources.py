"""Dataset sources stage real exports and generated quirky layouts as YOLO files."""

from __future__ import annotations

import io
import json
import sys
import types
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes.picsellia import FakeDatasetVersion, FakePicselliaClient
from visionops.data.manifest import Manifest
from visionops.data.sources import SourceError, open_source, stage_source

_buffer = io.BytesIO()
Image.new("RGB", (200, 100), (40, 120, 200)).save(_buffer, "JPEG")
JPEG = _buffer.getvalue()  # A real 200x100 JPEG, written wherever an image is needed.
LABEL = "0 0.5 0.5 0.25 0.25\n"


def _image(path: Path, data: bytes = JPEG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _yolo_folder(root: Path, folder: str, count: int, label: str = LABEL) -> None:
    for n in range(count):
        _image(root / folder / "images" / f"{folder}{n}.jpg")
        (root / folder / "labels").mkdir(parents=True, exist_ok=True)
        (root / folder / "labels" / f"{folder}{n}.txt").write_text(label)


def _splits(manifest: Manifest) -> dict[str | None, int]:
    return dict(Counter(item.source_split for item in manifest.items))


def _staged_text(dest: Path, relative: str | None) -> str:
    assert relative is not None
    return (dest / relative).read_text()


def _assert_consistent(manifest: Manifest, dest: Path) -> None:
    ids = [item.id for item in manifest.items]
    assert len(set(ids)) == len(ids)
    assert [item.source for item in manifest.items] == sorted(
        item.source for item in manifest.items
    )
    assert Manifest.read(dest) == manifest
    for item in manifest.items:
        assert (dest / item.image).is_file()
        assert item.label is None or (dest / item.label).is_file()


# --- the real Roboflow export ------------------------------------------------


@pytest.fixture(scope="module")
def staged_boards(boards_dir: Path, tmp_path_factory) -> tuple[Manifest, Path]:
    dest = tmp_path_factory.mktemp("boards") / "staged"
    return stage_source(boards_dir, dest), dest


def test_roboflow_export_stages_every_image_with_its_split(staged_boards, boards_dir):
    manifest, dest = staged_boards
    assert manifest.source_format == "yolo"
    assert manifest.class_names == ["board"]
    assert len(manifest.items) == 181
    assert _splits(manifest) == {"train": 165, "val": 11, "test": 5}
    _assert_consistent(manifest, dest)
    for item in manifest.items[:20]:
        original = boards_dir / item.source
        assert (dest / item.image).read_bytes() == original.read_bytes()
        label = boards_dir / item.source.replace("/images/", "/labels/")
        assert _staged_text(dest, item.label) == label.with_suffix(".txt").read_text()


def test_roboflow_augmented_copies_share_a_group(staged_boards):
    manifest, _ = staged_boards
    sizes = Counter(item.group for item in manifest.items)
    assert len(sizes) < 181
    photo, copies = sizes.most_common(1)[0]
    assert copies > 1
    named = [
        i for i in manifest.items if Path(i.source).name.startswith(photo + ".rf.")
    ]
    assert len(named) == copies
    assert {item.group for item in named} == {photo}


# --- data.yaml quirks --------------------------------------------------------

YAML_VARIANTS = {
    "dict-names": (
        "names: {0: cat, 1: dog}\nnc: 2\ntrain: train/images\nval: valid/images\n"
        "test: test/images\n",
        ("train", "valid", "test"),
    ),
    "valid-key-no-test": (
        "names: [cat, dog]\ntrain: train/images\nvalid: valid/images\n",
        ("train", "valid"),
    ),
    "parent-relative": (
        "names: [cat, dog]\ntrain: ../train/images\nval: ../valid/images\n"
        "test: ../test/images\n",
        ("train", "valid", "test"),
    ),
    "foreign-prefix": (
        "names: [cat, dog]\ntrain: Recog0801-1/train/images\n"
        "val: Recog0801-1/valid/images\ntest: ../test/images\n",
        ("train", "valid", "test"),
    ),
    "absolute-foreign": (
        "names: [cat, dog]\ntrain: /content/datasets/pets/train/images\n"
        "val: C:\\Users\\me\\pets\\valid\\images\ntest: /content/datasets/pets/test\n",
        ("train", "valid", "test"),
    ),
    "path-key-foreign": (
        "path: /home/someone/pets\nnames: [cat, dog]\ntrain: train/images\n"
        "val: val/images\n",
        ("train", "val"),
    ),
}


@pytest.mark.parametrize("variant", sorted(YAML_VARIANTS))
def test_data_yaml_variants_resolve_to_the_local_folders(tmp_path, variant):
    text, folders = YAML_VARIANTS[variant]
    root = tmp_path / "pets"
    for folder, count in zip(folders, (3, 2, 1), strict=False):
        _yolo_folder(root, folder, count)
    (root / "data.yaml").write_text(text)

    manifest = stage_source(root, tmp_path / "staged")

    assert manifest.class_names == ["cat", "dog"]
    expected = dict(zip(("train", "val", "test"), (3, 2, 1), strict=False))
    assert _splits(manifest) == {k: expected[k] for k in list(expected)[: len(folders)]}
    assert all(item.label is not None for item in manifest.items)
    _assert_consistent(manifest, tmp_path / "staged")


def test_txt_split_lists_resolve_relative_and_foreign_entries(tmp_path):
    root = tmp_path / "lists"
    _yolo_folder(root, "train", 2)
    _yolo_folder(root, "valid", 1)
    (root / "train.txt").write_text(
        "./train/images/train0.jpg\n/mnt/old-box/lists/train/images/train1.jpg\n"
    )
    (root / "val.txt").write_text("valid/images/valid0.jpg\n")
    (root / "data.yaml").write_text("names: [cat]\ntrain: train.txt\nval: val.txt\n")

    manifest = stage_source(root, tmp_path / "staged")

    assert _splits(manifest) == {"train": 2, "val": 1}
    assert [item.source for item in manifest.items] == [
        "train/images/train0.jpg",
        "train/images/train1.jpg",
        "valid/images/valid0.jpg",
    ]
    assert all(item.label is not None for item in manifest.items)


def test_nested_images_split_folders_with_classes_txt(tmp_path):
    root = tmp_path / "studio"
    for split, count in (("train", 2), ("val", 1)):
        for n in range(count):
            _image(root / "images" / split / f"{split}{n}.png")
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{split}{n}.txt").write_text(LABEL)
    (root / "classes.txt").write_text("cat\ndog\n\n")

    manifest = stage_source(root, tmp_path / "staged")

    assert manifest.class_names == ["cat", "dog"]
    assert _splits(manifest) == {"train": 2, "val": 1}
    assert manifest.items[0].image.endswith(".png")
    assert all(item.label is not None for item in manifest.items)


def test_flat_images_and_labels_have_no_split(tmp_path):
    root = tmp_path / "flat"
    _image(root / "images" / "a.jpg")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(LABEL)
    (root / "data.yaml").write_text("names: [cat]\n")

    manifest = stage_source(root, tmp_path / "staged")

    assert [(item.source, item.source_split) for item in manifest.items] == [
        ("images/a.jpg", None)
    ]


def test_labels_and_images_pass_through_untouched(tmp_path):
    root = tmp_path / "raw"
    malformed = "0 0.5 nan 0.2\nbanana\n7 2.0 -1 0 0\n"
    _image(root / "train" / "images" / "bad_label.jpg")
    _image(root / "train" / "images" / "corrupt.jpg", b"not a jpeg")
    _image(root / "train" / "images" / "negative.jpg")
    _image(root / "train" / "images" / "unlabelled.jpg")
    (root / "train" / "labels").mkdir()
    (root / "train" / "labels" / "bad_label.txt").write_text(malformed)
    (root / "train" / "labels" / "corrupt.txt").write_text(LABEL)
    (root / "train" / "labels" / "negative.txt").write_text("")
    (root / "data.yaml").write_text("names: [cat]\ntrain: train/images\n")
    dest = tmp_path / "staged"

    manifest = stage_source(root, dest)

    by_name = {Path(item.source).stem: item for item in manifest.items}
    assert _staged_text(dest, by_name["bad_label"].label) == malformed
    assert (dest / by_name["corrupt"].image).read_bytes() == b"not a jpeg"
    assert _staged_text(dest, by_name["negative"].label) == ""
    assert by_name["unlabelled"].label is None


def test_colliding_names_get_unique_ids(tmp_path):
    root = tmp_path / "clash"
    for name in ("a.jpg", "a.png", "a b.jpg", "a_b.jpg", "A.jpg"):
        _image(root / "images" / name)
    (root / "classes.txt").write_text("cat\n")
    dest = tmp_path / "staged"

    manifest = stage_source(root, dest)

    assert len(manifest.items) == 5
    _assert_consistent(manifest, dest)
    assert len({item.id.lower() for item in manifest.items}) == 5
    assert len(list((dest / "images").iterdir())) == 5


def test_unresolvable_yaml_path_names_the_key(tmp_path):
    root = tmp_path / "broken"
    _yolo_folder(root, "train", 1)
    (root / "data.yaml").write_text(
        "names: [cat]\ntrain: train/images\ntest: nowhere/imgs\n"
    )

    with pytest.raises(SourceError, match=r"test: nowhere/imgs does not exist"):
        stage_source(root, tmp_path / "staged")


# --- COCO ----------------------------------------------------------------------


def _rle_string(counts: list[int]) -> str:
    # pycocotools' rleToString, to feed the decoder a compressed RLE.
    text = ""
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            char = value & 0x1F
            value >>= 5
            more = value != -1 if char & 0x10 else value != 0
            if more:
                char |= 0x20
            text += chr(char + 48)
    return text


def _box_rle(height: int, x: int, y: int, w: int, h: int) -> list[int]:
    counts = [x * height + y]
    for _ in range(w - 1):
        counts += [h, height - h]
    return [*counts, h, 10]


def _ann(ann_id: int, image_id: int, category: int, **shape) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category, **shape}


@pytest.fixture
def coco_dir(tmp_path) -> Path:
    root = tmp_path / "coco"
    _image(root / "images" / "a.jpg")
    _image(root / "images" / "empty.jpg")
    rle = _box_rle(100, 20, 10, 40, 20)
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "empty.jpg", "width": 200, "height": 100},
            {"id": 3, "file_name": "gone.jpg", "width": 200, "height": 100},
        ],
        "categories": [
            {"id": 2, "name": "dog", "supercategory": "animals"},
            {"id": 0, "name": "animals", "supercategory": "none"},
            {"id": 1, "name": "cat", "supercategory": "animals"},
        ],
        "annotations": [
            _ann(1, 1, 1, bbox=[10, 20, 50, 40], iscrowd=0),
            _ann(2, 1, 2, bbox=[0, 0, 200, 100], iscrowd=1),
            _ann(3, 1, 1, segmentation=[[20, 10, 60, 10, 60, 30, 20, 30]]),
            _ann(4, 1, 2, segmentation={"size": [100, 200], "counts": rle}),
            _ann(
                5, 1, 2, segmentation={"size": [100, 200], "counts": _rle_string(rle)}
            ),
            _ann(6, 1, 1, bbox=[190, 90, 40, 20]),
            _ann(7, 1, 99, bbox=[0, 0, 20, 10]),
            _ann(8, 3, 1, bbox=[0, 0, 20, 10]),
        ],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    return root


def test_coco_boxes_convert_to_normalised_yolo(coco_dir, tmp_path):
    dest = tmp_path / "staged"
    manifest = stage_source(coco_dir, dest)

    assert manifest.source_format == "coco"
    assert manifest.class_names == ["cat", "dog"]  # Roboflow's "animals" dropped.
    item = next(i for i in manifest.items if i.source == "images/a.jpg")
    assert item.source_split == "train"
    rows = [line.split() for line in _staged_text(dest, item.label).splitlines()]
    expected = [
        (0, [0.175, 0.4, 0.25, 0.4]),  # bbox [10, 20, 50, 40] in a 200x100 image
        (1, [0.5, 0.5, 1.0, 1.0]),  # iscrowd kept
        (0, [0.2, 0.2, 0.2, 0.2]),  # polygon without bbox
        (1, [0.2, 0.2, 0.2, 0.2]),  # RLE without bbox
        (1, [0.2, 0.2, 0.2, 0.2]),  # compressed RLE without bbox
        (0, [1.05, 1.0, 0.2, 0.2]),  # out of range: not clipped
        (-1, [0.05, 0.05, 0.1, 0.1]),  # unknown category: left for validation
    ]
    assert len(rows) == len(expected)
    for row, (cls, box) in zip(rows, expected, strict=True):
        assert int(row[0]) == cls
        assert [float(v) for v in row[1:]] == pytest.approx(box, abs=1e-6)


def test_coco_negatives_get_empty_labels_and_missing_images_stay_visible(
    coco_dir, tmp_path
):
    dest = tmp_path / "staged"
    manifest = stage_source(coco_dir, dest)

    by_source = {item.source: item for item in manifest.items}
    assert _staged_text(dest, by_source["images/empty.jpg"].label) == ""
    gone = by_source["annotations/gone.jpg"]
    assert (dest / gone.image).stat().st_size == 0
    assert _staged_text(dest, gone.label).startswith("0 ")


def test_coco_files_merge_classes_by_name(tmp_path):
    root = tmp_path / "roboflow-coco"
    exports = {
        "train": ([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}], 2),
        "valid": ([{"id": 1, "name": "dog"}, {"id": 2, "name": "bird"}], 1),
        "test": ([{"id": 5, "name": "cat"}], 5),
    }
    for folder, (categories, category) in exports.items():
        _image(root / folder / f"{folder}.jpg")
        doc = {
            "images": [
                {"id": 0, "file_name": f"{folder}.jpg", "width": 200, "height": 100}
            ],
            "categories": [{"id": 0, "name": "pets", "supercategory": "none"}]
            + [{**c, "supercategory": "pets"} for c in categories],
            "annotations": [_ann(0, 0, category, bbox=[0, 0, 100, 50])],
        }
        (root / folder / "_annotations.coco.json").write_text(json.dumps(doc))
    dest = tmp_path / "staged"

    manifest = stage_source(root, dest)

    assert manifest.class_names == ["cat", "dog", "bird"]
    assert _splits(manifest) == {"train": 1, "val": 1, "test": 1}
    first_class = {
        item.source_split: _staged_text(dest, item.label).split()[0]
        for item in manifest.items
    }
    # train: dog (id 2) -> 1; valid: dog is id 1 there -> 1; test: cat id 5 -> 0.
    assert first_class == {"train": "1", "val": "1", "test": "0"}


# --- zips and detection ------------------------------------------------------


def _zip_tree(root: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(root).as_posix())
    return archive


@pytest.mark.parametrize("prefix", ["", "pets-1/"], ids=["flat", "top-folder"])
def test_zip_export_is_extracted_and_detected(tmp_path, prefix):
    root = tmp_path / "pets"
    _yolo_folder(root, "train", 2)
    _yolo_folder(root, "valid", 1)
    (root / "data.yaml").write_text("names: [cat]\ntrain: ../train/images\nval: x\n")
    archive = _zip_tree(root, tmp_path / "pets.zip", prefix)
    cache = tmp_path / "cache"

    source = open_source(archive, cache_dir=cache)
    manifest = source.stage(tmp_path / "staged")

    assert source.format == "yolo"
    assert manifest.source == str(archive)
    assert _splits(manifest) == {"train": 2, "val": 1}
    extracted = list((cache / "archives").iterdir())
    open_source(archive, cache_dir=cache)
    assert list((cache / "archives").iterdir()) == extracted  # Reused, not redone.


def test_zip_slip_member_is_rejected(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data.yaml", "names: [cat]\n")
        zf.writestr("../escaped.txt", "gotcha")

    with pytest.raises(SourceError, match=r"'\.\./escaped\.txt'.*zip-slip"):
        open_source(archive, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_unknown_layout_says_what_was_found_and_what_is_supported(tmp_path):
    root = tmp_path / "mystery"
    _image(root / "photos" / "a.jpg")
    _image(root / "more" / "b.jpg")
    (root / "notes.json").write_text(json.dumps({"images": "somewhere"}))

    with pytest.raises(SourceError) as error:
        open_source(root)

    message = str(error.value)
    assert "found 2 image(s)" in message
    assert "more, photos" in message
    assert "data.yaml" in message and "COCO" in message and "picsellia://" in message


def test_image_folders_without_class_names_ask_for_classes_txt(tmp_path):
    root = tmp_path / "nameless"
    _yolo_folder(root, "train", 1)
    _yolo_folder(root, "valid", 1)

    with pytest.raises(SourceError, match="add a classes.txt"):
        open_source(root)


def test_missing_path_and_foreign_schemes_are_refused(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "nope")
    with pytest.raises(SourceError, match="only local paths"):
        open_source("s3://bucket/dataset")


def test_staging_refuses_a_non_empty_folder(tmp_path):
    root = tmp_path / "flat"
    _image(root / "images" / "a.jpg")
    (root / "classes.txt").write_text("cat\n")
    dest = tmp_path / "staged"
    dest.mkdir()
    (dest / "old.txt").write_text("left over")

    with pytest.raises(SourceError, match="not empty"):
        stage_source(root, dest)


# --- Picsellia -------------------------------------------------------------------

VERSION_ID = "018e1c3a-0000-7000-8000-000000000001"


def _coco_version(**overrides) -> FakeDatasetVersion:
    files = {
        "cat.jpg": JPEG,
        "dog_jpg.rf.0123456789abcdef0123.jpg": JPEG,
        "bg.jpg": JPEG,
    }
    coco = {
        "images": [
            {"id": i, "file_name": name, "width": 200, "height": 100}
            for i, name in enumerate(files)
        ],
        # Picsellia category ids are not 0..n-1 and not in name order.
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            _ann(1, 0, 3, bbox=[10, 20, 50, 40]),
            _ann(2, 1, 7, bbox=[0, 0, 200, 100]),
        ],
    }
    fields = {"id": VERSION_ID, "dataset": "pets", "version": "v2"}
    return FakeDatasetVersion(**{**fields, "files": files, "coco": coco, **overrides})


@pytest.mark.parametrize(
    "uri", [f"picsellia://{VERSION_ID}", "picsellia://pets/v2"], ids=["id", "name"]
)
@pytest.mark.parametrize("zipped", [False, True], ids=["json", "zip"])
def test_picsellia_coco_export_maps_classes_by_name(tmp_path, uri, zipped):
    version = _coco_version(coco_zipped=zipped)
    client = FakePicselliaClient([version])
    dest = tmp_path / "staged"

    source = open_source(uri, picsellia_client=client, cache_dir=tmp_path / "cache")
    manifest = source.stage(dest)

    assert source.format == manifest.source_format == "picsellia"
    assert manifest.source == uri
    assert manifest.class_names == ["cat", "dog"]
    labels = {item.source: _staged_text(dest, item.label) for item in manifest.items}
    assert labels["cat.jpg"].split()[0] == "0"
    assert labels["dog_jpg.rf.0123456789abcdef0123.jpg"].split()[:2] == [
        "1",
        "0.500000",
    ]
    assert labels["bg.jpg"] == ""
    assert {item.source_split for item in manifest.items} == {None}
    assert version.exports == ["COCO"]


def test_picsellia_reuses_downloaded_assets(tmp_path):
    version = _coco_version()
    client = FakePicselliaClient([version])
    for run in ("first", "second"):
        stage_source(
            f"picsellia://{VERSION_ID}",
            tmp_path / run,
            picsellia_client=client,
            cache_dir=tmp_path / "cache",
        )
    assert len(version.assets.downloads) == 3


def test_picsellia_yolo_export_zip(tmp_path):
    version = _coco_version(
        yolo_names=["dog", "cat"],
        yolo_labels={"cat": "1 0.5 0.5 0.1 0.1\n", "bg": ""},
    )
    dest = tmp_path / "staged"

    manifest = stage_source(
        "picsellia://pets/v2",
        dest,
        picsellia_client=FakePicselliaClient([version]),
        cache_dir=tmp_path / "cache",
        picsellia_format="yolo",
    )

    assert manifest.class_names == ["dog", "cat"]
    by_source = {item.source: item for item in manifest.items}
    assert _staged_text(dest, by_source["cat.jpg"].label) == "1 0.5 0.5 0.1 0.1\n"
    assert _staged_text(dest, by_source["bg.jpg"].label) == ""
    assert by_source["dog_jpg.rf.0123456789abcdef0123.jpg"].label is None
    assert version.exports == ["YOLO"]


def test_picsellia_unknown_version_is_a_source_error(tmp_path):
    client = FakePicselliaClient([_coco_version()])
    for uri in (
        "picsellia://00000000-0000-0000-0000-000000000000",
        "picsellia://pets/v9",
    ):
        source = open_source(uri, picsellia_client=client, cache_dir=tmp_path)
        with pytest.raises(SourceError, match="Picsellia has no"):
            source.stage(tmp_path / "staged")


class _Secret:
    def __init__(self, values: dict[str, str]) -> None:
        self.secret_values = values


def _fake_zenml(monkeypatch, secrets: dict[str, dict[str, str]]) -> None:
    class Client:
        def get_secret(self, name: str) -> _Secret:
            if name not in secrets:
                raise KeyError(f"No secret named {name}")
            return _Secret(secrets[name])

    monkeypatch.setitem(
        sys.modules, "zenml.client", types.SimpleNamespace(Client=Client)
    )


def test_picsellia_without_token_says_how_to_provide_one(monkeypatch, tmp_path):
    monkeypatch.delenv("PICSELLIA_TOKEN", raising=False)
    _fake_zenml(monkeypatch, {})

    with pytest.raises(SourceError) as error:
        open_source(f"picsellia://{VERSION_ID}", cache_dir=tmp_path)

    assert "PICSELLIA_TOKEN" in str(error.value)
    assert "zenml secret create picsellia" in str(error.value)


@pytest.mark.parametrize("from_env", [True, False], ids=["env", "zenml-secret"])
def test_picsellia_client_is_built_from_token_and_settings(
    monkeypatch, tmp_path, from_env
):
    built: list[dict[str, str]] = []

    def client(**kwargs):
        built.append(kwargs)
        return FakePicselliaClient([_coco_version()])

    monkeypatch.setitem(sys.modules, "picsellia", types.SimpleNamespace(Client=client))
    _fake_zenml(monkeypatch, {"picsellia": {"token": "from-secret"}})
    if from_env:
        monkeypatch.setenv("PICSELLIA_TOKEN", "from-env")
    else:
        monkeypatch.delenv("PICSELLIA_TOKEN", raising=False)
    monkeypatch.setenv("PICSELLIA_HOST", "https://picsellia.example")
    monkeypatch.setenv("PICSELLIA_ORGANIZATION", "acme")

    manifest = stage_source(
        "picsellia://pets/v2", tmp_path / "staged", cache_dir=tmp_path / "cache"
    )

    assert built == [
        {
            "api_token": "from-env" if from_env else "from-secret",
            "organization_name": "acme",
            "host": "https://picsellia.example",
        }
    ]
    assert len(manifest.items) == 3
