"""A reviewed batch back into the dataset through run.py: `merge_with` keeps the
parent's test split byte for byte, `--status` shows the lineage, and a bad batch or
a missing parent stops with exit 2 before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.test_merge import review_batch, split_files
from visionops.core.names import DATASET

NO_BLUR = ["--set", "anonymize.enabled=false"]


def _versions() -> list[str]:
    from zenml.client import Client

    page = Client().list_artifact_versions(name=DATASET, size=1000)
    return sorted(str(v.version) for v in page.items)


@pytest.fixture(scope="module")
def merged(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Ingests the sample, then a review batch with merge_with=latest."""
    from zenml.client import Client

    import run

    source = ["--pipeline", "ingestion", "--source"]
    assert run.main([*source, str(sample_dir), *NO_BLUR]) == 0
    parent = Client().get_artifact_version(DATASET)
    batch = review_batch(parent.load(), tmp_path_factory.mktemp("merge") / "batch")
    merge = ["--set", "merge_with=latest"]
    assert run.main([*source, str(batch), *merge, *NO_BLUR]) == 0
    child = Client().get_artifact_version(DATASET)
    return {"parent": parent, "child": child, "batch": batch}


def test_merge_keeps_the_parents_test_split(merged: dict) -> None:
    parent, child = merged["parent"].load(), merged["child"].load()
    assert split_files(child.root, "test") == split_files(parent.root, "test")
    added = {p.parent.name for p in child.root.glob("images/*/*prod-*")}
    assert len(list(child.root.glob("images/*/*prod-*"))) == 3
    assert added <= {"train", "val"}
    lineage = child.card["lineage"]
    assert lineage["parent_version"] == str(merged["parent"].version)
    assert lineage["parent_hash"] == parent.hash
    meta = merged["child"].run_metadata
    assert meta["parent_version"] == str(merged["parent"].version)
    assert meta["parent_hash"] == parent.hash and meta["added"] == 3


def test_status_shows_the_lineage(merged: dict, capsys: pytest.CaptureFixture) -> None:
    import run

    assert run.main(["--status"]) == 0
    out = capsys.readouterr().out
    child, parent = merged["child"].version, merged["parent"].version
    assert f"lineage: v{child} <- v{parent} + 4 reviewed (3 added, 1 relabelled" in out


@pytest.mark.parametrize(
    ("breaks", "says"),
    [
        ("missing_image", "prod-000.txt: missing image"),
        ("unknown_class", "class 'cat' is not a class of dataset v"),
        ("out_of_range", "prod-001.txt: line 1: coordinate 1.3 is outside 0..1"),
        ("no_parent", "merge_with: no dataset version '99'"),
    ],
)
def test_a_bad_merge_stops_before_any_work(
    merged: dict,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    breaks: str,
    says: str,
) -> None:
    import yaml

    import run

    batch = review_batch(merged["child"].load(), tmp_path / "batch")
    parent = "latest"
    if breaks == "missing_image":
        (batch / "images" / "prod-000.jpg").unlink()
    elif breaks == "unknown_class":
        (batch / "data.yaml").write_text(yaml.safe_dump({"names": ["board", "cat"]}))
    elif breaks == "out_of_range":
        (batch / "labels" / "prod-001.txt").write_text("0 1.3 0.5 0.2 0.2\n")
    else:
        parent = "v99"
    before = _versions()
    code = run.main(
        ["--pipeline", "ingestion", "--source", str(batch), "--set"]
        + [f"merge_with={parent}", *NO_BLUR]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and says in err[0], err
    assert _versions() == before  # nothing written to the dataset store
