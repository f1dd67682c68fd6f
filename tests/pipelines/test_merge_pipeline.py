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

    assert run.main(["--stack", "local"]) == 0  # the loop's tests train and track
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


LOOP_MODEL = "loop-detector"


def _registered(name: str) -> dict[str, dict[str, str]]:
    from mlflow.tracking import MlflowClient

    return {
        str(v.version): dict(v.tags)
        for v in MlflowClient().search_model_versions(f"name='{name}'")
    }


@pytest.fixture(scope="module")
def looped(merged: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A champion trained on the parent, then `--pipeline loop` twice: 4 reviewed
    labels are fewer than 5, and enough for 4. (Once trained on, a dataset version
    is not trained on again: tests/pipelines/test_airflow_stack.py's loop.)"""
    import contextlib
    import io

    import run
    from tests.conftest import TINY_TRAINING

    tiny = [x for o in TINY_TRAINING for x in ("--set", o)]
    train = ["--pipeline", "training", "--set", f"model.name={LOOP_MODEL}"]
    train += ["--set", f"dataset={merged['parent'].version}", *tiny]
    assert run.main(train) == 0
    loop = ["--pipeline", "loop", "--set", f"model.name={LOOP_MODEL}"]
    loop += [x for o in TINY_TRAINING for x in ("--set", f"training.{o}")]
    review = tmp_path_factory.mktemp("loop-review")
    loop += ["--set", f"review.target={review}"]
    loop += ["--set", f"drift.output_dir={tmp_path_factory.mktemp('loop-drift')}"]
    said, registered = [], []
    for least in (5, 4):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert run.main([*loop, "--set", f"min_reviewed={least}"]) == 0
        said.append(out.getvalue())
        registered.append(_registered(LOOP_MODEL))
    return {"said": said, "registered": registered}


def test_the_loop_waits_for_enough_reviewed_labels(merged: dict, looped: dict) -> None:
    child = merged["child"].version
    said = looped["said"][0]
    assert "Drift: no verdict" in said  # the drift report ran first
    assert "Nothing selected since the last review" in said  # then the review
    assert (
        f"No retraining of {LOOP_MODEL} (champion v1) on dataset v{child}: 4 "
        "label(s) reviewed since the champion's dataset, fewer than min_reviewed 5"
    ) in said
    assert list(looped["registered"][0]) == ["1"]  # no training ran


def test_the_loop_retrains_from_the_champion_on_the_merged_dataset(
    merged: dict, looped: dict
) -> None:
    said = looped["said"][1]
    assert (
        f"Retraining of {LOOP_MODEL} (champion v1) on dataset "
        f"v{merged['child'].version}: 4 label(s) reviewed since the champion's "
        "dataset (min_reviewed 4)"
    ) in said
    registered = looped["registered"][1]
    assert sorted(registered) == ["1", "2"]
    assert (
        registered["1"]["dataset_hash"] == merged["parent"].run_metadata["dataset_hash"]
    )
    assert (
        registered["2"]["dataset_hash"] == merged["child"].run_metadata["dataset_hash"]
    )
    from mlflow.tracking import MlflowClient

    run_id = MlflowClient().get_model_version(LOOP_MODEL, "2").run_id
    started = MlflowClient().get_run(run_id).data.tags["started_from"]
    assert started == f"{LOOP_MODEL} v1"  # fine-tuned from the champion
