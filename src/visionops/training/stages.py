"""The training pipeline's stages as library functions, one per step, any task.

Each ZenML step in `steps/training/` loads its inputs, calls one function here,
logs metadata and returns. MLflow must already point at the stack's tracker
(`tracking.configure_tracking()`); nothing here needs ZenML.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from visionops.config import (
    BootstrapSettings,
    EvaluationSettings,
    PromotionSettings,
    champion_version,
)
from visionops.core.env import state_dir
from visionops.data.version import CARD_FILE, DatasetVersion
from visionops.engine.bootstrap import compare_reports
from visionops.engine.latency import onnx_latency_ms
from visionops.engine.report import EvalReport
from visionops.engine.task import CHAMPION_MODEL
from visionops.training.candidates import (
    CandidateResult,
    CandidateSpec,
    ModelFile,
    best_index,
    comparison_html,
    comparison_rows,
)
from visionops.training.champion import (
    CHALLENGER,
    CHAMPION,
    WEIGHTS_ARTIFACT,
    Champion,
    TaskMismatchError,
    version_tags,
)
from visionops.training.promotion import Decision, decide, decision_markdown
from visionops.training.tracking import (
    AliasMovedError,
    code_version,
    dataset_input,
    dataset_input_tags,
    log_checked_file,
    log_dir_artifacts,
    move_alias,
    register_version,
    set_alias,
    system_info,
)
from visionops.training.yolo import WeightsChoice, resolve_weights, run_key, train

logger = logging.getLogger(__name__)
PLOTS = ("*.png", "*.jpg", "results.csv", "args.yaml")
ONNX_DIR = "onnx"
# How often a finished training re-compares itself with a champion that moved.
RECOMPARISONS = 3


# --- train ------------------------------------------------------------------------


def train_candidate(
    dataset: DatasetVersion,
    spec: CandidateSpec,
    *,
    pretrained: str = "auto",
    resume: bool = False,
    tags: dict[str, str] | None = None,
) -> tuple[ModelFile, CandidateResult]:
    """Trains one candidate into the active MLflow run.

    Params, per-epoch metrics, the dataset card, system info, Ultralytics' plots
    and `weights/best.pt` go to the run.

    Args:
        dataset: The dataset version to train on.
        spec: The candidate (its model name is already the task's).
        pretrained: `auto`, `required` or `never` (see `resolve_weights`).
        resume: Continue an interrupted run from its last checkpoint.
        tags: Extra run tags (the ZenML pipeline run and step).

    Raises:
        RuntimeError: No MLflow run is active.
    """
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("train_candidate logs into the active MLflow run.")
    task = spec.task
    start = starting_champion(spec)
    if start is None:
        choice = resolve_weights(spec.model, pretrained)
    else:  # checked against the sha256 its run recorded; opened weights-only
        folder = state_dir() / "champions" / f"{start.name}-v{start.version}"
        choice = WeightsChoice(
            str(start.fetch_weights(folder)),
            True,
            f"champion v{start.version} of {start.name} ({WEIGHTS_ARTIFACT})",
        )
    started_from = f"{start.name} v{start.version}" if start else ""
    if not choice.pretrained:
        logger.warning("%s: %s (recorded as pretrained=false).", spec.name, choice.note)
    key = run_key(spec.model, spec.train, dataset.hash)
    mlflow.log_params(
        {
            **spec.train.model_dump(),
            "task": task.name,
            "model": spec.model,
            "candidate": spec.name,
            "pretrained": choice.pretrained,
            "weights_source": choice.source,
            "dataset_hash": dataset.hash,
            "started_from": started_from or "-",
        }
    )
    mlflow.set_tags(
        {
            **system_info(),
            **code_version(),
            "task": task.name,
            "dataset_hash": dataset.hash,
            "candidate": spec.name,
            **({"started_from": started_from} if started_from else {}),
            **(tags or {}),
        }
    )
    mlflow.log_dict(dataset.card, f"dataset/{CARD_FILE}")
    mlflow.log_input(
        dataset_input(dataset.card, dataset.root),
        context="training",
        tags=dataset_input_tags(dataset.card),
    )

    def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)

    outcome = train(
        spec.model,
        spec.train,
        task.ultralytics_data(dataset),
        state_dir() / "runs" / key,
        source=choice.source,
        task=task,
        resume=resume,
        on_epoch_end=log_epoch,
    )
    mlflow.log_metrics({f"val_{k}": v for k, v in outcome.val_metrics.items()})
    log_checked_file(run.info.run_id, outcome.best, "weights")
    log_dir_artifacts(run.info.run_id, outcome.save_dir, "training", PLOTS)
    result = CandidateResult(
        task=task,
        name=spec.name,
        model=spec.model,
        train=spec.train.model_dump(),
        pretrained=choice.pretrained,
        weights_note=choice.note,
        started_from=started_from or None,
        val=outcome.val_metrics,
        epochs_run=outcome.epochs_run,
        resumed=outcome.resumed,
        speed_ms=outcome.speed_ms,
        size_mb=outcome.best.stat().st_size / 1e6,
        run_key=key,
        mlflow_run_id=run.info.run_id,
        mlflow_parent_run_id=mlflow.get_run(run.info.run_id).data.tags.get(
            "mlflow.parentRunId"
        ),
    )
    return ModelFile(outcome.best), result


def starting_champion(spec: CandidateSpec) -> Champion | None:
    """The registered version a `champion@<version>` candidate starts from.

    Raises:
        NoChampionError: The version is gone from the registry.
        ValueError: A champion model without a version or a registered name
            (run.py's checks pin `champion` to a version).
    """
    if not CHAMPION_MODEL.match(spec.model):
        return None
    version = champion_version(spec.model)
    if version is None or spec.registered is None:
        raise ValueError(
            f"{spec.name}: {spec.model} names no registered version to start from"
        )
    return Champion.at(spec.registered, version)


# --- select -----------------------------------------------------------------------


@dataclass
class Selection:
    """The candidate kept on the validation split, and the comparison of all."""

    index: int
    metric: str
    rows: list[dict[str, Any]]
    html: str


def select_candidate(results: list[CandidateResult], metric: str | None) -> Selection:
    """Selects on validation only; the test split stays unseen until evaluation.

    The comparison table also goes to the pipeline run's (parent) MLflow run.

    Args:
        results: Every candidate's result.
        metric: A validation metric of the task; None: the task's default.

    Raises:
        ValueError: No candidate, or a metric the task does not measure on val.
    """
    if not results:
        raise ValueError("No candidate to select from.")
    task = results[0].task
    metric = metric or task.default_metric
    if metric not in task.val_metrics_names:
        raise ValueError(
            f"selection_metric: {metric!r} is not measured on the validation split "
            f"for {task.name}; choose one of {list(task.val_metrics_names)}"
        )
    winner = best_index(results, metric)
    rows = comparison_rows(results, winner)
    parent = results[winner].mlflow_parent_run_id
    if parent:
        import pandas as pd
        from mlflow.tracking import MlflowClient

        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "candidate_comparison.csv"
            pd.DataFrame(rows).to_csv(csv, index=False)
            MlflowClient().log_artifact(parent, str(csv))
    return Selection(winner, metric, rows, comparison_html(rows, metric))


# --- evaluate ---------------------------------------------------------------------


@dataclass
class Evaluation:
    """The challenger on the test split: report, the ONNX to serve, HTML.

    The ONNX is the INT8 model when the quantization gate passed, else FP32.
    """

    report: EvalReport
    onnx: Path
    html: str


def evaluate_challenger(
    weights: Path,
    dataset: DatasetVersion,
    selected: CandidateResult,
    settings: EvaluationSettings,
    out_dir: Path,
    metric: str | None = None,
) -> Evaluation:
    """Test metrics, ONNX export at the serving size, its INT8 copy, CPU latency.

    With `settings.quantize`, a static INT8 copy of the export (calibrated on
    the validation split) and the FP32 export are both measured on the test
    split (`quantize_and_gate`); the INT8 one is served unless its `metric`
    drops more than `settings.max_quantization_drop` below FP32 (by
    `settings.quantization_rule`). The metrics (`test_<name>`,
    `test_onnx_{fp32,int8}_*`), the `precision` tag, `test/evaluation.json`,
    the test plots and the ONNX exports (`onnx/`) go to the candidate's MLflow
    run; the returned ONNX is the one deployment serves.

    Args:
        weights: The selected candidate's `.pt`.
        dataset: The dataset version (its test split; val calibrates INT8).
        selected: The selected candidate.
        settings: Evaluation settings.
        out_dir: Work folder.
        metric: The promotion metric the INT8 gate compares; None: the task's.
    """
    from mlflow.tracking import MlflowClient

    from visionops.engine.onnx import export_onnx
    from visionops.training.quantization import quantize_and_gate

    task = selected.task
    measured = settings.for_model(selected.train["imgsz"], selected.train["device"])
    report = task.evaluate(weights, dataset, out_dir / "test", measured)
    serving_imgsz = settings.serving_imgsz or selected.train["imgsz"]
    onnx = export_onnx(weights, serving_imgsz, out_dir=out_dir)
    report.latency_ms = onnx_latency_ms(
        task, onnx, task.split_images(dataset, "test"), settings.latency_runs
    )
    report.latency_imgsz = serving_imgsz
    exports, served = [onnx], onnx
    if settings.quantize:
        quantization, int8 = quantize_and_gate(
            task,
            onnx,
            dataset,
            settings,
            metric or task.default_metric,
            out_dir,
            fp32_latency_ms=report.latency_ms,
        )
        report.quantization = quantization
        if int8 is not None:
            exports.append(int8)
        if quantization.precision == "int8" and int8 is not None:
            served, report.latency_ms = int8, quantization.int8_latency_ms

    client = MlflowClient()
    run_id = selected.mlflow_run_id
    for key, value in report.metrics.items():
        if math.isfinite(value):
            client.log_metric(run_id, f"test_{key}", value)
    client.log_metric(run_id, "test_onnx_latency_ms", report.latency_ms)
    if report.quantization is not None:
        for key, value in report.quantization.mlflow_metrics().items():
            if math.isfinite(value):
                client.log_metric(run_id, key, value)
        for key, tag in report.quantization.tags().items():
            client.set_tag(run_id, key, tag)
    client.log_dict(run_id, report.model_dump(), "test/evaluation.json")
    for export in exports:
        log_checked_file(run_id, export, ONNX_DIR)
    log_dir_artifacts(run_id, out_dir / "test", "test", ("*.png", "*.jpg"))
    return Evaluation(report, served, task.evaluation_html(report, out_dir / "test"))


class ChampionScore(BaseModel):
    """The current champion re-measured on today's test split (None: no champion)."""

    champion: Champion | None = None
    report: EvalReport | None = None

    @property
    def version(self) -> str | None:
        """The champion's registry version, if there is one."""
        return self.champion.version if self.champion else None


def evaluate_champion(
    dataset: DatasetVersion,
    model_name: str,
    settings: EvaluationSettings,
    out_dir: Path,
) -> ChampionScore:
    """Evaluates the `champion` alias's weights exactly as the challenger is.

    Raises:
        TaskMismatchError: The champion is not a model of the dataset's task.
    """
    champion = Champion.lookup(model_name)
    if champion is None:
        return ChampionScore()
    if champion.task != dataset.task:
        raise TaskMismatchError(
            f"the champion of {model_name!r} (v{champion.version}) is a "
            f"{champion.task} model, the dataset a {dataset.task} dataset"
        )
    task = champion.get_task()
    weights = champion.fetch_weights(out_dir / "weights")
    measured = settings.for_model(champion.imgsz, _champion_device(champion))
    report = task.evaluate(weights, dataset, out_dir / "test", measured)
    if champion.onnx_artifact:
        onnx = champion.fetch_onnx(out_dir / ONNX_DIR)
        report.latency_ms = onnx_latency_ms(
            task, onnx, task.split_images(dataset, "test"), settings.latency_runs
        )
        report.latency_imgsz = champion.serving_imgsz
    return ChampionScore(champion=champion, report=report)


def _champion_device(champion: Champion) -> str:
    import mlflow

    return mlflow.get_run(champion.run_id).data.params.get("device", "auto")


# --- promote ----------------------------------------------------------------------


@dataclass
class Promotion:
    """The decision, its report and the registry version the challenger became."""

    decision: Decision
    report: str
    version: str


def promote_challenger(
    selected: CandidateResult,
    challenger: EvalReport,
    champion: ChampionScore,
    onnx: Path,
    rule: PromotionSettings,
    model_name: str,
    lineage_tags: dict[str, str] | None = None,
    bootstrap: BootstrapSettings | None = None,
    rescore: Callable[[], ChampionScore] | None = None,
) -> Promotion:
    """Registers the challenger (alias `challenger`); promotes it if the rule says so.

    The version's tags record its task, class names, test metrics, ONNX export
    and lineage (`Champion.from_version` reads them). Promotion moves the alias
    `champion` if it still points at the champion the challenger was compared
    with (`promote_version`). When another training moved it meanwhile,
    `rescore` measures the new champion on the same test split and the
    challenger is compared with that one instead, so of two trainings started
    together the better model ends as champion. The report and the decision's
    tags are written to the run and the version either way.

    Args:
        selected: The challenger's candidate result.
        challenger: Its test evaluation.
        champion: The current champion on the same split.
        onnx: The ONNX export evaluation chose to serve, FP32 or INT8 (logged
            under `onnx/`).
        rule: The promotion rule.
        model_name: The registered model.
        lineage_tags: Extra version tags (ZenML model version, pipeline run).
        bootstrap: The paired bootstrap of challenger minus champion (None:
            the defaults).
        rescore: Measures the champion the alias points at now, as
            `evaluate_champion` did (None: a moved alias refuses promotion).

    Raises:
        TaskMismatchError: The registered model holds another task.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from visionops.training.champion import check_model_task

    task = selected.task
    check_model_task(model_name, task)
    settings = bootstrap or BootstrapSettings()
    compared = champion

    def compare(score: ChampionScore) -> Decision:
        metric = rule.metric or task.default_metric
        interval, note = (None, "")
        if score.report is not None:
            interval, note = compare_reports(
                task, challenger, score.report, metric, **settings.model_dump()
            )
        return decide(
            task, challenger, score.report, rule, score.version, interval, note
        )

    def compare_again(moved: AliasMovedError) -> Decision:
        nonlocal compared
        assert rescore is not None  # promote_version calls it only when given
        compared = rescore()
        fresh = compare(compared)
        reason = f"{moved} while this model was compared; re-compared: {fresh.reason}"
        return fresh.model_copy(update={"reason": reason})

    decision = compare(champion)
    with mlflow.start_run(run_id=selected.mlflow_run_id):
        info = task.log_model(
            onnx,
            metadata={
                "dataset_hash": challenger.dataset_hash,
                "test_metrics": challenger.metrics,
            },
        )
    version = register_version(
        model_name,
        info.model_uri,
        tags={
            **(lineage_tags or {}),
            "dataset_hash": challenger.dataset_hash,
            **version_tags(
                task=task,
                class_names=challenger.class_names,
                test_metrics=challenger.metrics,
                onnx_artifact=f"{ONNX_DIR}/{onnx.name}",
                onnx_latency_ms=challenger.latency_ms,
                serving_imgsz=challenger.latency_imgsz,
            ),
            **(challenger.quantization.tags() if challenger.quantization else {}),
        },
        description=task.description,
    )
    set_alias(model_name, CHALLENGER, version)
    decision = promote_version(
        model_name, version, decision, compare_again if rescore else None
    )
    report = decision_markdown(
        task,
        decision,
        challenger,
        compared.report,
        model_name,
        candidate=selected.name,
        started_from=selected.started_from,
    )
    client = MlflowClient()
    client.log_text(selected.mlflow_run_id, report, "decision.md")
    if decision.interval is not None:
        for key, value in decision.interval.metrics("test_vs_champion").items():
            client.log_metric(selected.mlflow_run_id, key, value)
    for key, tag in decision.tags().items():
        client.set_tag(selected.mlflow_run_id, key, tag)
    for key, tag in {
        "promoted": str(decision.promote).lower(),
        **({"started_from": selected.started_from} if selected.started_from else {}),
        **decision.tags(),
    }.items():
        client.set_model_version_tag(model_name, version, key, tag)
    return Promotion(decision, report, version)


def promote_version(
    model_name: str,
    version: str,
    decision: Decision,
    compare_again: Callable[[AliasMovedError], Decision] | None = None,
) -> Decision:
    """Moves `champion` to `version` if the decision says so and still holds.

    The decision compared the challenger with the champion of its
    `champion_version`. When another training moved the alias since, that
    comparison is out of date: `compare_again` makes a new decision against the
    champion of now, and the move is tried again with it (up to
    `RECOMPARISONS` times, for trainings that keep finishing meanwhile);
    without it, or past that, the version is not promoted and the returned
    decision says why and what to run. Read, compare and move are one step
    (`move_alias`).

    Returns:
        The decision as applied.
    """
    for attempt in range(RECOMPARISONS + 1):
        if not decision.promote:
            return decision
        try:
            move_alias(model_name, CHAMPION, version, decision.champion_version)
            return decision
        except AliasMovedError as err:
            moved = err
        if compare_again is None or attempt == RECOMPARISONS:
            break
        decision = compare_again(moved)
    newer = f"v{moved.current}" if moved.current else "no champion"
    return decision.model_copy(
        update={
            "promote": False,
            "reason": (
                f"not promoted: {moved} while this model was being compared "
                f"({decision.reason}); train again to compare it with {newer}"
            ),
        }
    )
