"""Paired bootstrap on constructed per-image results: intervals, verdicts, reports."""

from __future__ import annotations

import numpy as np
import pytest

from visionops.config import BootstrapSettings, EvaluationSettings, PromotionSettings
from visionops.engine.bootstrap import PerImage, compare_reports, paired_bootstrap
from visionops.engine.report import EvalReport, QuantizationReport
from visionops.tasks import get_task
from visionops.tasks.classify.metrics import classification_metrics
from visionops.tasks.detect.resample import Matches, tp_bits
from visionops.tasks.segment.metrics import semantic_metrics
from visionops.training.promotion import decide, decision_markdown
from visionops.training.quantization import gate

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _detections(n: int, seed: int, skill: float = 0.6, classes: int = 3) -> PerImage:
    """Per-image matches as Ultralytics' validator makes them: each found target
    is a true positive up to its IoU, plus unmatched low-confidence boxes."""
    rng = np.random.default_rng(seed)
    values: dict[str, list] = {"tp": [], "conf": [], "pred_cls": [], "target_cls": []}
    for _ in range(n):
        targets = rng.integers(0, classes, int(rng.integers(1, 6)))
        found = targets[rng.random(len(targets)) < skill]
        junk = int(rng.integers(0, 8))
        tp = np.zeros((len(found) + junk, 10), bool)
        tp[: len(found)] = rng.uniform(0.4, 1.0, len(found))[:, None] >= THRESHOLDS
        conf = np.concatenate(
            [rng.uniform(0.3, 1.0, len(found)), rng.uniform(0.0, 0.6, junk)]
        )
        values["tp"].append(tp_bits(tp))
        values["conf"].append(conf.tolist())
        values["pred_cls"].append([*found.tolist(), *rng.integers(0, classes, junk)])
        values["target_cls"].append(targets.tolist())
    return PerImage(images=[f"{i}.jpg" for i in range(n)], values=values)


def _classifications(correct: np.ndarray) -> PerImage:
    """Two classes; the image is right when `correct`, with a confident guess."""
    labels = np.arange(len(correct)) % 2
    guess = np.where(correct, labels, 1 - labels)
    probs = np.where(np.arange(2)[None] == guess[:, None], 0.9, 0.1)
    return PerImage(
        images=[f"{i}.png" for i in range(len(correct))],
        values={"label": [[int(v)] for v in labels], "probs": probs.tolist()},
    )


def _report(task: str, per_image: PerImage, metrics: dict[str, float]) -> EvalReport:
    return EvalReport(
        task=task,
        split="test",
        dataset_hash="h" * 64,
        weights_sha256="w",
        imgsz=64,
        images=len(per_image.images),
        metrics=metrics,
        per_class=[],
        class_names=["NORMAL", "PNEUMONIA"] if task == "classify" else ["a", "b", "c"],
        confusion_matrix=[[1.0]],
        per_image=per_image,
    )


@pytest.mark.parametrize("images", [1, 9, 60])
def test_vectorised_ap_is_ultralytics_ap_on_every_resample(images: int) -> None:
    results = _detections(images, seed=images)
    matches = Matches(results)
    draws = np.random.default_rng(0).integers(0, images, (25, images))
    draws[0] = np.arange(images)
    ap, present = matches.average_precision(draws)
    maps = get_task("detect").resample_metric(results, "map50_95", ["a", "b", "c"])
    for row, (draw, value) in enumerate(zip(draws, maps(draws), strict=True)):
        reference = matches.ultralytics(draw)
        ap_reference, classes = reference[5], reference[6]
        assert sorted(np.flatnonzero(present[row])) == sorted(classes)
        np.testing.assert_allclose(ap[row][classes], ap_reference, atol=1e-12)
        assert value == pytest.approx(ap_reference.mean(), abs=1e-12)


def test_a_class_predicted_but_absent_from_a_resample_is_left_out() -> None:
    true_at_all = tp_bits(np.ones((1, 10), bool))[0]
    results = PerImage(
        images=["a.jpg", "b.jpg"],
        values={
            "tp": [[true_at_all], [0]],
            "conf": [[0.9], [0.8]],
            "pred_cls": [[0], [1]],  # b.jpg: a false class-1 box
            "target_cls": [[0], [0]],
        },
    )
    maps = get_task("detect").resample_metric(results, "map50_95", ["x", "y"])
    draws = np.array([[0, 1], [1, 1], [0, 0]])
    expected = [Matches(results).ultralytics(d)[5].mean() for d in draws]
    assert maps(draws) == pytest.approx(expected, abs=1e-12)
    assert expected[1] == 0.0 and expected[2] == pytest.approx(0.995)  # COCO 101 pts


def test_known_difference_is_inside_the_interval() -> None:
    # 300 images: the challenger is right on 80%, the champion on 60%.
    rng = np.random.default_rng(1)
    strong, weak = rng.random(300) < 0.8, rng.random(300) < 0.6
    task = get_task("classify")
    names = ["NORMAL", "PNEUMONIA"]
    interval = paired_bootstrap(
        task.resample_metric(_classifications(strong), "top1", names),
        task.resample_metric(_classifications(weak), "top1", names),
        300,
        metric="top1",
    )
    assert interval.difference == pytest.approx(strong.mean() - weak.mean())
    assert interval.low < interval.difference < interval.high
    assert interval.low > 0.1 and interval.high < 0.3  # 0.2 apart, recovered
    assert interval.noise() is None  # 300 images tell them apart


def test_detection_difference_matches_the_reports_and_is_inside() -> None:
    task = get_task("detect")
    better, worse = _detections(200, seed=3, skill=0.8), _detections(200, seed=3)
    names = ["a", "b", "c"]
    full = np.arange(200)
    scores = [
        float(Matches(r).ultralytics(full)[5].mean()) for r in (better, worse)
    ]  # Ultralytics' own mAP50-95 of each
    challenger = _report("detect", better, {"map50_95": scores[0]})
    champion = _report("detect", worse, {"map50_95": scores[1]})
    interval, note = compare_reports(
        task, challenger, champion, "map50_95", resamples=300
    )
    assert note == "" and interval is not None
    assert interval.difference == pytest.approx(scores[0] - scores[1], abs=1e-12)
    assert interval.low < interval.difference < interval.high
    assert interval.low > 0  # a 0.8 against a 0.6 detector on 200 images
    assert task.resample_metric(better, "map50", names)(full[None])[0] == (
        pytest.approx(float(Matches(better).ultralytics(full)[5][:, 0].mean()))
    )


def test_identical_models_give_an_interval_around_zero() -> None:
    task = get_task("detect")
    results = _detections(9, seed=5)
    report = _report("detect", results, {"map50_95": 0.3})
    same, _ = compare_reports(task, report, report, "map50_95")
    assert same is not None and same.low == same.high == same.difference == 0.0
    # Two models of equal skill on 9 images: the interval holds 0, and says so.
    rng = np.random.default_rng(2)
    a, b = rng.random(9) < 0.7, rng.random(9) < 0.7
    interval = paired_bootstrap(
        task_metric := get_task("classify").resample_metric(
            _classifications(a), "top1", ["NORMAL", "PNEUMONIA"]
        ),
        get_task("classify").resample_metric(
            _classifications(b), "top1", ["NORMAL", "PNEUMONIA"]
        ),
        9,
        metric="top1",
    )
    assert task_metric is not None and interval.low <= 0 <= interval.high
    noise = interval.noise()
    assert noise is not None and noise.startswith("9 test images: differences under")


def test_same_seed_same_interval_and_verdict() -> None:
    task = get_task("detect")
    challenger = _report("detect", _detections(30, seed=7, skill=0.7), {})
    champion = _report("detect", _detections(30, seed=7), {})
    challenger.metrics = {"map50_95": 0.5}
    champion.metrics = {"map50_95": 0.4}
    runs = [
        compare_reports(task, challenger, champion, "map50_95", seed=seed)[0]
        for seed in (0, 0, 1)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]  # another seed draws other images
    rule = PromotionSettings(rule="confident")
    verdicts = [
        decide(task, challenger, champion, rule, "1", i).promote for i in runs[:2]
    ]
    assert verdicts[0] == verdicts[1]


def test_confident_rule_promotes_only_above_the_margin() -> None:
    rng = np.random.default_rng(4)
    champion_hits = rng.random(400) < 0.6
    noisy = champion_hits.copy()
    noisy[:4] = ~noisy[:4]  # the same model but four images
    clearly = rng.random(400) < 0.9
    classify = get_task("classify")
    champion = _report("classify", _classifications(champion_hits), {})
    champion.metrics = {"top1": float(champion_hits.mean())}
    rule = PromotionSettings(rule="confident", margin=0.05)
    for hits, promoted in ((noisy, False), (clearly, True)):
        challenger = _report("classify", _classifications(hits), {})
        challenger.metrics = {"top1": float(hits.mean())}
        interval, _ = compare_reports(classify, challenger, champion, "top1")
        decision = decide(classify, challenger, champion, rule, "3", interval)
        assert decision.promote is promoted and decision.rule == "confident"
        assert decision.interval == interval and decision.test_images == 400
        text = decision_markdown(classify, decision, challenger, champion, "m")
        assert "**Rule (confident):**" in text
        assert "Challenger - champion, top-1: " in text and "400 images" in text
        tags = decision.tags()
        assert tags["promotion.rule"] == "confident"
        assert float(tags["promotion.ci_low"]) == pytest.approx(interval.low, abs=1e-6)
    # Without per-image results the margin rule decides, and the reason says so.
    bare = champion.model_copy(update={"per_image": None})
    interval, note = compare_reports(classify, bare, champion, "top1")
    decision = decide(classify, bare, champion, rule, "3", interval, note)
    assert interval is None and decision.rule == "margin"
    assert "no per-image results" in decision.reason


def test_int8_gate_confident_rule() -> None:
    task = get_task("classify")
    rng = np.random.default_rng(6)
    fp32_hits = rng.random(9) < 0.7
    int8_hits = fp32_hits.copy()
    int8_hits[np.flatnonzero(fp32_hits)[0]] = False  # one image lost: 0.11 drop
    fp32 = _report("classify", _classifications(fp32_hits), {})
    int8 = _report("classify", _classifications(int8_hits), {})
    interval, _ = compare_reports(task, int8, fp32, "top1")
    assert interval is not None and interval.high >= 0  # 9 images: can't tell
    # The margin rule refuses a 0.11 drop; the confident rule serves INT8.
    fp32_score, int8_score = float(fp32_hits.mean()), float(int8_hits.mean())
    assert gate("top1", fp32_score, int8_score, 0.01)[0] == "fp32"
    served, reason = gate(
        "top1", fp32_score, int8_score, 0.01, rule="confident", interval=interval
    )
    assert served == "int8" and "not confidently" in reason
    broken = _report("classify", _classifications(np.zeros(9, bool)), {})
    all_right = _report("classify", _classifications(np.ones(9, bool)), {})
    worse, _ = compare_reports(task, broken, all_right, "top1")
    assert gate("top1", 1.0, 0.0, 0.01, rule="confident", interval=worse)[0] == "fp32"
    report = QuantizationReport(
        metric="top1",
        max_drop=0.01,
        fp32_score=fp32_score,
        int8_score=int8_score,
        precision=served,
        reason=reason,
        rule="confident",
        interval=interval,
    )
    text = report.markdown()
    assert "**Rule (confident):**" in text and "INT8 - FP32: " in text
    assert "9 test images: differences under" in text
    assert report.tags()["quantization.test_images"] == "9"
    assert "test_onnx_int8_vs_fp32_ci_low" in report.mlflow_metrics()


def test_segment_and_classify_metrics_recomputed_per_image() -> None:
    rng = np.random.default_rng(8)
    names = ["sole", "heel"]
    pixels = rng.integers(0, 50, (12, 9))
    detections = _detections(12, seed=8, classes=2)
    results = PerImage(
        images=detections.images,
        values={
            **detections.values,
            "tp_m": detections.values["tp"],
            "confusion": pixels.tolist(),
        },
    )
    task = get_task("segment")
    draw = rng.integers(0, 12, (3, 12))
    miou = task.resample_metric(results, "miou", names)(draw)
    for row, value in zip(draw, miou, strict=True):
        summed = pixels[row].sum(axis=0).reshape(3, 3)
        assert value == pytest.approx(semantic_metrics(summed, names)["miou"])
    masks = task.resample_metric(results, "mask_map50_95", names)(draw)
    assert masks == pytest.approx(
        [Matches(results, "tp_m").ultralytics(r)[5].mean() for r in draw]
    )
    classified = _classifications(rng.random(20) < 0.5)
    labels = np.array(classified.values["label"]).ravel()
    probs = np.array(classified.values["probs"])
    classify = get_task("classify")
    for metric in ("top1", "macro_f1", "specificity"):
        values = classify.resample_metric(classified, metric, ["N", "P"])(draw % 20)
        expected = [
            classification_metrics(labels[r], probs[r], ["N", "P"]).metrics[metric]
            for r in draw % 20
        ]
        assert values == pytest.approx(expected)
    with pytest.raises(ValueError, match="not a segmentation metric"):
        task.resample_metric(results, "top1", names)


def test_bootstrap_settings_are_validated() -> None:
    assert BootstrapSettings().resamples == 1000
    with pytest.raises(ValueError):
        BootstrapSettings(confidence=1.5)
    assert PromotionSettings().rule == "confident"


def test_detection_evaluation_keeps_what_its_metrics_come_from(
    tiny_weights, tiny_dataset, tmp_path
) -> None:
    task = get_task("detect")
    settings = EvaluationSettings().for_model(imgsz=128, device="cpu")
    report = task.evaluate(tiny_weights, tiny_dataset, tmp_path / "test", settings)
    results = report.per_image
    assert results is not None and len(results.images) == report.images
    assert sorted(results.images) == sorted(
        p.name for p in task.split_images(tiny_dataset, "test")
    )
    everything = np.arange(report.images)[None]
    for metric in ("map50_95", "map50", "precision", "recall"):
        recomputed = task.resample_metric(results, metric, report.class_names)
        assert recomputed(everything)[0] == pytest.approx(
            report.metrics[metric], abs=1e-9
        )


def test_status_repeats_the_intervals_and_the_noise() -> None:
    from visionops.app.status import _verdict, format_status
    from visionops.engine.bootstrap import Interval

    gate = Interval(
        metric="map50_95",
        difference=0.012,
        low=-0.03,
        high=0.05,
        confidence=0.95,
        images=9,
        resamples=1000,
        seed=0,
    )
    tags = {"quantization.rule": "confident", **gate.tags("quantization")}
    verdict = _verdict(tags, "quantization")
    assert verdict["test_images"] == 9 and verdict["ci_low"] == pytest.approx(-0.03)
    status = {
        "stack": {"name": "local", "tracking_uri": None, "components": {}},
        "dataset": None,
        "champion": {
            "name": "m",
            "version": "1",
            "task": "detect",
            "mlflow_model_uri": "models:/m@champion",
            "test_metrics": {"map50_95": 0.28},
            "onnx": "x.onnx",
            "precision": "int8",
            "onnx_latency_ms": 3.0,
            "decisions": {"quantization": verdict},
        },
        "reports": {},
    }
    text = format_status(status)
    assert (
        "INT8 gate (confident): INT8 - FP32 +0.0120, 95% CI -0.0300 to +0.0500 on 9 "
        "test images; 9 test images: differences under 0.04 are noise"
    ) in text
