"""Training building blocks: candidates, weights resolution, promotion rule, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionops.config import PromotionSettings, TrainingParameters, TrainSettings
from visionops.training.candidates import CandidateResult, best_index, expand_candidates
from visionops.training.evaluate import EvalReport
from visionops.training.promotion import decide, decision_markdown
from visionops.training.yolo import PretrainedWeightsError, resolve_weights, train


def test_grid_fans_out_over_models_and_settings() -> None:
    params = TrainingParameters(
        models=["yolo11n", "yolo26n"], grid={"lr0": [0.01, 0.001]}
    )
    specs = expand_candidates(params)
    assert [(s.model, s.train.lr0) for s in specs] == [
        ("yolo11n", 0.01),
        ("yolo11n", 0.001),
        ("yolo26n", 0.01),
        ("yolo26n", 0.001),
    ]
    assert len({s.name for s in specs}) == 4
    grid_models = TrainingParameters(
        grid={"model": ["yolo11n", "yolo11s"], "imgsz": [64]}
    )
    assert [(s.model, s.train.imgsz) for s in expand_candidates(grid_models)] == [
        ("yolo11n", 64),
        ("yolo11s", 64),
    ]
    assert len(expand_candidates(TrainingParameters())) == 1


def _result(name: str, score: float) -> CandidateResult:
    return CandidateResult(
        name=name,
        model="yolo11n",
        train={},
        pretrained=False,
        weights_note="",
        val={"map50_95": score},
        epochs_run=1,
        resumed=False,
        speed_ms={},
        size_mb=1.0,
        run_key="k",
        mlflow_run_id="r",
    )


def test_selection_takes_the_best_validation_score() -> None:
    results = [_result("a", 0.2), _result("b", 0.5), _result("c", float("nan"))]
    assert best_index(results, "map50_95") == 1
    assert best_index([_result("a", 0.3), _result("b", 0.3)], "map50_95") == 0


def test_weights_fall_back_offline_and_required_fails(tmp_path: Path) -> None:
    choice = resolve_weights("yolo11n", "auto")
    assert choice.source == "yolo11n.yaml" and choice.pretrained is False
    assert "from scratch" in choice.note
    with pytest.raises(PretrainedWeightsError, match="pretrained: required"):
        resolve_weights("yolo11n", "required")
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"x")
    assert resolve_weights(str(weights), "required").pretrained is True
    with pytest.raises(FileNotFoundError):
        resolve_weights(str(tmp_path / "missing.pt"))


def _report(score: float, latency: float | None = 10.0) -> EvalReport:
    metrics = {k: score for k in ("map50_95", "map50", "precision", "recall", "f1")}
    return EvalReport(
        split="test",
        dataset_hash="h" * 64,
        weights_sha256="w",
        imgsz=64,
        images=5,
        metrics=metrics,
        per_class=[],
        class_names=["a"],
        confusion_matrix=[[1.0]],
        latency_ms=latency,
        latency_imgsz=64,
    )


def test_promotion_rule() -> None:
    rule = PromotionSettings(margin=0.01)
    assert decide(_report(0.5), None, rule).promote is True
    floor = PromotionSettings(min_score=0.6)
    first = decide(_report(0.5), None, floor)
    assert first.promote is False and "below the floor" in first.reason
    beaten = decide(_report(0.52), _report(0.5), rule, "3")
    assert beaten.promote is True and "beats champion v3" in beaten.reason
    close = decide(_report(0.505), _report(0.5), rule, "3")
    assert close.promote is False and "does not beat" in close.reason
    slow = decide(
        _report(0.9, latency=50), _report(0.5), PromotionSettings(max_latency_ms=20)
    )
    assert slow.promote is False and "latency" in slow.reason


def test_decision_report_shows_both_models_rule_and_verdict() -> None:
    decision = decide(_report(0.4), _report(0.5), PromotionSettings(), "2")
    text = decision_markdown(decision, _report(0.4), _report(0.5), "det")
    assert "NOT PROMOTED" in text and "champion v2" in text
    assert "| map50_95 **(rule)** | 0.4000 | 0.5000 |" in text
    assert "promote if map50_95 > champion + 0" in text


def test_resume_continues_from_the_last_checkpoint(
    tiny_dataset, tmp_path: Path
) -> None:
    settings = TrainSettings(imgsz=64, epochs=2, batch=8, workers=0, device="cpu")
    run_dir = tmp_path / "run"

    def stop_after_first_epoch(epoch: int, metrics: dict) -> None:
        raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train(
            "yolo11n",
            settings,
            tiny_dataset.data_yaml,
            run_dir,
            source="yolo11n.yaml",
            on_epoch_end=stop_after_first_epoch,
        )
    assert (run_dir / "weights" / "last.pt").is_file()
    seen: list[int] = []
    outcome = train(
        "yolo11n",
        settings,
        tiny_dataset.data_yaml,
        run_dir,
        source="yolo11n.yaml",
        resume=True,
        on_epoch_end=lambda epoch, metrics: seen.append(epoch),
    )
    assert outcome.resumed is True
    # Epoch 0 is not trained again; the last call is Ultralytics' final validation
    # of best.pt, reported at step `epochs`.
    assert seen == [1, 2]
    assert outcome.epochs_run == 2
    assert outcome.best.is_file()
    assert set(outcome.val_metrics) == {
        "map50_95",
        "map50",
        "precision",
        "recall",
        "f1",
    }
