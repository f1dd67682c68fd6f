"""Classification metrics against values worked out by hand."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from visionops.tasks.classify.metrics import (
    CONFUSION_NORMALIZED_PNG,
    CONFUSION_PNG,
    average_precision,
    classification_metrics,
    metric_key,
    roc_auc,
    save_confusion_matrices,
)

NAMES = ["NORMAL", "PNEUMONIA"]
# Seven X-rays, four NORMAL then three PNEUMONIA, and P(PNEUMONIA) for each; the
# 0.6 of a NORMAL ties the 0.6 of a PNEUMONIA.
Y_TRUE = [0, 0, 0, 0, 1, 1, 1]
P_PNEUMONIA = np.array([0.1, 0.4, 0.6, 0.7, 0.6, 0.3, 0.9])
PROBS = np.stack([1 - P_PNEUMONIA, P_PNEUMONIA], axis=1)


def _binary():
    return classification_metrics(Y_TRUE, PROBS, NAMES)


def test_binary_metrics_match_hand_computed_values() -> None:
    result = _binary()
    m = result.metrics
    # Predicted PNEUMONIA where p > 0.5: NORMAL -> [N, N, P, P], PNEUMONIA -> [P, N, P].
    np.testing.assert_array_equal(result.confusion, [[2, 2], [1, 2]])
    np.testing.assert_allclose(
        result.confusion_normalized, [[0.5, 0.5], [1 / 3, 2 / 3]]
    )
    assert m["top1"] == pytest.approx(4 / 7)
    assert m["precision_NORMAL"] == pytest.approx(2 / 3)  # 2 of 3 called NORMAL
    assert m["recall_NORMAL"] == pytest.approx(1 / 2)  # 2 of 4 NORMAL found
    assert m["f1_NORMAL"] == pytest.approx(4 / 7)
    assert m["precision_PNEUMONIA"] == pytest.approx(1 / 2)
    assert m["recall_PNEUMONIA"] == pytest.approx(2 / 3)
    assert m["f1_PNEUMONIA"] == pytest.approx(4 / 7)
    assert m["support_NORMAL"] == 4 and m["support_PNEUMONIA"] == 3
    assert m["macro_precision"] == pytest.approx(7 / 12)
    assert m["macro_recall"] == pytest.approx(7 / 12)
    assert m["macro_f1"] == pytest.approx(4 / 7)
    # Positive = PNEUMONIA (the second class) by default.
    assert result.positive_class == "PNEUMONIA"
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    # 12 (positive, negative) pairs: 0.6 beats 2, ties 1 (half); 0.3 beats 1;
    # 0.9 beats 4 -> 7.5 / 12.
    assert m["roc_auc"] == pytest.approx(7.5 / 12)
    # Thresholds 0.9 (P=1, R=1/3), 0.6 with its tie (P=2/4, R=2/3), 0.3 (P=3/6,
    # R=1): 1/3 * 1 + 1/3 * 1/2 + 1/3 * 1/2.
    assert m["pr_auc"] == pytest.approx(2 / 3)
    assert "top5" not in m


def test_keys_are_stable_and_values_plain_floats() -> None:
    m = _binary().metrics
    assert list(m) == [
        "top1",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "precision_NORMAL",
        "recall_NORMAL",
        "f1_NORMAL",
        "support_NORMAL",
        "precision_PNEUMONIA",
        "recall_PNEUMONIA",
        "f1_PNEUMONIA",
        "support_PNEUMONIA",
        "roc_auc",
        "pr_auc",
        "sensitivity",
        "specificity",
    ]
    assert all(type(v) is float for v in m.values())


def test_per_class_table_and_json() -> None:
    result = _binary()
    assert result.per_class[1] == {
        "class_id": 1,
        "class_name": "PNEUMONIA",
        "precision": pytest.approx(1 / 2),
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(4 / 7),
        "support": 3,
    }
    data = result.to_dict()
    assert data["names"] == NAMES
    assert data["confusion"] == [[2, 2], [1, 2]]
    assert data["metrics"]["roc_auc"] == pytest.approx(0.625)


def test_positive_class_by_name_swaps_sensitivity_and_specificity() -> None:
    m = classification_metrics(Y_TRUE, PROBS, NAMES, positive_class="NORMAL").metrics
    assert m["sensitivity"] == pytest.approx(1 / 2)
    assert m["specificity"] == pytest.approx(2 / 3)
    # Scoring NORMAL by 1 - p ranks the pairs the same way round.
    assert m["roc_auc"] == pytest.approx(7.5 / 12)
    # P(NORMAL), NORMAL marked *: 0.9*, 0.7, 0.6*, 0.4* tied with 0.4, 0.3*, 0.1;
    # each NORMAL found adds 1/4 recall at precision 1/1, 2/3, 3/5 and 4/6.
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 5 + 4 / 6) / 4)


def test_roc_auc_counts_ties_as_half() -> None:
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([1, 1, 0, 0], [0.8, 0.5, 0.5, 0.2]) == pytest.approx((2 + 1.5) / 4)
    assert roc_auc([0, 1], [0.2, 0.9]) == 1.0
    assert roc_auc([1, 0], [0.2, 0.9]) == 0.0


def test_average_precision_takes_tied_scores_together() -> None:
    # One threshold holding a positive and a negative: P = 1/2 at R = 1.
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert average_precision([0, 1], [0.2, 0.9]) == 1.0


def test_a_class_never_predicted_scores_zero_not_nan() -> None:
    names = ["cat", "dog", "fox"]
    probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]
    result = classification_metrics([0, 1, 2, 2], probs, names)
    m = result.metrics
    assert m["precision_fox"] == 0.0 and m["recall_fox"] == 0.0 and m["f1_fox"] == 0.0
    assert m["precision_cat"] == pytest.approx(1 / 2)
    assert m["precision_dog"] == pytest.approx(1 / 2)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert not any(math.isnan(v) for v in m.values())
    assert not {"roc_auc", "pr_auc", "sensitivity", "specificity", "top5"} & set(m)
    assert result.positive_class is None
    np.testing.assert_array_equal(result.confusion, [[1, 0, 0], [0, 1, 0], [1, 1, 0]])


def test_top5_with_six_classes() -> None:
    names = [f"c{i}" for i in range(6)]
    probs = np.array(
        [
            [0.01, 0.3, 0.2, 0.2, 0.2, 0.09],  # class 0 ranked last: a top-5 miss
            [0.0, 0.1, 0.1, 0.1, 0.1, 0.6],  # class 5 first: top-1 and top-5 hit
            [0.3, 0.25, 0.2, 0.1, 0.0, 0.15],  # class 3 ranked fifth: a top-5 hit
        ]
    )
    m = classification_metrics([0, 5, 3], probs, names).metrics
    assert m["top1"] == pytest.approx(1 / 3)
    assert m["top5"] == pytest.approx(2 / 3)


def test_only_one_class_in_the_labels() -> None:
    # Every image PNEUMONIA: no negative, so ROC-AUC is undefined.
    result = classification_metrics(
        [1, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.1, 0.9]], NAMES
    )
    m = result.metrics
    assert math.isnan(m["roc_auc"])
    assert m["pr_auc"] == 1.0  # every threshold is all positives
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == 0.0  # no NORMAL image: 0, not NaN
    assert m["precision_NORMAL"] == 0.0 and m["recall_NORMAL"] == 0.0
    np.testing.assert_allclose(result.confusion_normalized, [[0, 0], [1 / 3, 2 / 3]])
    # No positive at all: both areas undefined.
    m = classification_metrics([0, 0], [[0.8, 0.2], [0.3, 0.7]], NAMES).metrics
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])


def test_a_single_class_model() -> None:
    result = classification_metrics([0, 0], [[1.0], [1.0]], ["only"])
    assert result.metrics["top1"] == 1.0
    assert result.metrics["f1_only"] == 1.0
    assert result.positive_class is None and "roc_auc" not in result.metrics
    np.testing.assert_array_equal(result.confusion, [[2]])


def test_metric_keys_are_mlflow_safe() -> None:
    assert metric_key("recall", "PNEUMONIA") == "recall_PNEUMONIA"
    assert metric_key("recall", "no finding/other") == "recall_no_finding_other"
    m = classification_metrics([0, 1], [[0.9, 0.1], [0.2, 0.8]], ["a b", "c"]).metrics
    assert "recall_a_b" in m


@pytest.mark.parametrize(
    ("y_true", "probs", "names", "positive", "message"),
    [
        ([0, 1], [[0.5, 0.5]], NAMES, None, "expected"),
        ([0, 2], [[0.5, 0.5], [0.5, 0.5]], NAMES, None, "class id 2"),
        ([0, 1], [[0.5, np.nan], [0.5, 0.5]], NAMES, None, "NaN"),
        ([], np.zeros((0, 2)), NAMES, None, "non-empty"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], NAMES, "COVID", "not a class"),
        ([0], [[0.2, 0.3, 0.5]], ["a", "b", "c"], "a", "exactly two"),
        ([0], [[0.5, 0.5]], ["a b", "a_b"], None, "clashing"),
    ],
)
def test_bad_inputs_are_refused(y_true, probs, names, positive, message) -> None:
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, probs, names, positive_class=positive)


def test_agrees_with_scikit_learn_on_random_tied_scores() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 200)
    p = rng.integers(0, 10, 200) / 10  # coarse scores: many ties
    result = classification_metrics(y_true, np.stack([1 - p, p], 1), NAMES)
    m = result.metrics
    assert m["roc_auc"] == pytest.approx(sklearn_metrics.roc_auc_score(y_true, p))
    assert m["pr_auc"] == pytest.approx(
        sklearn_metrics.average_precision_score(y_true, p)
    )
    probs = rng.dirichlet(np.ones(6), 300)
    y_true = rng.integers(0, 6, 300)
    m = classification_metrics(y_true, probs, [f"c{i}" for i in range(6)]).metrics
    predicted = probs.argmax(1)
    precision, recall, f1, _ = sklearn_metrics.precision_recall_fscore_support(
        y_true, predicted, labels=range(6), zero_division=0
    )
    assert [m[f"precision_c{i}"] for i in range(6)] == pytest.approx(precision)
    assert [m[f"recall_c{i}"] for i in range(6)] == pytest.approx(recall)
    assert m["macro_f1"] == pytest.approx(f1.mean())
    assert m["top5"] == pytest.approx(
        sklearn_metrics.top_k_accuracy_score(y_true, probs, k=5, labels=range(6))
    )


def test_confusion_matrix_pngs(tmp_path) -> None:
    paths = save_confusion_matrices(_binary(), tmp_path / "plots")
    assert paths == {
        "confusion": tmp_path / "plots" / CONFUSION_PNG,
        "confusion_normalized": tmp_path / "plots" / CONFUSION_NORMALIZED_PNG,
    }
    counts = cv2.imread(str(paths["confusion"]))
    normalized = cv2.imread(str(paths["confusion_normalized"]))
    assert counts is not None and counts.shape[0] > 200 and counts.std() > 10
    assert normalized is not None and normalized.shape == counts.shape
    assert not np.array_equal(counts, normalized)  # the cells say different things
