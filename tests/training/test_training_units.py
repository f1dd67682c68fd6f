"""Training building blocks: candidates, weights resolution, promotion rule, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionops.config import PromotionSettings, TrainingParameters, TrainSettings
from visionops.engine.report import EvalReport
from visionops.tasks import get_task
from visionops.training.candidates import CandidateResult, best_index, expand_candidates
from visionops.training.promotion import decide, decision_markdown
from visionops.training.yolo import PretrainedWeightsError, resolve_weights, train

DETECT, CLASSIFY = get_task("detect"), get_task("classify")


def test_grid_fans_out_over_models_and_settings() -> None:
    params = TrainingParameters(
        models=["yolo11n", "yolo26n"], grid={"lr0": [0.01, 0.001]}
    )
    specs = expand_candidates(params, DETECT)
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
    assert [
        (s.model, s.train.imgsz) for s in expand_candidates(grid_models, DETECT)
    ] == [
        ("yolo11n", 64),
        ("yolo11s", 64),
    ]
    assert len(expand_candidates(TrainingParameters(), DETECT)) == 1


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
        task="detect",
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
    assert decide(DETECT, _report(0.5), None, rule).promote is True
    floor = PromotionSettings(min_score=0.6)
    first = decide(DETECT, _report(0.5), None, floor)
    assert first.promote is False and "below the floor" in first.reason
    beaten = decide(DETECT, _report(0.52), _report(0.5), rule, "3")
    assert beaten.promote is True and "beats champion v3" in beaten.reason
    close = decide(DETECT, _report(0.505), _report(0.5), rule, "3")
    assert close.promote is False and "does not beat" in close.reason
    slow = decide(
        DETECT,
        _report(0.9, latency=50),
        _report(0.5),
        PromotionSettings(max_latency_ms=20),
    )
    assert slow.promote is False and "latency" in slow.reason


def test_decision_report_shows_both_models_rule_and_verdict() -> None:
    decision = decide(DETECT, _report(0.4), _report(0.5), PromotionSettings(), "2")
    text = decision_markdown(DETECT, decision, _report(0.4), _report(0.5), "det")
    assert "NOT PROMOTED" in text and "champion v2" in text
    assert "| mAP50-95 **(rule)** | 0.4000 | 0.5000 |" in text
    assert "promote if mAP50-95 > champion + 0" in text


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
            task=DETECT,
            on_epoch_end=stop_after_first_epoch,
        )
    assert len(list(run_dir.glob("*/weights/last.pt"))) == 1
    seen: list[int] = []
    outcome = train(
        "yolo11n",
        settings,
        tiny_dataset.data_yaml,
        run_dir,
        source="yolo11n.yaml",
        task=DETECT,
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


# --- tasks: the seam every task plugs into ---------------------------------------


def test_tasks_registry_names_models_after_the_task() -> None:
    from visionops.tasks import TaskError, get_task

    detect, classify = get_task("detect"), get_task("classify")
    assert get_task(None) is detect and detect.default_model_name == "board-detector"
    assert classify.default_model_name == "image-classifier"
    assert detect.model_name("yolo11n") == "yolo11n"
    assert classify.model_name("yolo11n") == "yolo11n-cls"
    assert classify.model_name("yolo26s-cls") == "yolo26s-cls"
    assert classify.model_name("runs/best.pt") == "runs/best.pt"
    with pytest.raises(TaskError, match="use yolo11n-cls"):
        classify.model_name("yolo11n-seg")
    with pytest.raises(TaskError, match="not a detect model"):
        detect.model_name("yolo11m-cls")
    with pytest.raises(TaskError, match="unknown task"):
        get_task("pose")
    assert classify.val_metrics(
        {"metrics/accuracy_top1": 0.75, "metrics/accuracy_top5": 1.0}
    ) == {"top1": 0.75, "top5": 1.0}
    assert classify.test_metric_names(["a", "b"])[-4:] == [
        "roc_auc",
        "pr_auc",
        "sensitivity",
        "specificity",
    ]
    five = classify.test_metric_names(list("abcde"))
    assert "top5" in five and "recall_e" in five and "roc_auc" not in five


def test_classify_grid_trains_classify_models() -> None:
    params = TrainingParameters(
        task="classify", models=["yolo11n", "yolo26n-cls"], grid={"lr0": [0.01]}
    )
    specs = expand_candidates(params, CLASSIFY)
    assert [(s.model, s.task.name) for s in specs] == [
        ("yolo11n-cls", "classify"),
        ("yolo26n-cls", "classify"),
    ]
    assert specs[0].name == "c0-yolo11n-cls-lr0=0.01"
    # Detection keeps its names, hence its run keys and resumable checkpoints.
    assert expand_candidates(TrainingParameters(), DETECT)[0].name == "c0-yolo11n"


def _classify_report(**metrics: float) -> EvalReport:
    return EvalReport(
        task="classify",
        split="test",
        dataset_hash="h" * 64,
        weights_sha256="w",
        imgsz=64,
        images=10,
        metrics=metrics,
        per_class=[],
        class_names=["NORMAL", "PNEUMONIA"],
        confusion_matrix=[[1.0, 0.0], [0.0, 1.0]],
        latency_ms=5.0,
    )


def test_promotion_on_any_metric_with_floors() -> None:
    good = _classify_report(top1=0.9, recall_PNEUMONIA=0.95, specificity=0.85)
    weak = _classify_report(top1=0.8, recall_PNEUMONIA=0.7, specificity=0.9)
    unsafe = _classify_report(top1=0.95, recall_PNEUMONIA=0.99, specificity=0.6)
    default = decide(CLASSIFY, good, weak, PromotionSettings(), "1")
    assert default.metric == "top1" and default.promote is True
    rule = PromotionSettings(metric="recall_PNEUMONIA", floors={"specificity": 0.8})
    assert decide(CLASSIFY, good, weak, rule, "1").promote is True
    refused = decide(CLASSIFY, unsafe, weak, rule, "1")
    assert refused.promote is False
    assert refused.reason == "specificity 0.6000 is below its floor 0.8000"
    first = decide(CLASSIFY, unsafe, None, rule)
    assert first.promote is False and "below its floor" in first.reason
    with pytest.raises(ValueError, match="not a test metric"):
        decide(CLASSIFY, good, None, PromotionSettings(metric="map50_95"))
    text = decision_markdown(CLASSIFY, refused, unsafe, weak, "image-classifier")
    assert "| recall PNEUMONIA **(rule)** | 0.9900 | 0.7000 |" in text
    assert "| specificity (floor 0.8) | 0.6000 | 0.9000 |" in text
    assert "specificity >= 0.8" in text


def test_prepare_training_follows_the_dataset_task() -> None:
    from visionops.app.preflight import prepare_training
    from visionops.config import ConfigError

    classes = ["NORMAL", "PNEUMONIA"]
    meta = {"task": "classify", "classes": classes, "dataset_hash": "ab"}
    params = prepare_training(TrainingParameters(), meta, check_registry=False)
    assert params.task == "classify" and params.model.name == "image-classifier"
    assert "classifier" in params.model.description
    detect = prepare_training(TrainingParameters(), {}, check_registry=False)
    assert detect.task == "detect" and detect.model.name == "board-detector"
    named = TrainingParameters.model_validate({"model": {"name": "xray"}})
    assert prepare_training(named, meta, check_registry=False).model.name == "xray"

    def fails(match: str, **values) -> None:
        with pytest.raises(ConfigError, match=match):
            prepare_training(
                TrainingParameters.model_validate(values), meta, check_registry=False
            )

    fails("task: detect, but the dataset ab is labelled for classify", task="detect")
    fails("selection_metric: 'map50_95'", selection_metric="map50_95")
    fails("promotion.metric: 'map50_95'.*top1", promotion={"metric": "map50_95"})
    fails("promotion.floors.iou", promotion={"floors": {"iou": 0.5}})
    fails("positive_class: 'CAT'.*PNEUMONIA", evaluation={"positive_class": "CAT"})
    fails("models: .*use yolo11n-cls", models=["yolo11n-seg"])
    ok = prepare_training(
        TrainingParameters.model_validate(
            {
                "promotion": {
                    "metric": "recall_PNEUMONIA",
                    "floors": {"specificity": 0.8},
                },
                "evaluation": {"positive_class": "PNEUMONIA"},
            }
        ),
        meta,
        check_registry=False,
    )
    assert ok.promotion.floors == {"specificity": 0.8}


def test_models_may_start_from_the_champion() -> None:
    from pydantic import ValidationError

    from visionops.config import champion_version

    params = TrainingParameters.model_validate(
        {"models": ["champion", "Champion@v3", "champion@4"], "model": {"name": "m"}}
    )
    assert params.models == ["champion", "champion@v3", "champion@4"]
    assert [champion_version(m) for m in params.models] == [None, "3", "4"]
    with pytest.raises(ValidationError, match="champion@v3"):
        TrainingParameters.model_validate({"models": ["champion@latest"]})
    specs = expand_candidates(
        params.model_copy(update={"models": ["champion@3"]}), get_task("classify")
    )
    # The task adds no suffix to a registered version; the name says which one.
    assert [(s.name, s.model, s.registered) for s in specs] == [
        ("c0-champion-v3", "champion@3", "m")
    ]


# --- the champion and the stages, on a throwaway MLflow store ---------------------


@pytest.fixture
def local_mlflow(tmp_path: Path):
    """MLflow on a SQLite file of its own; the previous tracking URI comes back."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow
    mlflow.set_tracking_uri(previous)


def test_champion_reads_what_registration_wrote(local_mlflow, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from visionops.training.champion import (
        Champion,
        NoChampionError,
        TaskMismatchError,
        check_model_task,
        version_tags,
    )
    from visionops.training.tracking import set_alias

    onnx = tmp_path / "best.onnx"
    onnx.write_bytes(b"onnx bytes")
    client = MlflowClient()
    # Not the session's active experiment; artifacts in tmp, not ./mlruns.
    experiment = client.create_experiment(
        "units", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    with local_mlflow.start_run(experiment_id=experiment) as run:
        local_mlflow.log_params({"imgsz": 64, "device": "cpu"})
        local_mlflow.log_artifact(str(onnx), "onnx")
        local_mlflow.log_text("weights", "weights/best.pt")
    assert Champion.lookup("xray") is None
    with pytest.raises(NoChampionError, match="xray has no champion"):
        Champion.get("xray")
    tags = version_tags(
        task=CLASSIFY,
        class_names=["NORMAL", "PNEUMONIA"],
        test_metrics={"top1": 0.75, "roc_auc": 0.8},
        onnx_artifact="onnx/best.onnx",
        onnx_latency_ms=2.5,
        serving_imgsz=96,
    )
    client.create_registered_model("xray")
    version = client.create_model_version(
        "xray",
        f"{run.info.artifact_uri}/onnx",
        run_id=run.info.run_id,
        tags={**tags, "dataset_hash": "abc"},
    ).version
    set_alias("xray", "champion", str(version))
    champion = Champion.get("xray")
    assert (champion.task, champion.version, champion.imgsz) == ("classify", "1", 64)
    assert champion.serving_imgsz == 96 and champion.onnx_latency_ms == 2.5
    assert champion.class_names == ["NORMAL", "PNEUMONIA"]
    assert champion.test_metrics == {"top1": 0.75, "roc_auc": 0.8}
    assert champion.model_uri == "models:/xray@champion"
    assert champion.onnx_uri.endswith("/onnx/best.onnx")
    assert champion.fetch_onnx(tmp_path / "got").read_bytes() == b"onnx bytes"
    assert champion.fetch_weights(tmp_path / "w").read_text() == "weights"
    lineage = champion.lineage()
    assert lineage["task"] == "classify" and lineage["dataset_hash"] == "abc"
    assert lineage["mlflow_model_uri"] == "models:/xray/1"

    check_model_task("xray", CLASSIFY)
    check_model_task("never-registered", DETECT)
    with pytest.raises(TaskMismatchError, match="'xray' holds classify models"):
        check_model_task("xray", DETECT)
    # Versions registered before tasks were recorded are detectors.
    client.delete_model_version_tag("xray", "1", "task")
    assert Champion.get("xray").task == "detect"


def test_selection_uses_the_task_default_metric() -> None:
    from visionops.training.stages import select_candidate

    def result(name: str, top1: float) -> CandidateResult:
        return _result(name, 0.0).model_copy(
            update={"task": CLASSIFY, "val": {"top1": top1, "top5": 1.0}}
        )

    selection = select_candidate([result("a", 0.6), result("b", 0.9)], None)
    assert (selection.index, selection.metric) == (1, "top1")
    assert [row["selected"] for row in selection.rows] == [False, True]
    with pytest.raises(ValueError, match="choose one of \\['top1', 'top5'\\]"):
        select_candidate([result("a", 0.6)], "map50_95")


def test_classify_task_predicts_and_renders_with_clscore_parts() -> None:
    import numpy as np

    from visionops.tasks import get_task
    from visionops.tasks.classify.onnx import Classification

    task = get_task("classify")
    prediction = Classification(np.array([0.2, 0.8], dtype=np.float32))
    names = {0: "NORMAL", 1: "PNEUMONIA"}
    records = prediction.to_records(names)
    assert records[0]["class_name"] == "PNEUMONIA"
    assert records[0]["probability"] == pytest.approx(0.8)
    frame = np.zeros((64, 64, 3), np.uint8)
    drawn = task.render(frame, prediction, names)
    assert drawn.shape == frame.shape and drawn.any() and not frame.any()


def test_int8_gate_serves_int8_within_the_drop_and_fp32_beyond() -> None:
    from visionops.training.quantization import gate

    within = gate("map50_95", 0.500, 0.492, 0.01)
    assert within[0] == "int8" and "within 0.01" in within[1]
    at_limit = gate("map50_95", 0.50, 0.49, 0.01)  # exactly the allowed drop
    assert at_limit[0] == "int8"
    better = gate("top1", 0.80, 0.81, 0.01)  # INT8 may score higher
    assert better[0] == "int8"
    beyond = gate("map50_95", 0.500, 0.485, 0.01)
    assert beyond[0] == "fp32" and "drops 0.0150" in beyond[1]
    strict = gate("map50_95", 0.5, 0.4999, 0.0)
    assert strict[0] == "fp32"
    assert gate("map50_95", 0.5, None, 0.01)[0] == "fp32"


def test_decision_report_and_tags_carry_the_int8_decision() -> None:
    from visionops.engine.report import QuantizationReport
    from visionops.training.champion import Champion
    from visionops.training.quantization import gate

    precision, reason = gate("map50_95", 0.40, 0.395, 0.01)
    quantization = QuantizationReport(
        metric="map50_95",
        max_drop=0.01,
        fp32_score=0.40,
        int8_score=0.395,
        fp32_latency_ms=12.0,
        int8_latency_ms=7.0,
        calibration_images=50,
        precision=precision,
        reason=reason,
    )
    challenger = _report(0.4).model_copy(update={"quantization": quantization})
    decision = decide(DETECT, challenger, None, PromotionSettings())
    text = decision_markdown(DETECT, decision, challenger, None, "det")
    assert "## Served precision: INT8" in text
    assert "| mAP50-95 | 0.4000 | 0.3950 |" in text
    assert "| latency (ms, CPU, 1 thread) | 12.0 | 7.0 |" in text
    assert "50 validation images" in text
    tags = quantization.tags()
    assert tags["precision"] == "int8"
    assert tags["quantization.fp32_score"] == "0.400000"
    assert tags["quantization.int8_latency_ms"] == "7.000000"
    assert quantization.mlflow_metrics() == {
        "test_onnx_fp32_map50_95": 0.40,
        "test_onnx_int8_map50_95": 0.395,
        "test_onnx_fp32_latency_ms": 12.0,
        "test_onnx_int8_latency_ms": 7.0,
    }
    # Without the gate (quantize: false, older versions) the champion is FP32.
    fields = {"name": "m", "version": "1", "run_id": "r"}
    assert Champion(**fields).lineage()["precision"] == "fp32"
    assert Champion(**fields, precision="int8").lineage()["precision"] == "int8"
