"""The drift report: what a model sees now against its reference, with Evidently.

Evidently tests each column of the feature records (`features.Featurizer`) of
the current images against the reference's (K-S, chi-square or Wasserstein as
it picks by type and size). From its test results come four checks, each with
its threshold in `DriftSettings`:

- features: the share of per-image features (size, look, counts, confidences)
  whose test failed, against `drift_share`;
- embedding: the share of the embedding's components whose test failed,
  against `embedding_share`;
- class mix: the test of the top class (each image's most confident class);
- low confidence: the share of images below `low_confidence` against the test
  split's, by more than `low_confidence_margin` plus the two shares' sampling
  noise (1.96 standard errors: a test split of 9 images measures its share to
  about +-0.3).

`drift.html` (Evidently's page, its scripts inline, under a verdict banner) and
`drift.json` (`verdict`: `ok` | `drift` | None with a `reason`, `drifted`: what
caused it) are written side by side.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from visionops.config import DriftSettings
from visionops.feedback.features import (
    CONFIDENCE,
    EMBEDDING_PREFIX,
    RESIDUAL,
    TOP_CLASS,
    Reference,
    project,
)

DRIFT_HTML = "drift.html"
DRIFT_JSON = "drift.json"
OK, DRIFT = "ok", "drift"
CLASS_MIX, EMBEDDING_CHECK, LOW_CONFIDENCE = "class_mix", "embedding", "low_confidence"
Z95 = 1.96  # standard errors of a two-sided 95 % interval
# Not compared: where the row came from, and what is not a feature.
# The residual is not compared: the val rows the PCA was fitted on have less.
NOT_FEATURES = ("split", "id", "time", "image", "source", "model", RESIDUAL)


@dataclass
class DriftResult:
    """What one report found (`drift.json`).

    Attributes:
        verdict: `ok`, `drift`, or None when there were too few images.
        drifted: What made the verdict `drift`: feature names, `embedding`,
            `class_mix`, `low_confidence`.
        reason: Why there is no verdict.
        images: Current images compared.
        reference_images: Reference images.
        moved: Every column whose test failed, whatever the verdict.
        feature_share: The share of per-image features that moved.
        embedding_share: The share of embedding components that moved.
        low_confidence: The share of low-confidence images now and on the test
            split, and the threshold.
        tests: Per column: Evidently's method, score, threshold and whether it
            moved.
        model: What the model is.
    """

    verdict: str | None
    drifted: list[str]
    reason: str | None
    images: int
    reference_images: int
    moved: list[str] = field(default_factory=list)
    feature_share: float | None = None
    embedding_share: float | None = None
    low_confidence: dict[str, float] = field(default_factory=dict)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The figures MLflow keeps (`drift_*`)."""
        figures = {
            "drift_images": float(self.images),
            "drift_detected": float(self.verdict == DRIFT),
            "drift_feature_share": self.feature_share,
            "drift_embedding_share": self.embedding_share,
            "drift_low_confidence_share": self.low_confidence.get("current"),
        }
        return {
            k: float(v)
            for k, v in figures.items()
            if v is not None and math.isfinite(v)
        }

    def summary(self) -> str:
        """One line for the terminal."""
        if self.verdict is None:
            return f"Drift: no verdict: {self.reason}"
        named = f" ({', '.join(self.drifted)})" if self.drifted else ""
        return (
            f"Drift: {self.verdict}{named} over {self.images} images against "
            f"{self.reference_images} reference images"
        )


def _frames(
    rows: Sequence[Mapping[str, Any]], reference: Reference
) -> tuple[Any, Any, list[str], list[str]]:
    """The current and reference tables, the feature and embedding columns."""
    import pandas as pd

    current = pd.DataFrame([project(r, reference.pca) for r in rows])
    ref = pd.DataFrame(reference.rows)
    shared = [c for c in ref.columns if c in current.columns and c not in NOT_FEATURES]
    embedding = [c for c in shared if c.startswith(EMBEDDING_PREFIX)]
    numeric = [
        c
        for c in shared
        if c not in embedding
        and c != TOP_CLASS
        and pd.api.types.is_numeric_dtype(ref[c])
        and current[c].notna().any()
        and not _same_constant(ref[c], current[c])
    ]
    return current, ref, numeric, embedding


def _same_constant(reference: Any, current: Any) -> bool:
    """One value throughout, the same on both sides (a class the model never
    finds): a column no test can find moving, left out of the shares."""
    values = set(reference.dropna().unique()) | set(current.dropna().unique())
    return len(values) <= 1


def drift_report(
    rows: Sequence[Mapping[str, Any]],
    reference: Reference,
    settings: DriftSettings,
) -> tuple[DriftResult, str]:
    """Compares current feature records with the reference.

    Args:
        rows: The current images' feature records (`Featurizer`), raw or
            projected embedding.
        reference: The model's reference.
        settings: The thresholds.

    Returns:
        The result and the report's HTML page.
    """
    low_ref, ref_count = reference.low_confidence_share(settings.low_confidence)
    base = {
        "images": len(rows),
        "reference_images": len(reference.rows),
        "model": reference.model,
    }
    if len(rows) < settings.min_images:
        reason = (
            f"{len(rows)} images: a verdict needs at least {settings.min_images} "
            "(drift.min_images)"
        )
        result = DriftResult(None, [], reason, **base)
        return result, _page(result, "")

    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    current, ref, numeric, embedding = _frames(rows, reference)
    categorical = [TOP_CLASS] if TOP_CLASS in current and TOP_CLASS in ref else []
    columns = numeric + categorical + embedding
    definition = DataDefinition(
        numerical_columns=numeric + embedding, categorical_columns=categorical
    )
    snapshot = Report([ValueDrift(column=c) for c in columns], include_tests=True).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(ref[columns], data_definition=definition),
    )
    tests = _tests(snapshot.dict())
    moved = [c for c in columns if tests.get(c, {}).get("moved")]
    features = numeric + categorical

    def share(names: list[str]) -> float | None:
        return sum(n in moved for n in names) / len(names) if names else None

    feature_share, embedding_share = share(features), share(embedding)
    drifted: list[str] = []
    if feature_share is not None and feature_share >= settings.drift_share:
        drifted += [c for c in numeric if c in moved]
    if categorical and TOP_CLASS in moved:
        drifted.append(CLASS_MIX)
    if embedding_share is not None and embedding_share >= settings.embedding_share:
        drifted.append(EMBEDDING_CHECK)
    confidences = [r[CONFIDENCE] for r in rows if CONFIDENCE in r]
    low = (
        sum(c < settings.low_confidence for c in confidences) / len(confidences)
        if confidences
        else 0.0
    )
    noise = Z95 * math.sqrt(
        low_ref * (1 - low_ref) / max(ref_count, 1)
        + low * (1 - low) / max(len(confidences), 1)
    )
    if low > low_ref + settings.low_confidence_margin + noise:
        drifted.append(LOW_CONFIDENCE)
    result = DriftResult(
        DRIFT if drifted else OK,
        drifted,
        None,
        moved=moved,
        feature_share=feature_share,
        embedding_share=embedding_share,
        low_confidence={
            "current": low,
            "reference_test": low_ref,
            "threshold": settings.low_confidence,
            "margin": settings.low_confidence_margin,
            "noise": round(noise, 4),
        },
        tests=tests,
        **base,
    )
    return result, _page(result, snapshot.get_html_str(as_iframe=False))


def _tests(snapshot: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per column: method, score, threshold, moved (Evidently's failed test)."""
    scores = {
        m["id"]: (m["config"], m["value"])
        for m in snapshot.get("metrics", [])
        if "column" in m.get("config", {})
    }
    found: dict[str, dict[str, Any]] = {}
    for test in snapshot.get("tests", []):
        config, value = scores.get(test["metric_config"]["metric_id"], ({}, None))
        column = config.get("column") or test["metric_config"]["params"].get("column")
        if column is None:
            continue
        found[column] = {
            "method": config.get("method"),
            "score": value if isinstance(value, int | float) else None,
            "threshold": config.get("threshold"),
            "moved": test["status"] == "FAIL",
        }
    return found


def _page(result: DriftResult, report_html: str) -> str:
    """Evidently's page under a banner: the verdict, the checks, the thresholds."""
    if result.verdict is None:
        head = f"No verdict: {html.escape(result.reason or '')}"
    else:
        named = ", ".join(result.drifted) or "nothing moved beyond its threshold"
        head = f"Verdict: {result.verdict} ({html.escape(named)})"
    low = result.low_confidence
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in (
            ("images", result.images),
            ("reference images (val + test)", result.reference_images),
            ("model", result.model.get("name", "")),
            ("version", result.model.get("version", "")),
            ("features moved (share)", _share(result.feature_share)),
            ("embedding components moved (share)", _share(result.embedding_share)),
            ("low confidence now", _share(low.get("current"))),
            ("low confidence on the test split", _share(low.get("reference_test"))),
            ("its sampling noise (95 %)", _share(low.get("noise"))),
            ("columns that moved", ", ".join(result.moved) or "none"),
        )
    )
    banner = (
        "<div id='visionops-drift' style='font-family:sans-serif;padding:12px'>"
        f"<h2 id='verdict'>{head}</h2><table border=1 cellpadding=4 "
        f"style='border-collapse:collapse'>{rows}</table></div>"
    )
    if not report_html:
        return f"<html><body>{banner}</body></html>"
    marker = report_html.find("<body")
    if marker < 0:
        return banner + report_html
    end = report_html.index(">", marker) + 1
    return report_html[:end] + banner + report_html[end:]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def write_report(
    rows: Sequence[Mapping[str, Any]],
    reference: Reference,
    settings: DriftSettings,
    out_dir: Path,
) -> DriftResult:
    """`drift.html` and `drift.json` in `out_dir` (made if missing)."""
    result, page = drift_report(rows, reference, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / DRIFT_HTML).write_text(page, encoding="utf-8")
    (out_dir / DRIFT_JSON).write_text(json.dumps(asdict(result), indent=1))
    return result


def retrain_commands(model_name: str) -> list[str]:
    """What `drift.retrain` prints: review the selected images, merge them into
    the dataset, retrain from the champion."""
    return [
        "python run.py --pipeline review",
        "python run.py --pipeline ingestion --source outputs/review/<time> "
        "--set merge_with=latest",
        f"python run.py --pipeline training --set model.name={model_name} "
        "--set 'models=[champion]'",
    ]


def read_result(path: Path) -> DriftResult:
    """A `drift.json` read back."""
    return DriftResult(**json.loads(path.read_text()))
