"""Two trainings at once: one champion move at a time, one folder per training."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from visionops.config import TrainSettings
from visionops.tasks import get_task

DETECT = get_task("detect")


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
