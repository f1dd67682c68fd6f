"""Checks before any work: the training config against the dataset's task, and the
registered model's task against the model that would join or leave it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visionops.app.lookup import DatasetFacts, find_dataset
from visionops.config import ConfigError, TrainingParameters, champion_version
from visionops.engine.task import CHAMPION_MODEL
from visionops.tasks import DEFAULT_TASK, Task, TaskError, get_task
from visionops.training.champion import (
    Champion,
    NoChampionError,
    TaskMismatchError,
    check_model_task,
)


def latest_dataset_task() -> Task:
    """The task of the latest dataset version (the default when there is none)."""
    try:
        return DatasetFacts.of(find_dataset("latest")).task
    except LookupError:
        return get_task()


def with_model_name(params: Any) -> Any:
    """Parameters whose unset `model.name` becomes the default of the latest
    dataset's task (deployment and batch follow the data, as training does)."""
    if params.model.name:
        return params
    name = latest_dataset_task().default_model_name
    return params.model_copy(
        update={"model": params.model.model_copy(update={"name": name})}
    )


def prepare_training(
    params: TrainingParameters,
    dataset_meta: Mapping[str, Any],
    *,
    check_registry: bool = True,
) -> TrainingParameters:
    """Resolves what follows the dataset's task and checks the rest against it.

    Fills in `task`, `model.name` (the task's default when unset) and
    `model.description`; checks model names, the selection and promotion
    metrics, floors and `evaluation.positive_class` against the task and the
    dataset's classes; and, with `check_registry`, that the registered model
    holds models of this task (MLflow must point at the stack's tracker).

    Args:
        params: The validated training parameters.
        dataset_meta: The `dataset` artifact's metadata (task, classes, hash).
        check_registry: Also check the registered model's task.

    Returns:
        The parameters with `task` and `model.name` filled in.

    Raises:
        ConfigError: Naming the key, the value and what the task allows.
    """
    facts = DatasetFacts.from_metadata(dataset_meta)
    task, classes = facts.task, facts.classes
    if params.task and params.task != task.name:
        raise ConfigError(
            f"task: {params.task}, but the dataset "
            f"{str(dataset_meta.get('dataset_hash', ''))[:12]} is labelled for "
            f"{task}; drop the setting or pick a {params.task} dataset"
        )
    try:
        for model in {*params.models, *_grid_models(params)}:
            task.model_name(model)
    except TaskError as err:
        raise ConfigError(f"models: {err}") from None
    if params.selection_metric and params.selection_metric not in (
        task.val_metrics_names
    ):
        raise ConfigError(
            f"selection_metric: {params.selection_metric!r} is not measured on the "
            f"validation split for {task.name}; choose one of "
            f"{list(task.val_metrics_names)}"
        )
    positive = params.evaluation.positive_class
    if positive is not None and positive not in classes:
        raise ConfigError(
            f"evaluation.positive_class: {positive!r} is not a class of the dataset; "
            f"classes: {classes}"
        )
    try:
        known = task.test_metric_names(classes, positive)
    except TaskError as err:
        raise ConfigError(f"evaluation.positive_class: {err}") from None
    rule = params.promotion
    for key, metric in [("promotion.metric", rule.metric)] + [
        (f"promotion.floors.{m}", m) for m in rule.floors
    ]:
        if metric is not None and metric not in known:
            raise ConfigError(
                f"{key}: {metric!r} is not a test metric of a {task.name} model on "
                f"this dataset; choose one of {known}"
            )
    name = params.model.name or task.default_model_name
    if check_registry:
        try:
            check_model_task(name, task)
        except TaskMismatchError as err:
            raise ConfigError(f"model.name: {err}") from None
        params = pin_champions(params, name, task)
    description = params.model.description or task.description
    identity = params.model.model_copy(
        update={"name": name, "description": description}
    )
    return params.model_copy(update={"task": task.name, "model": identity})


def pin_champions(params: TrainingParameters, name: str, task: Task) -> Any:
    """`champion` in `models` (or the grid) becomes `champion@<its version now>`,
    so a promotion during the run does not change what it starts from.

    Raises:
        ConfigError: No champion (or no such version) of `name` yet, saying how
            to train one, or a champion of another task.
    """
    named = (*params.models, *_grid_models(params))
    refs = {m for m in named if CHAMPION_MODEL.match(m)}
    if not refs:
        return params
    pinned = {}
    for ref in sorted(refs):
        version = champion_version(ref)
        try:
            start = Champion.at(name, version) if version else Champion.get(name)
        except NoChampionError:
            what = f"version {version}" if version else "champion"
            raise ConfigError(
                f"models: {ref}: {name!r} has no {what} to start from yet; train one "
                "first: python run.py --pipeline training --set 'models=[yolo11n]' "
                "(a first model is promoted)"
            ) from None
        if start.task != task.name:
            raise ConfigError(
                f"models: {ref}: v{start.version} of {name!r} is a {start.task} "
                f"model and the dataset is labelled for {task}"
            )
        pinned[ref] = f"champion@{start.version}"
    grid = {
        key: [pinned.get(v, v) if key == "model" else v for v in values]
        for key, values in params.grid.items()
    }
    models = [pinned.get(m, m) for m in params.models]
    return params.model_copy(update={"models": models, "grid": grid})


def _grid_models(params: TrainingParameters) -> set[str]:
    return {str(p["model"]) for p in params.grid_points() if "model" in p}


def check_champion_for(pipeline: str, model_name: str) -> Champion:
    """The champion a deployment or batch run would use, checked before any work.

    Refuses a model without a champion, or whose task the pipeline does not
    handle yet, or (deployment) whose BentoML models of the same name hold
    another task.

    Raises:
        ConfigError: Naming the model, both tasks and what to run.
    """
    try:
        champion = Champion.get(model_name)
        champion.get_task().require(pipeline)
    except (NoChampionError, TaskError) as err:
        raise ConfigError(f"model.name: {err}") from None
    if pipeline == "deployment":
        held = _bento_task(model_name)
        if held is not None and held != champion.task:
            raise ConfigError(
                f"model.name: the BentoML store holds {held} models named "
                f"{model_name!r}, but its champion v{champion.version} is a "
                f"{champion.task} model; one model name holds one task"
            )
    return champion


def _bento_task(model_name: str) -> str | None:
    """The task of the newest BentoML model called `model_name`, if any."""
    import bentoml

    try:
        models = bentoml.models.list(model_name)
    except bentoml.exceptions.NotFound:
        return None
    if not models:
        return None
    newest = max(models, key=lambda m: m.info.creation_time)
    return str(newest.info.metadata.get("task") or DEFAULT_TASK)


# --- each pipeline's checks before any work (`visionops.app.registry` names them) ---


def _tracking() -> None:
    """Points MLflow at the stack's tracker; a missing one is a config problem."""
    from visionops.training.tracking import TrackingError, configure_tracking

    try:
        configure_tracking()
    except TrackingError as err:
        raise ConfigError(str(err)) from None


def check_ingestion(params: Any, upstream: bool = False) -> Any:
    """Fails before any work when a local source is missing, of no known layout,
    or malformed (`visionops.data.sources.check_source`: a zip is extracted
    into the cache the first step reuses, COCO files are parsed), and, with
    `merge_with`, when the batch cannot merge (`check_merge`).

    A `picsellia://` source is checked against the platform by the first step.
    """
    if params.source.startswith("picsellia://"):
        return params
    from visionops.core.env import project_path
    from visionops.data.sources import SourceError, check_source

    try:
        check_source(project_path(params.source), archive_limits=params.archive)
    except SourceError as err:
        raise ConfigError(f"source: {err}") from None
    if params.merge_with:
        check_merge(params)
    return params


def check_merge(params: Any) -> None:
    """Fails before anything merges: a parent version that does not exist, or a
    batch with a missing image, an unknown class or an out-of-range label
    (`visionops.data.merge.check_batch`); one line names the file.

    A `picsellia://` batch is checked by the merge step once downloaded.
    """
    from visionops.app.lookup import DatasetError, resolve_dataset
    from visionops.core.env import project_path
    from visionops.data.merge import MergeError, check_batch

    try:
        choice = resolve_dataset(params.merge_with)
    except DatasetError as err:
        raise ConfigError(f"merge_with: {str(err).removeprefix('dataset: ')}") from None
    task, version = choice.facts.task, str(choice.artifact.version)
    if params.task and params.task != task.name:
        raise ConfigError(
            f"task: {params.task}, but dataset v{version} (merge_with) is labelled "
            f"for {task}; drop the setting"
        )
    if "://" in params.source:
        return
    try:
        check_batch(
            project_path(params.source),
            choice.facts.classes,
            task=task,
            version=version,
            settings=params.validation,
        )
    except MergeError as err:
        raise ConfigError(f"merge_with: nothing merged: {err}") from None


def check_training(params: TrainingParameters, upstream: bool = False) -> Any:
    """Fails before any work without a tracker, a fitting dataset, or weights, or
    when the config does not fit the dataset's task or the registered model's.

    Args:
        params: The validated training parameters.
        upstream: An ingestion runs first in the same command: its dataset is
            checked once it exists (`prepare_training_run`).
    """
    from visionops.training.yolo import PretrainedWeightsError, resolve_weights

    _tracking()
    task = None  # known once the dataset exists
    if not upstream:
        from visionops.app.lookup import select_training_dataset

        choice = select_training_dataset(params.dataset, params.model.name)
        print(f"Training on {choice.describe()}")
        params = prepare_training(params, choice.artifact.run_metadata)
        task = choice.facts.task
    models = {v for p in params.grid_points() for k, v in p.items() if k == "model"}
    for model in models or set(params.models):
        if CHAMPION_MODEL.match(model):  # its weights come from the registry
            continue
        name = task.model_name(model) if task else model
        try:
            resolve_weights(name, params.pretrained)
        except (PretrainedWeightsError, FileNotFoundError) as err:
            raise ConfigError(f"models: {err}") from None
    return params


def prepare_training_run(params: TrainingParameters) -> TrainingParameters:
    """Right before training: the task and model name of a dataset ingested by the
    same command, which did not exist when `check_training` ran."""
    if params.task is not None:
        return params
    return prepare_training(params, find_dataset(params.dataset).run_metadata)


def check_deployment(params: Any, upstream: bool = False) -> Any:
    """Fails before any work when there is no champion to deploy (or of another
    task than the model name's served models); fills in the default model name.

    Args:
        params: The validated deployment parameters.
        upstream: A training runs first in the same command: the champion is
            checked once it has run (`prepare_deployment_run`).
    """
    if upstream:
        return params
    _tracking()
    return prepare_deployment_run(params)


def prepare_deployment_run(params: Any) -> Any:
    """The model name (the latest dataset's task's default when unset) and its
    champion, checked right before the deployment runs."""
    params = with_model_name(params)
    check_champion_for("deployment", params.model.name)
    return params


def check_batch(params: Any, upstream: bool = False) -> Any:
    """Fails before any work without a champion, its ONNX export, or the images,
    or where the steps would record into a container elsewhere (lost with it)."""
    from visionops.config import dataset_split

    records = "records each image (feedback.record=false: none) in"
    _, params = _store_here(
        "batch", params, records if params.feedback.record else None
    )
    try:
        _tracking()
    except ConfigError as err:
        raise ConfigError(f"model.name: {err}") from None
    params = with_model_name(params)
    champion = check_champion_for("batch", params.model.name)
    if not champion.onnx_artifact:
        raise ConfigError(
            f"model.name: Champion v{champion.version} of {params.model.name!r} has "
            "no ONNX export: run python run.py --pipeline training first to train "
            "and promote a model that has one."
        )
    split = dataset_split(params.source)
    if split:
        from visionops.app.lookup import check_split, resolve_dataset

        choice = resolve_dataset(params.dataset)  # DatasetError is a ConfigError
        check_split(choice.facts, split)
        print(f"Batch on the {split} split of {choice.describe()}")
        return params
    from visionops.batch.predict import list_inputs
    from visionops.core.env import project_path

    source = project_path(params.source)
    if not source.exists():
        raise ConfigError(
            f"source: {source} does not exist; give a folder of images or videos, "
            "one image or video file, or dataset:train|val|test"
        )
    inputs = list_inputs(source)
    if not (inputs.files or inputs.videos):
        raise ConfigError(
            f"source: no image or video files (.jpg, .png, .mp4, ...) in {source}"
        )
    return params


def _store_here(
    pipeline: str, params: Any, does: str | None = "reads the prediction records in"
) -> tuple[Any, Any]:
    """The feedback store `params.store` names, and the parameters with its path on
    this machine, as the steps get it (a step container resolves a relative path, or
    none, against its own root).

    With `does` (what the pipeline does with the store), fails when the active
    stack's steps run in containers elsewhere: the store is files of this machine,
    which only containers on its own engine see (mounted at the same path,
    `PipelineSpec.folders`).

    Raises:
        ConfigError: Naming the store, the orchestrator and the stacks to use.
    """
    from zenml.client import Client

    from visionops.app.containers import on_this_engine
    from visionops.app.docker import CONTAINERISED
    from visionops.feedback.store import FeedbackStore

    store = FeedbackStore(params.store)
    orchestrator = Client().active_stack.orchestrator
    flavor = orchestrator.flavor
    if (
        does
        and flavor in CONTAINERISED
        and not on_this_engine(flavor, orchestrator.config.model_dump())
    ):
        raise ConfigError(
            f"The {pipeline} pipeline {does} {store.root} on this machine, which "
            f"the steps of the {flavor} orchestrator do not see from their "
            "containers elsewhere; run it on a stack whose steps run on this "
            "machine: python run.py --stack local (or server, docker, airflow)"
        )
    return store, params.model_copy(update={"store": str(store.root)})


def check_review(params: Any, upstream: bool = False) -> Any:
    """Fails before any work when the waiting images are of several models and
    none is named, a Picsellia target has no token, or the steps would not see
    the records."""
    from visionops.core.env import project_path
    from visionops.data.sources.base import SourceError
    from visionops.data.sources.picsellia import SCHEME, resolve_token
    from visionops.feedback.review import ReviewError, pending_for

    store, params = _store_here("review", params)
    try:
        # The step names the files it cannot read; here they only wait.
        pending = pending_for(store, params.model.name, lambda path, why: None)
    except ReviewError as err:
        raise ConfigError(str(err)) from None
    if pending and params.target.startswith(SCHEME):
        try:
            resolve_token()
        except SourceError as err:
            raise ConfigError(f"target: {err}") from None
    if params.target.startswith(SCHEME):
        return params
    # A path of this machine, as the step gets it (as the store's).
    return params.model_copy(update={"target": str(project_path(params.target))})


def check_drift(params: Any, upstream: bool = False) -> Any:
    """Fails before any work without a champion to report on, or where the steps
    would not see the records."""
    from visionops.training.champion import Champion, NoChampionError

    _, params = _store_here("drift", params)

    try:
        _tracking()
    except ConfigError as err:
        raise ConfigError(f"model.name: {err}") from None
    params = with_model_name(params)
    try:
        Champion.get(params.model.name)
    except NoChampionError as err:
        raise ConfigError(f"model.name: {err}") from None
    return params
