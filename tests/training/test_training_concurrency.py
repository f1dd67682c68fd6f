"""Two trainings at once: one champion move at a time, one folder per training."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.conftest import SEG_IMGSZ
from visionops.config import EvaluationSettings, PromotionSettings, TrainSettings
from visionops.tasks import get_task

DETECT = get_task("detect")
SEGMENT = get_task("segment")
MEASURED = EvaluationSettings(latency_runs=1, quantize=False)


def _versions(tmp_path: Path, count: int) -> list[str]:
    """`count` versions of model `cars`, the first one `champion`."""
    from mlflow.tracking import MlflowClient

    from visionops.training.tracking import set_alias

    client = MlflowClient()
    experiment = client.create_experiment(
        "race", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    client.create_registered_model("cars")
    versions = []
    for _ in range(count):
        run_id = client.create_run(experiment).info.run_id
        versions.append(
            client.create_model_version(
                "cars", f"runs:/{run_id}/model", run_id=run_id
            ).version
        )
    set_alias("cars", "champion", versions[0])
    return [str(v) for v in versions]


def _beats(champion_version: str):
    from visionops.training.promotion import Decision

    return Decision(
        promote=True,
        reason="mAP50-95 0.6000 beats champion 0.5000",
        metric="map50_95",
        challenger_score=0.6,
        champion_score=0.5,
        champion_version=champion_version,
        margin=0.0,
        min_score=None,
        max_latency_ms=None,
        challenger_latency_ms=None,
    )


def test_a_model_compared_with_an_older_champion_is_not_promoted(
    local_mlflow, tmp_path: Path
) -> None:
    from visionops.training.stages import promote_version
    from visionops.training.tracking import alias_version

    first, second, third = _versions(tmp_path, 3)
    # Both trainings compared themselves with v1; the second finishes first.
    assert promote_version("cars", second, _beats(first)).promote
    late = promote_version("cars", third, _beats(first))
    assert alias_version("cars", "champion") == second
    assert not late.promote
    assert "moved from v1 to v2" in late.reason
    assert "train again to compare it with v2" in late.reason


def _everywhere_copy(weights: Path, dest: Path) -> Path:
    """`weights` sure of its class in every anchor: masks all over each image."""
    import torch

    checkpoint = torch.load(weights, weights_only=False)  # the test's own file
    for key in ("model", "ema"):
        if checkpoint.get(key) is None:
            continue
        for branch in checkpoint[key].model[-1].cv3:
            torch.nn.init.constant_(branch[-1].bias, 100.0)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, dest)
    return dest


@pytest.fixture(scope="module")
def shoe_soles(tmp_path_factory: pytest.TempPathFactory):
    """The bundled shoe soles as a segmentation dataset version."""
    from tests.data.test_segment import SHOE_SOLES, _version
    from visionops.data.sources import stage_source
    from visionops.tasks import ingestion_tasks

    work = tmp_path_factory.mktemp("shoe-soles-version")
    stage_source(SHOE_SOLES, work / "staged", tasks=ingestion_tasks("segment"))
    return _version(work / "staged", work)[1]


def _trained(weights: Path, dataset, name: str, work: Path):
    """A training's outcome: `weights` in a run of their own, measured on test."""
    from mlflow.tracking import MlflowClient

    from visionops.training.candidates import CandidateResult
    from visionops.training.stages import evaluate_challenger
    from visionops.training.tracking import log_checked_file

    client = MlflowClient()
    experiment = client.get_experiment_by_name("race") or client.get_experiment(
        client.create_experiment(
            "race", artifact_location=(work / "artifacts").as_uri()
        )
    )
    run_id = client.create_run(experiment.experiment_id).info.run_id
    client.log_param(run_id, "imgsz", SEG_IMGSZ)
    client.log_param(run_id, "device", "cpu")
    log_checked_file(run_id, weights, "weights")
    selected = CandidateResult(
        task=SEGMENT,
        name=name,
        model=SEGMENT.default_model,
        train={"imgsz": SEG_IMGSZ, "device": "cpu"},
        pretrained=False,
        weights_note="",
        val={},
        epochs_run=1,
        resumed=False,
        speed_ms={},
        size_mb=1.0,
        run_key=name,
        mlflow_run_id=run_id,
    )
    evaluation = evaluate_challenger(weights, dataset, selected, MEASURED, work / name)
    return selected, evaluation


@pytest.mark.parametrize("first", ["worse", "better"])
def test_two_trainings_started_together_end_with_the_better_champion(
    local_mlflow, shoe_soles, seg_weights, tmp_path: Path, first: str
) -> None:
    """Both trainings measured the champion of their start (none); whichever
    finishes second finds the alias moved, measures the new champion on the
    same test split and takes its place only if it beats it."""
    from mlflow.tracking import MlflowClient

    from visionops.training.stages import evaluate_champion, promote_challenger
    from visionops.training.tracking import alias_version

    rule = PromotionSettings(rule="margin", metric="pixel_accuracy")
    everywhere = _everywhere_copy(seg_weights, tmp_path / "everywhere" / "best.pt")
    runs = {
        "better": _trained(seg_weights, shoe_soles, "better", tmp_path),
        "worse": _trained(everywhere, shoe_soles, "worse", tmp_path),
    }
    score = {k: e.report.metrics["pixel_accuracy"] for k, (_, e) in runs.items()}
    assert score["better"] > score["worse"]  # masks all over miss the background
    at_start = evaluate_champion(shoe_soles, "soles", MEASURED, tmp_path / "start")
    assert at_start.champion is None

    def finish(name: str):
        selected, evaluation = runs[name]
        return promote_challenger(
            selected,
            evaluation.report,
            at_start,
            evaluation.onnx,
            rule,
            "soles",
            rescore=lambda: evaluate_champion(
                shoe_soles, "soles", MEASURED, tmp_path / f"again-{name}"
            ),
        )

    second = "worse" if first == "better" else "better"
    early, late = finish(first), finish(second)
    assert early.decision.promote and "first model" in early.decision.reason
    assert f"moved from none to v{early.version}" in late.decision.reason
    assert f"champion v{early.version}" in late.decision.reason
    assert late.decision.champion_version == early.version
    # The champion was measured again, on the same split: the same score.
    assert late.decision.champion_score == pytest.approx(score[first])
    assert late.decision.promote is (second == "better")
    winner = early if first == "better" else late
    assert alias_version("soles", "champion") == winner.version
    client = MlflowClient()
    for name, promotion in ((first, early), (second, late)):
        run_id = runs[name][0].mlflow_run_id
        files = {f.path for f in client.list_artifacts(run_id, "weights")}
        files |= {f.path for f in client.list_artifacts(run_id, "onnx")}
        assert files == {"weights/best.pt", f"onnx/{runs[name][1].onnx.name}"}
        assert "decision.md" in {f.path for f in client.list_artifacts(run_id)}
        tags = client.get_model_version("soles", promotion.version).tags
        assert tags["promoted"] == str(promotion.decision.promote).lower()


def test_racing_promotions_move_the_alias_once(local_mlflow, tmp_path: Path) -> None:
    from visionops.training.stages import promote_version
    from visionops.training.tracking import alias_version

    first, *racers = _versions(tmp_path, 5)
    start = threading.Barrier(len(racers))
    applied: dict[str, bool] = {}

    def race(version: str) -> None:
        start.wait()
        applied[version] = promote_version("cars", version, _beats(first)).promote

    threads = [threading.Thread(target=race, args=(v,)) for v in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [v for v, promoted in applied.items() if promoted]
    assert len(applied) == len(racers) and len(winners) == 1
    assert alias_version("cars", "champion") == winners[0]


def test_resume_skips_a_folder_another_training_holds(tmp_path: Path) -> None:
    from visionops.core.files import try_lock
    from visionops.training.yolo import LAST_CHECKPOINT, TRAINING_LOCK, _resumable

    run_dir = tmp_path / "run"
    older, newer = run_dir / "a", run_dir / "b"
    for folder in (older, newer):
        (folder / LAST_CHECKPOINT).parent.mkdir(parents=True)
        (folder / LAST_CHECKPOINT).write_bytes(b"checkpoint")
    os.utime(older / LAST_CHECKPOINT, (1, 1))  # `newer` is the newest checkpoint
    running = try_lock(newer / TRAINING_LOCK)  # a training still runs in it
    assert running is not None
    folder, lock = _resumable(run_dir)
    assert folder == older and lock is not None
    assert _resumable(run_dir) == (None, None)  # both held now
    lock.close()
    running.close()
    folder, lock = _resumable(run_dir)
    assert folder == newer
    lock.close()


def test_a_second_training_keeps_the_first_ones_folder(
    tiny_dataset, tmp_path: Path
) -> None:
    from visionops.core.files import try_lock
    from visionops.training.yolo import TRAINING_LOCK, train

    run_dir = tmp_path / "run"
    first = run_dir / "first"
    (first / "weights").mkdir(parents=True)
    (first / "weights" / "last.pt").write_bytes(b"the first training's checkpoint")
    running = try_lock(first / TRAINING_LOCK)
    settings = TrainSettings(imgsz=64, epochs=1, batch=8, workers=0, device="cpu")
    outcome = train(
        "yolo11n",
        settings,
        tiny_dataset.data_yaml,
        run_dir,
        source="yolo11n.yaml",
        task=DETECT,
        resume=True,  # the only checkpoint is held: trains afresh, elsewhere
    )
    running.close()
    assert outcome.resumed is False
    assert outcome.save_dir.parent == run_dir and outcome.save_dir != first
    assert outcome.best.is_file()
    assert (first / "weights" / "last.pt").read_bytes() == (
        b"the first training's checkpoint"
    )
