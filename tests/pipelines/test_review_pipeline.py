"""`run.py --pipeline review` in the isolated ZenML store, and the registry's names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.feedback.test_review import _boards, _keep, _yolo_boxes
from visionops.app.lookup import registered_class_names
from visionops.data.sources import open_source
from visionops.feedback.store import FeedbackStore


def _review(tmp_path: Path, *sets: str) -> int:
    import run

    return run.main(
        [
            "--pipeline",
            "review",
            "--set",
            f"store={tmp_path / 'store'}",
            "--set",
            f"target={tmp_path / 'review'}",
            *(a for s in sets for a in ("--set", s)),
        ]
    )


def _skipped(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The lines the step logged for files it left out (ZenML prints them)."""
    lines = [r.getMessage() for r in caplog.records if r.name.endswith(".review")]
    caplog.clear()
    return lines


def test_review_run_makes_a_batch_then_says_nothing_waits(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    store = FeedbackStore(tmp_path / "store")
    ids = []
    for n, (image, label) in enumerate(_boards(3)):
        answer = {"detections": _yolo_boxes(label, Image.open(image).size)}
        ids.append(_keep(store, image, "detect", answer, offset=n, source="batch"))
    broken = _keep(store, _boards(4)[3][0], "detect", {"detections": []}, offset=5)
    sidecar = next((tmp_path / "store" / "selected").rglob(f"{broken}.json"))
    sidecar.write_text("{not json")

    assert _review(tmp_path) == 0
    out = capsys.readouterr().out
    (folder,) = (tmp_path / "review").iterdir()
    assert f"Review batch: 3 image(s) of board-detector (detect) -> {folder}" in out
    (line,) = _skipped(caplog)  # one line, naming the file
    assert line.startswith(f"Skipped {sidecar}: JSONDecodeError")
    assert "1 file(s) skipped." in out
    assert f"--pipeline ingestion --source {folder} --set merge_with=latest" in out
    assert sorted(p.stem for p in (folder / "train" / "images").iterdir()) == sorted(
        ids
    )
    assert open_source(folder).format == "yolo"
    assert store.reviewed_ids() == set(ids)

    assert _review(tmp_path) == 0
    out = capsys.readouterr().out
    assert "Nothing selected since the last review: no batch made." in out
    assert [line.split(":")[0] for line in _skipped(caplog)] == [f"Skipped {sidecar}"]
    assert list((tmp_path / "review").iterdir()) == [folder]


def test_review_of_two_models_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    store = FeedbackStore(tmp_path / "store")
    (a, _), (b, _) = _boards(2)
    _keep(store, a, "detect", {"detections": []})
    _keep(store, b, "detect", {"detections": []}, model="other-detector")

    assert _review(tmp_path) == 2
    err = capsys.readouterr().err
    assert "model.name" in err and "other-detector (1)" in err
    assert not (tmp_path / "review").exists() and store.reviews() == []


def test_registered_class_names_of_a_model_version(local_mlflow) -> None:
    from mlflow.tracking import MlflowClient

    with local_mlflow.start_run() as run:
        pass
    client = MlflowClient()
    client.create_registered_model("board-detector")
    client.create_model_version(
        "board-detector",
        source=f"runs:/{run.info.run_id}/model",
        run_id=run.info.run_id,
        tags={"task": "detect", "class_names": json.dumps(["screw", "board"])},
    )
    assert registered_class_names("board-detector", "1") == ["screw", "board"]
    assert registered_class_names("board-detector", "7") is None
    assert registered_class_names("no-such-model", "1") is None


def test_review_run_to_picsellia_goes_through_the_sdk(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same run with a Picsellia target: the token checked first, then the
    batch uploaded through the (fake) SDK client the step builds."""
    from tests.fakes.picsellia import FakeDatasetVersion, FakePicselliaClient
    from visionops.feedback import picsellia

    store = FeedbackStore(tmp_path / "store")
    (image, label), *_ = _boards(1)
    answer = {"detections": _yolo_boxes(label, Image.open(image).size)}
    kept = _keep(store, image, "detect", answer)
    version = FakeDatasetVersion(id="v-9", dataset="boards", version="review", files={})
    client = FakePicselliaClient([version])
    tokens: list[str] = []

    def connect(token: str) -> FakePicselliaClient:
        tokens.append(token)
        return client

    def no_secret() -> str:
        raise KeyError("no ZenML secret 'picsellia'")

    monkeypatch.setattr(picsellia, "connect", connect)
    monkeypatch.delenv("PICSELLIA_TOKEN", raising=False)
    monkeypatch.setattr("visionops.data.sources.picsellia._zenml_token", no_secret)
    target = "target=picsellia://boards/review"
    assert _review(tmp_path, target) == 2  # no token: refused before any work
    assert "PICSELLIA_TOKEN" in capsys.readouterr().err and tokens == []

    monkeypatch.setenv("PICSELLIA_TOKEN", "t0ken")
    assert _review(tmp_path, target) == 0
    out = capsys.readouterr().out
    assert "Review batch: 1 image(s) of board-detector (detect) -> picsellia://" in out
    assert tokens == ["t0ken"]
    (upload,) = client.datalake.uploads
    assert upload["filepaths"][0].endswith(f"{kept}.jpg")
    assert upload["tags"] == ["visionops-review", "near_threshold"]
    (annotation,) = version.assets_by_name[f"{kept}.jpg"].annotations
    assert len(annotation.rectangles) == len(answer["detections"])
    assert store.reviews()[0]["batch"] == "picsellia://boards/review"
    assert not (tmp_path / "review").exists()
