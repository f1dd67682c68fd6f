"""The pipelines `run.py` runs: one entry each, with its parameters, checks and report.

Adding a pipeline is one `PipelineSpec` in `PIPELINES` (and its `pipelines/<name>.py`
wiring, `configs/<name>.yaml` and parameters model in `visionops.config`); `run.py`
asks the registry and never compares pipeline names.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from visionops.app import preflight
from visionops.config import PARAMETER_MODELS, StrictModel, load_parameters


@dataclass(frozen=True)
class PipelineSpec:
    """How `run.py` runs one pipeline.

    Attributes:
        name: The `--pipeline` choice, the ZenML pipeline name, the config
            file `configs/<name>.yaml` and the pipeline function `<name>` of
            `pipelines/<name>.py` (the wiring lives above the library), imported
            when the pipeline runs.
        help: What it does, in a few words, for `--help`.
        options: Command-line flags that set one parameter (`--source` sets
            `source`); given, they win over the config and `--set`.
        needs: The pipeline whose output this one reads (training reads the
            dataset ingestion makes); when it runs earlier in the same command,
            `check` leaves what depends on it to `prepare`.
        check: Checks the parameters before any pipeline starts, filling in what
            follows from them; takes the parameters and whether `needs` runs
            first. Raises `ConfigError`.
        prepare: Right before this pipeline runs (after the earlier ones of the
            same command): the parameters, completed and checked again.
        model: The ZenML `Model` the run belongs to, from the parameters.
        report: Prints what the run made and what to do next; takes the run (None
            when ZenML returned none) and the parameters.
        folders: This machine's folders the steps read or write, from the checked
            parameters (the feedback store, a review batch's folder): step
            containers on this machine's engine mount them at the same path.
    """

    name: str
    help: str
    options: Mapping[str, str] = field(default_factory=dict)
    needs: str | None = None
    check: Callable[[Any, bool], Any] | None = None
    prepare: Callable[[Any], Any] | None = None
    model: Callable[[Any], Any] | None = None
    report: Callable[[Any, Any], None] | None = None
    folders: Callable[[Any], list[Path]] | None = None

    @property
    def parameters(self) -> type[StrictModel]:
        """The pydantic model of the pipeline's parameters."""
        return PARAMETER_MODELS[self.name]

    def load(
        self,
        overlays: list[Path] | None = None,
        overrides: list[str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """The validated parameters: config, overlays, `--set`, then the flags.

        Args:
            overlays: YAML files merged over `configs/<name>.yaml`.
            overrides: `key=value` strings.
            options: Flag values by flag (`{"--source": "photos/"}`); those unset
                (None or False) and those this pipeline does not take are left out.

        Raises:
            ConfigError: Naming every bad key, its value and what is allowed.
        """
        sets = list(overrides or [])
        for flag, value in (options or {}).items():
            if flag in self.options and value not in (None, False):
                sets.append(f"{self.options[flag]}={json.dumps(value)}")
        return load_parameters(self.name, overlays=overlays, overrides=sets)

    def function(self) -> Any:
        """The ZenML pipeline function (imports its module)."""
        return getattr(importlib.import_module(f"pipelines.{self.name}"), self.name)


# --- what runs before and after the pipelines ---------------------------------------


def _training_model(params: Any) -> Any:
    from zenml import Model

    return Model(
        name=params.model.name,
        description=params.model.description or None,
        tags=params.model.tags or None,
    )


def _production_model(params: Any) -> Any:
    from zenml import Model
    from zenml.enums import ModelStages

    return Model(name=params.model.name, version=ModelStages.PRODUCTION)


def _finished_run(run: Any, name: str) -> Any:
    """The run with its finished steps (the pipeline's last run when None)."""
    from zenml.client import Client

    client = Client()
    return client.get_pipeline_run(
        run.id if run else client.get_pipeline(name).last_run.id
    )


def report_deployment(run: Any, params: Any) -> None:
    """Prints the Bento tag and how to serve it."""
    from visionops.core.names import BENTO, SERVICE_URL

    run = _finished_run(run, "deployment")
    bento = run.steps["build_bento"].outputs[BENTO][0].load()
    print(f"Bento: {bento.tag}")
    url = run.steps["serve_bento"].outputs[SERVICE_URL][0].load()
    if url:
        print(f"Serving at {url} (web page: {url}/ui/); stop it with: make serve-stop")
    else:
        print(f"Serve it with: make serve   (or: bentoml serve {bento.tag})")


def report_batch(run: Any, params: Any) -> None:
    """Prints the batch summary and where its files are (copied to output_dir)."""
    from visionops.batch.predict import export_predictions, format_summary
    from visionops.core.env import project_path
    from visionops.core.names import PREDICTIONS
    from visionops.feedback.drift import DRIFT_HTML, read_result

    run = _finished_run(run, "batch")
    predictions = run.steps["predict_folder"].outputs[PREDICTIONS][0].load()
    print(format_summary(predictions.summary))
    where = predictions.root
    if params.output_dir:
        base = project_path(params.output_dir)
        stamp = (run.start_time or datetime.now()).strftime("%Y%m%d-%H%M%S")
        where, n = base / stamp, 1
        while where.exists():  # two runs in one second
            n += 1
            where = base / f"{stamp}-{n}"
        export_predictions(predictions, where)
    if predictions.drift is not None:
        drift = read_result(where / predictions.drift.name)
        _print_drift(drift, where / DRIFT_HTML, params.model.name, params.drift.retrain)
    print(f"Predictions: {where}")


def _review_folders(params: Any) -> list[Path]:
    """The feedback store, and the batch's folder unless it goes to Picsellia."""
    from visionops.data.sources.picsellia import SCHEME

    folders = [Path(params.store)]
    if not params.target.startswith(SCHEME):
        folders.append(Path(params.target))
    return folders


def report_review(run: Any, params: Any) -> None:
    """Prints what the batch holds and where it is, or that nothing waited."""
    from visionops.core.names import REVIEW_BATCH

    run = _finished_run(run, "review")
    batch = run.steps["make_review_batch"].outputs[REVIEW_BATCH][0].load()
    print(batch.summary())


def _print_drift(result: Any, page: Path, model_name: str, retrain: bool) -> None:
    """The drift verdict, where the page is and, on drift with `retrain`, what
    to run next."""
    from visionops.feedback.drift import DRIFT, retrain_commands

    print(f"{result.summary()}: {page}")
    if retrain and result.verdict == DRIFT:
        print(
            "drift.retrain: review what was selected, then retrain from the champion:"
        )
        for command in retrain_commands(model_name):
            print(f"  {command}")


def report_drift(run: Any, params: Any) -> None:
    """Prints the verdict and writes the report to `output_dir/<time>/`.

    From the run's artifacts: the step's own folder is gone when the step ran in a
    container.
    """
    from visionops.core.env import project_path
    from visionops.core.names import DRIFT_REPORT, DRIFT_RESULT
    from visionops.feedback.drift import DRIFT_HTML, DRIFT_JSON, DriftResult

    run = _finished_run(run, "drift")
    outputs = run.steps["report_drift"].outputs
    body = dict(outputs[DRIFT_RESULT][0].load())
    where = Path(body.pop("report_dir"))
    body.pop("mlflow_run_id", None)
    if params.output_dir:
        stamp = (run.start_time or datetime.now()).strftime("%Y%m%d-%H%M%S")
        where = project_path(params.output_dir) / stamp
        where.mkdir(parents=True, exist_ok=True)
        (where / DRIFT_JSON).write_text(json.dumps(body, indent=1))
        page = str(outputs[DRIFT_REPORT][0].load())
        (where / DRIFT_HTML).write_text(page, encoding="utf-8")
    result = DriftResult(**body)
    _print_drift(result, where / DRIFT_HTML, params.model.name, params.drift.retrain)


SOURCE_RULE = (
    "a relative path is relative to the project root (the folder of run.py), "
    "whether given as --source or as source: in a config"
)

PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec
    for spec in (
        PipelineSpec(
            name="ingestion",
            help="validate, anonymise, split and version a dataset",
            options={"--source": "source"},
            check=preflight.check_ingestion,
        ),
        PipelineSpec(
            name="training",
            help="train candidates, evaluate, promote a champion",
            options={"--resume": "resume"},
            needs="ingestion",
            check=preflight.check_training,
            prepare=preflight.prepare_training_run,
            model=_training_model,
        ),
        PipelineSpec(
            name="deployment",
            help="build a Bento of the champion (and serve it)",
            options={"--serve": "serve"},
            needs="training",
            check=preflight.check_deployment,
            prepare=preflight.prepare_deployment_run,
            model=_production_model,
            report=report_deployment,
        ),
        PipelineSpec(
            name="batch",
            help="the champion over a folder or a dataset split",
            options={"--source": "source"},
            check=preflight.check_batch,
            report=report_batch,
            folders=lambda params: (
                [Path(params.store)] if params.feedback.record else []
            ),
        ),
        PipelineSpec(
            name="review",
            help="the images production selected, as a labelling batch",
            check=preflight.check_review,
            report=report_review,
            folders=_review_folders,
        ),
        PipelineSpec(
            name="drift",
            help="the champion's prediction records against its training reference",
            check=preflight.check_drift,
            report=report_drift,
            folders=lambda params: [Path(params.store)],
        ),
    )
}


@dataclass(frozen=True)
class PlanSpec:
    """A `--pipeline` choice that runs several pipelines, in order, in one command.

    Attributes:
        name: The `--pipeline` choice (and, with `own`, `configs/<name>.yaml`).
        help: What it does, in a few words, for `--help`.
        pipelines: The pipelines it runs, in order.
        own: It has parameters of its own (`PARAMETER_MODELS[name]`): `--config`
            and `--set` go to them and `members` gives each pipeline's; without,
            every pipeline of the plan takes `--config`, `--set` and the flags.
        members: With `own`: a pipeline's `key=value` settings over its config
            file, from the plan's parameters.
        gates: Asked right before a pipeline runs, with the plan's parameters, the
            pipeline's and the runs of the earlier pipelines of the plan (by
            name): whether it runs, and why (printed). One that does not run ends
            the plan, with success.
    """

    name: str
    help: str
    pipelines: tuple[str, ...]
    own: bool = False
    members: Callable[[Any, str], list[str]] | None = None
    gates: Mapping[str, Callable[[Any, Any, Mapping[str, Any]], tuple[bool, str]]] = (
        field(default_factory=dict)
    )

    def load(
        self, overlays: list[Path] | None = None, overrides: list[str] | None = None
    ) -> Any:
        """The plan's own validated parameters (None without `own`)."""
        if not self.own:
            return None
        return load_parameters(self.name, overlays=overlays, overrides=overrides)


def _loop_members(params: Any, pipeline: str) -> list[str]:
    """A pipeline's settings in the loop: its block of the loop's parameters, and
    the loop's `model.name`."""
    sets = [
        f"{key}={json.dumps(value)}" for key, value in getattr(params, pipeline).items()
    ]
    if params.model.name:
        sets.append(f"model.name={params.model.name}")
    return sets


def _retraining_gate(
    params: Any, training: Any, runs: Mapping[str, Any]
) -> tuple[bool, str]:
    """The loop's training runs when enough labels were reviewed (or drift)."""
    from visionops.app.loop import retraining_due

    drift = _finished_run(runs["drift"], "drift") if "drift" in runs else None
    return retraining_due(params, training, drift)


PLANS: dict[str, PlanSpec] = {
    plan.name: plan
    for plan in (
        PlanSpec(
            name="all",
            help="ingestion, training and deployment, in order",
            pipelines=("ingestion", "training", "deployment"),
        ),
        PlanSpec(
            name="loop",
            help="drift report, review batch, retraining from the champion when due",
            pipelines=("drift", "review", "training"),
            own=True,
            members=_loop_members,
            gates={"training": _retraining_gate},
        ),
    )
}
ALL = "all"  # the `--pipeline` choice that runs ingestion, training and deployment


def plan(choice: str) -> list[PipelineSpec]:
    """The pipelines a `--pipeline` choice runs, in order.

    Raises:
        KeyError: For a name that is neither a pipeline nor a plan.
    """
    if choice in PLANS:
        return [PIPELINES[name] for name in PLANS[choice].pipelines]
    return [PIPELINES[choice]]


def choices() -> list[str]:
    """Every `--pipeline` choice: the pipelines, then the plans."""
    return [*PIPELINES, *PLANS]


def all_names() -> list[str]:
    """The pipelines `--pipeline all` runs, in order."""
    return list(PLANS[ALL].pipelines)


def taking(flag: str) -> list[str]:
    """The `--pipeline` choices a flag goes with (a plan without parameters of its
    own when one of its pipelines does)."""
    names = [spec.name for spec in PIPELINES.values() if flag in spec.options]
    for choice in PLANS.values():
        if not choice.own and any(flag in spec.options for spec in plan(choice.name)):
            names.append(choice.name)
    return names


def option_flags() -> list[str]:
    """Every flag some pipeline maps to a parameter, in registry order."""
    return list(dict.fromkeys(f for spec in PIPELINES.values() for f in spec.options))
