"""The promotion rule and the decision report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from visionops.config import PromotionSettings
from visionops.engine.bootstrap import Interval
from visionops.engine.report import EvalReport, Rule

if TYPE_CHECKING:
    from visionops.tasks import Task


class Decision(BaseModel):
    """Whether the challenger replaces the champion, and why."""

    promote: bool
    reason: str
    metric: str
    challenger_score: float
    champion_score: float | None
    champion_version: str | None
    margin: float
    min_score: float | None
    max_latency_ms: float | None
    challenger_latency_ms: float | None
    floors: dict[str, float] = {}
    rule: Rule = "margin"
    interval: Interval | None = None
    interval_note: str = ""
    test_images: int = 0

    @property
    def noise(self) -> str | None:
        """`9 test images: differences under 0.05 are noise`, when they are."""
        return self.interval.noise() if self.interval else None

    def tags(self) -> dict[str, str]:
        """`promotion.*` run and registered-version tags."""
        return {
            "promotion.promoted": str(self.promote).lower(),
            "promotion.reason": self.reason,
            "promotion.rule": self.rule,
            "promotion.test_images": str(self.test_images),
            **(self.interval.tags("promotion") if self.interval else {}),
        }


def decide(
    task: Task,
    challenger: EvalReport,
    champion: EvalReport | None,
    rule: PromotionSettings,
    champion_version: str | None = None,
    interval: Interval | None = None,
    interval_note: str = "",
) -> Decision:
    """Applies the rule: beat the champion on the metric by more than the margin,
    within the latency budget and above every floor; a first model must reach the
    absolute floor.

    With `rule.rule == "confident"` and an interval, "beat by more than the
    margin" means the interval's lower bound is above the margin; without an
    interval the scores are compared (the `margin` rule), and the reason says so.

    Args:
        task: The challenger's task (its default metric when the rule names none).
        challenger: The challenger's test evaluation.
        champion: The champion's, on the same split (None: no champion).
        rule: The promotion settings.
        champion_version: The champion's registry version.
        interval: Challenger minus champion on the metric, paired bootstrap.
        interval_note: Why there is no interval, when there is none.

    Raises:
        ValueError: The rule names a metric the evaluation does not have.
    """
    metric = rule.metric or task.default_metric
    for name in (metric, *rule.floors):
        if name not in challenger.metrics:
            raise ValueError(
                f"promotion: {name!r} is not a test metric of this {challenger.task} "
                f"model; known: {sorted(challenger.metrics)}"
            )
    score = challenger.metrics[metric]
    theirs = champion.metrics.get(metric) if champion else None
    confident = rule.rule == "confident" and interval is not None
    latency = challenger.latency_ms
    label = task.metric_label
    shown = label(metric)  # the reason is read: display names, not keys
    below = [
        f"{label(name)} {challenger.metrics[name]:.4f} is below its floor {floor:.4f}"
        for name, floor in rule.floors.items()
        if challenger.metrics[name] < floor
    ]
    if (
        rule.max_latency_ms is not None
        and latency is not None
        and latency > rule.max_latency_ms
    ):
        promote, reason = (
            False,
            (
                f"latency {latency:.1f} ms exceeds the budget of "
                f"{rule.max_latency_ms:.1f} ms"
            ),
        )
    elif below:
        promote, reason = False, "; ".join(below)
    elif champion is not None and theirs is None:
        promote, reason = (
            True,
            f"champion v{champion_version} has no {shown} to compare with",
        )
    elif theirs is None:
        if rule.min_score is not None and score < rule.min_score:
            promote, reason = (
                False,
                (
                    f"first model: {shown} {score:.4f} is below the floor "
                    f"{rule.min_score:.4f}"
                ),
            )
        else:
            floor = (
                f" >= floor {rule.min_score:.4f}" if rule.min_score is not None else ""
            )
            promote, reason = True, f"first model: {shown} {score:.4f}{floor}"
    elif confident and interval is not None:
        bounds = (
            f"{interval.confidence:.0%} interval of the difference "
            f"{interval.low:+.4f} to {interval.high:+.4f} over {interval.images} "
            "test images"
        )
        promote = interval.low > rule.margin
        reason = (
            f"{shown} {score:.4f} {'beats' if promote else 'does not beat'} "
            f"champion v{champion_version} ({theirs:.4f}) confidently by more than "
            f"{rule.margin:g}: {bounds}"
        )
    else:
        promote = score > theirs + rule.margin
        reason = (
            f"{shown} {score:.4f} {'beats' if promote else 'does not beat'} "
            f"champion v{champion_version} ({theirs:.4f}) by more than "
            f"{rule.margin:.4f}"
        )
        if rule.rule == "confident":
            reason += f" (margin rule: no interval, {interval_note or 'none'})"
    return Decision(
        promote=promote,
        reason=reason,
        metric=metric,
        challenger_score=score,
        champion_score=theirs,
        champion_version=champion_version,
        margin=rule.margin,
        min_score=rule.min_score,
        max_latency_ms=rule.max_latency_ms,
        challenger_latency_ms=latency,
        floors=dict(rule.floors),
        # What decided: `margin` stands in for `confident` without an interval.
        rule="margin" if theirs is not None and not confident else rule.rule,
        interval=interval,
        interval_note=interval_note,
        test_images=challenger.images,
    )


def decision_markdown(
    task: Task,
    decision: Decision,
    challenger: EvalReport,
    champion: EvalReport | None,
    model_name: str,
    candidate: str = "",
    started_from: str | None = None,
) -> str:
    """The decision report: both models side by side (the task's headline
    metrics first), the rule, the verdict; `candidate` names the challenger and
    `started_from` the registered version it was fine-tuned from."""
    verdict = "PROMOTED" if decision.promote else "NOT PROMOTED"
    label = task.metric_label
    rows = []
    keys = dict.fromkeys([*task.headline_metrics, decision.metric, *decision.floors])
    for key in (k for k in keys if k in challenger.metrics):
        value = champion.metrics.get(key) if champion else None
        theirs = f"{value:.4f}" if value is not None else "-"
        mark = " **(rule)**" if key == decision.metric else ""
        mark += f" (floor {decision.floors[key]:g})" if key in decision.floors else ""
        rows.append(
            f"| {label(key)}{mark} | {challenger.metrics[key]:.4f} | {theirs} |"
        )
    lat = lambda r: f"{r.latency_ms:.1f}" if r and r.latency_ms is not None else "-"  # noqa: E731
    rows.append(f"| ONNX latency (ms, CPU) | {lat(challenger)} | {lat(champion)} |")
    champion_label = (
        f"champion v{decision.champion_version}" if champion else "no champion"
    )
    metric = label(decision.metric)
    if decision.rule == "confident":
        rule = (
            f"promote if the lower bound of the interval of {metric} "
            f"(challenger - champion) > {decision.margin:g}"
        )
    else:
        rule = f"promote if {metric} > champion + {decision.margin:g}"
    if decision.min_score is not None:
        rule += f"; a first model needs {metric} >= {decision.min_score:g}"
    if decision.max_latency_ms is not None:
        rule += f"; latency <= {decision.max_latency_ms:g} ms"
    for key, floor in decision.floors.items():
        rule += f"; {label(key)} >= {floor:g}"
    quantization = challenger.quantization
    return "\n".join(
        [
            f"# Promotion decision for `{model_name}`: {verdict}",
            "",
            f"**Verdict:** {verdict} — {decision.reason}.",
            "",
            *(
                [
                    f"**Challenger:** candidate `{candidate}`"
                    + (f", fine-tuned from {started_from}" if started_from else "")
                    + ".",
                    "",
                ]
                if candidate
                else []
            ),
            f"**Rule ({decision.rule}):** {rule}.",
            "",
            "Both measured on the same test split (dataset "
            f"`{challenger.dataset_hash[:12]}`,"
            f" {challenger.images} images).",
            "",
            *_interval_lines(decision, champion, metric),
            f"| metric | challenger | {champion_label} |",
            "|---|---|---|",
            *rows,
            *(["", quantization.markdown(label)] if quantization else []),
        ]
    )


def _interval_lines(
    decision: Decision, champion: EvalReport | None, metric: str
) -> list[str]:
    """The challenger-minus-champion interval of `metric` (its display name) and,
    when it holds 0, the noise."""
    if champion is None:
        return ["Challenger - champion: no interval (no champion yet).", ""]
    if decision.interval is None:
        note = decision.interval_note or "none"
        return [f"Challenger - champion: no interval ({note}).", ""]
    lines = [f"Challenger - champion, {metric}: {decision.interval.text()}."]
    if noise := decision.noise:
        lines.append(f"{noise[0].upper()}{noise[1:]}.")
    return [" ".join(lines), ""]
