"""Real training pipeline runs on the local stack: MLflow runs, registry, promotion."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[2]
MODEL = "test-detector"
TINY = [*TINY_TRAINING, "grid={lr0: [0.01, 0.02]}", f"model.name={MODEL}"]


def _run(*extra: str) -> int:
    import run

    args = ["--pipeline", "training"]
    for override in [*TINY, *extra]:
        args += ["--set", override]
    return run.main(args)


@pytest.fixture(scope="module")
def trained(sample_dir: Path) -> dict:
    """Ingests the sample, applies the local stack, trains twice (second run worse)."""
    import mlflow
    from zenml.client import Client

    import run
    from tests.conftest import OUTBOUND

    assert run.main(["--stack", "local"]) == 0
    assert (
        run.main(
            [
                "--pipeline",
                "ingestion",
                "--source",
                str(sample_dir),
                "--set",
                "anonymize.enabled=false",
            ]
        )
        == 0
    )
    OUTBOUND.clear()
    assert _run() == 0
    first_run = Client().get_pipeline("training").last_run
    # The same candidates, but the rule demands an impossible margin: not promoted.
    # Without quantization, so its version is FP32 and has no INT8 record.
    assert _run("promotion.margin=1.0", "evaluation.quantize=false") == 0
    second_run = Client().get_pipeline("training").last_run
    experiment = mlflow.get_experiment_by_name("training")
    return {
        "first": first_run,
        "second": second_run,
        "experiment": experiment,
        "outbound": list(OUTBOUND),
    }


def test_one_nested_mlflow_run_per_candidate(trained: dict) -> None:
    import mlflow

    runs = mlflow.search_runs(
        [trained["experiment"].experiment_id], output_format="list"
    )
    first_id = str(trained["first"].id)
    mine = [r for r in runs if r.data.tags.get("zenml.pipeline_run_id") == first_id]
    assert sorted(r.data.tags["candidate"] for r in mine) == [
        "c0-yolo11n-lr0=0.01",
        "c1-yolo11n-lr0=0.02",
    ]
    parents = {r.data.tags.get("mlflow.parentRunId") for r in mine}
    assert (
        len(parents) == 1 and None not in parents
    )  # both nested in the pipeline run's run
    client = mlflow.MlflowClient()
    for r in mine:
        assert r.data.params["lr0"] in ("0.01", "0.02")
        assert r.data.params["pretrained"] == "False"
        assert r.data.tags["dataset_hash"] and r.data.tags["version.ultralytics"]
        history = client.get_metric_history(r.info.run_id, "metrics/mAP50-95B")
        assert len(history) >= 1  # one point per epoch (+ the final best.pt validation)
        assert "val_map50_95" in r.data.metrics
        files = {f.path for f in client.list_artifacts(r.info.run_id, "training")}
        assert "training/results.csv" in files and "training/results.png" in files
        assert [f.path for f in client.list_artifacts(r.info.run_id, "weights")] == [
            "weights/best.pt"
        ]
    assert trained["outbound"] == []


def test_selected_on_val_evaluated_on_test(trained: dict) -> None:
    import mlflow

    run = trained["first"]
    selected = run.steps["select_candidate"].outputs["selected_candidate"][0].load()
    results = [
        run.steps[f"train_candidate_{i}"].outputs["candidate_result"][0].load()
        for i in (0, 1)
    ]
    assert selected.val["map50_95"] == max(r.val["map50_95"] for r in results)
    evaluation = run.steps["evaluate_model"].outputs["test_evaluation"][0].load()
    assert evaluation.split == "test" and evaluation.images >= 1
    assert evaluation.latency_ms and evaluation.latency_ms > 0
    assert len(evaluation.confusion_matrix) == len(evaluation.class_names) + 1
    metrics = mlflow.get_run(selected.mlflow_run_id).data.metrics
    assert metrics["test_map50_95"] == pytest.approx(evaluation.metrics["map50_95"])
    table = run.steps["select_candidate"].outputs["candidate_comparison"][0].load()
    assert len(table) == 2 and table["selected"].sum() == 1


def test_int8_scores_decision_and_served_precision_recorded(trained: dict) -> None:
    import mlflow

    run = trained["first"]
    selected = run.steps["select_candidate"].outputs["selected_candidate"][0].load()
    evaluation = run.steps["evaluate_model"].outputs["test_evaluation"][0].load()
    quantization = evaluation.quantization
    assert quantization is not None and quantization.metric == "map50_95"
    assert 0 <= quantization.fp32_score <= 1 and 0 <= quantization.int8_score <= 1
    assert quantization.fp32_latency_ms > 0 and quantization.int8_latency_ms > 0
    assert quantization.calibration_images >= 1  # from the validation split
    # The default rule reads the paired bootstrap of INT8 - FP32 on the test split.
    interval = quantization.interval
    assert quantization.rule == "confident" and interval is not None
    assert interval.images == evaluation.images and interval.resamples == 1000
    assert interval.low <= interval.difference <= interval.high
    assert interval.difference == pytest.approx(
        quantization.int8_score - quantization.fp32_score, abs=1e-9
    )
    expected = "fp32" if -interval.high > quantization.max_drop else "int8"
    assert quantization.precision == expected
    served = run.steps["evaluate_model"].outputs["onnx_model"][0].load().path
    assert served.name.endswith(".int8.onnx") == (expected == "int8")

    candidate = mlflow.get_run(selected.mlflow_run_id)
    metrics = candidate.data.metrics
    assert metrics["test_onnx_fp32_map50_95"] == pytest.approx(quantization.fp32_score)
    assert metrics["test_onnx_int8_map50_95"] == pytest.approx(quantization.int8_score)
    assert metrics["test_onnx_int8_latency_ms"] > 0
    assert candidate.data.tags["precision"] == expected
    exports = {
        f.path
        for f in mlflow.MlflowClient().list_artifacts(candidate.info.run_id, "onnx")
    }
    assert {f"onnx/{served.name}"} < exports  # both exports, the served one tagged

    client = mlflow.MlflowClient()
    v1 = client.get_model_version(MODEL, "1")
    assert v1.tags["precision"] == expected
    assert v1.tags["onnx_artifact"] == f"onnx/{served.name}"
    assert float(v1.tags["quantization.int8_score"]) == pytest.approx(
        quantization.int8_score, abs=1e-6
    )
    report = str(run.steps["promote_model"].outputs["decision_report"][0].load())
    assert f"## Served precision: {expected.upper()}" in report
    assert "| latency (ms, CPU, 1 thread) |" in report
    assert f"INT8 - FP32: {interval.text()}." in report
    assert "Challenger - champion: no interval (no champion yet)." in report
    assert f", {evaluation.images} images)" in report  # the test split's size
    assert v1.tags["quantization.rule"] == "confident"
    assert v1.tags["quantization.test_images"] == str(evaluation.images)
    assert metrics["test_onnx_int8_vs_fp32_ci_low"] == pytest.approx(interval.low)
    # quantize: false serves the FP32 export.
    v2 = client.get_model_version(MODEL, "2")
    assert v2.tags.get("precision", "fp32") == "fp32"
    assert v2.tags["onnx_artifact"].endswith(".onnx")
    assert not v2.tags["onnx_artifact"].endswith(".int8.onnx")


def test_dataset_is_an_input_of_every_training_run(trained: dict) -> None:
    import mlflow

    runs = mlflow.search_runs(
        [trained["experiment"].experiment_id], output_format="list"
    )
    first_id = str(trained["first"].id)
    mine = [r for r in runs if r.data.tags.get("zenml.pipeline_run_id") == first_id]
    assert len(mine) == 2
    for r in mine:
        inputs = mlflow.get_run(r.info.run_id).inputs.dataset_inputs
        assert len(inputs) == 1
        dataset, tags = inputs[0].dataset, {t.key: t.value for t in inputs[0].tags}
        full_hash = r.data.tags["dataset_hash"]
        assert dataset.digest == full_hash[:36]
        assert dataset.name.endswith(f"@{full_hash[:12]}")
        assert tags["dataset_hash"] == full_hash
        assert tags["mlflow.data.context"] == "training"
        profile = json.loads(dataset.profile)
        assert profile["task"] == "detect" and profile["images"]["test"] >= 1
        assert int(tags["train_images"]) == profile["images"]["train"] >= 1


def test_first_run_promoted_second_not(trained: dict) -> None:
    import mlflow
    from zenml.client import Client

    first = (
        trained["first"].steps["promote_model"].outputs["promotion_decision"][0].load()
    )
    second = (
        trained["second"].steps["promote_model"].outputs["promotion_decision"][0].load()
    )
    assert first.promote is True and "first model" in first.reason
    assert second.promote is False and "does not beat champion v1" in second.reason
    report = (
        trained["second"].steps["promote_model"].outputs["decision_report"][0].load()
    )
    assert "NOT PROMOTED" in str(report)
    # Challenger minus champion, on the same test images, with its interval.
    assert second.rule == "confident" and second.interval is not None
    assert second.interval.images == second.test_images >= 1
    assert f"Challenger - champion, mAP50-95: {second.interval.text()}" in str(report)
    assert f"{second.test_images} images" in str(report)

    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    challenger = client.get_model_version_by_alias(MODEL, "challenger")
    assert str(challenger.version) == "2"
    assert challenger.tags["promoted"] == "false"
    assert challenger.tags["zenml.pipeline_run_id"] == str(trained["second"].id)
    zenml = Client()
    assert str(zenml.get_model_version(MODEL, "production").number) == "1"
    v2 = zenml.get_model_version(MODEL, 2)
    assert v2.stage is None or str(v2.stage) != "production"
    assert v2.run_metadata["promotion"]["promote"] is False


def test_champion_loads_as_pyfunc_and_predicts(trained: dict, tiny_dataset) -> None:
    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    images = sorted((tiny_dataset.root / "images" / "test").glob("*"))[:2]
    frame = pd.DataFrame(
        {"image": [base64.b64encode(p.read_bytes()).decode() for p in images]}
    )
    boxes = model.predict(frame, params={"conf": 0.0001})
    assert {"image_index", "class_name", "confidence", "x1", "y1", "x2", "y2"} <= set(
        boxes.columns
    )
    assert len(boxes) > 0 and set(boxes["class_name"]) == {"board"}


def test_status_reports_the_champion(
    trained: dict, capsys: pytest.CaptureFixture
) -> None:
    import run

    assert run.main(["--status", "--json", "--set", f"model.name={MODEL}"]) == 0
    champ = json.loads(capsys.readouterr().out)["champion"]
    assert champ["name"] == MODEL and champ["version"] == "1"
    assert champ["mlflow_model_uri"] == f"models:/{MODEL}@champion"
    assert champ["onnx"].endswith(".onnx") and champ["test_metrics"]["map50_95"] >= 0
    assert champ["zenml_model_version"] == "1"
    # The precision the champion is served in, as its version was tagged.
    import mlflow

    served = mlflow.MlflowClient().get_model_version(MODEL, "1").tags["precision"]
    assert champ["precision"] == served and served in ("int8", "fp32")
    # The INT8 verdict's rule, interval and test-split size.
    gate = champ["decisions"]["quantization"]
    assert gate["rule"] == "confident" and gate["test_images"] >= 1
    assert gate["ci_low"] <= gate["difference"] <= gate["ci_high"]
    assert run.main(["--status", "--set", f"model.name={MODEL}"]) == 0
    text = capsys.readouterr().out
    assert f"({served.upper()}, " in text
    assert f"INT8 gate (confident): INT8 - FP32 {gate['difference']:+.4f}" in text
    assert f"on {gate['test_images']} test images" in text
    assert run.main(["--status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["stack"]["name"] == "local"
    assert status["stack"]["tracking_uri"].startswith("sqlite:///")


def test_training_config_errors_fail_before_work(capsys: pytest.CaptureFixture) -> None:
    import run

    assert run.main(["--pipeline", "training", "--set", "grid={lr: [1]}"]) == 2
    assert "grid.lr" in capsys.readouterr().err
    assert run.main(["--pipeline", "training", "--set", "pretrained=required"]) == 2
    assert "pretrained: required" in capsys.readouterr().err
    assert run.main(["--pipeline", "training", "--set", "dataset=ffffffff"]) == 2
    assert "no dataset hash prefix 'ffffffff'" in capsys.readouterr().err


def test_retraining_starts_from_the_champion(trained: dict) -> None:
    import mlflow
    from zenml.client import Client

    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert _run("models=[champion]", "grid={lr0: [0.02]}") == 0
    run = Client().get_pipeline("training").last_run
    runs = mlflow.search_runs(
        [trained["experiment"].experiment_id],
        filter_string=f"tags.`zenml.pipeline_run_id` = '{run.id}'",
        output_format="list",
    )
    started = f"{MODEL} v{champion.version}"
    candidates = [r for r in runs if "candidate" in r.data.tags]
    assert [r.data.tags["candidate"] for r in candidates] == [
        f"c0-champion-v{champion.version}-lr0=0.02"
    ]
    assert candidates[0].data.params["started_from"] == started
    assert candidates[0].data.tags["started_from"] == started
    report = run.steps["promote_model"].outputs["decision_report"][0].load()
    assert f"fine-tuned from {started}" in str(report)


def test_retraining_without_a_champion_fails_before_work(
    trained: dict, capsys: pytest.CaptureFixture
) -> None:
    assert _run("models=[champion]", "model.name=never-trained") == 2
    err = capsys.readouterr().err
    assert "'never-trained' has no champion to start from yet" in err
    assert "--pipeline training --set 'models=[yolo11n]'" in err
