"""The champion: the registered model version behind the `champion` alias.

One description of the promoted model for every consumer (status, batch,
deployment, training, run.py's pre-checks): its task, class names, test metrics,
lineage, and the ONNX export that evaluation produced and timed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from visionops.engine.ultralytics import DEFAULT_IMGSZ
from visionops.tasks import DEFAULT_TASK, Task, get_task
from visionops.training.tracking import NOT_FOUND

CHAMPION = "champion"
CHALLENGER = "challenger"
TEST_PREFIX = "test_"
# Tags every registered version carries (written by `version_tags`).
TASK_TAG = "task"
CLASS_NAMES_TAG = "class_names"
ONNX_TAG = "onnx_artifact"
PRECISION_TAG = "precision"  # written by `QuantizationReport.tags`
# Written by `Decision.tags` and `QuantizationReport.tags`.
DECISION_TAG_PREFIXES = ("promotion.", "quantization.")
FP32 = "fp32"  # versions without the tag, or registered with quantize off
WEIGHTS_ARTIFACT = "weights/best.pt"


class NoChampionError(LookupError):
    """The registry has no usable champion; the message says what to run."""


class TaskMismatchError(ValueError):
    """A model of one task would join a registered model that holds another task."""


class Champion(BaseModel):
    """The `champion` version of a registered model, as recorded in MLflow.

    Attributes:
        name: The registered model name.
        version: The MLflow model version number.
        run_id: The MLflow run that trained and evaluated it.
        task: The task it was trained for (`detect`, `classify`, ...).
        class_names: Class names by index.
        test_metrics: Its metrics on the test split when it was registered.
        onnx_latency_ms: Median single-image CPU latency of its ONNX export.
        dataset_hash: The dataset version it was trained on.
        zenml_model_version: The ZenML model version it belongs to.
        zenml_pipeline_run_id: The training pipeline run that registered it.
        imgsz: Its training image size.
        serving_imgsz: The size its ONNX export takes.
        onnx_artifact: The ONNX export's path inside the run's artifacts (the
            INT8 model when the quantization gate chose it).
        precision: What that export computes in: `int8` or `fp32`.
        artifact_uri: The run's artifact root.
        decisions: Its `promotion.*` and `quantization.*` tags: each verdict's
            rule, interval, test images and noise sentence.
    """

    name: str
    version: str
    run_id: str
    task: str = DEFAULT_TASK
    class_names: list[str] = Field(default_factory=list)
    test_metrics: dict[str, float] = Field(default_factory=dict)
    onnx_latency_ms: float | None = None
    dataset_hash: str | None = None
    zenml_model_version: str | None = None
    zenml_pipeline_run_id: str | None = None
    imgsz: int = DEFAULT_IMGSZ
    serving_imgsz: int = DEFAULT_IMGSZ
    onnx_artifact: str | None = None
    precision: str = FP32
    artifact_uri: str = ""
    decisions: dict[str, str] = Field(default_factory=dict)

    @property
    def model_uri(self) -> str:
        """`models:/<name>@champion`: what `mlflow.pyfunc.load_model` takes."""
        return f"models:/{self.name}@{CHAMPION}"

    @property
    def version_uri(self) -> str:
        """`models:/<name>/<version>`: this exact version."""
        return f"models:/{self.name}/{self.version}"

    @property
    def onnx_uri(self) -> str | None:
        """Where the ONNX export is stored, or None."""
        if not self.onnx_artifact:
            return None
        return f"{self.artifact_uri}/{self.onnx_artifact}"

    def get_task(self) -> Task:
        """The task object of this model (predictor, metrics, rendering)."""
        return get_task(self.task)

    @classmethod
    def lookup(cls, model_name: str) -> Champion | None:
        """The champion of `model_name`, or None when there is none.

        MLflow must already point at the stack's tracker (`configure_tracking()`).

        Raises:
            MlflowException: The tracker failed (it does not answer, ...).
        """
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        try:
            version = client.get_model_version_by_alias(model_name, CHAMPION)
        except MlflowException as err:
            if err.error_code in NOT_FOUND:
                return None  # no such model or alias: no champion yet
            raise  # the tracker failed: not the same as having no champion
        return cls.from_version(model_name, version)

    @classmethod
    def get(cls, model_name: str) -> Champion:
        """The champion of `model_name`.

        Raises:
            NoChampionError: Without a champion, saying what to run.
        """
        import mlflow

        champion = cls.lookup(model_name)
        if champion is None:
            raise NoChampionError(
                f"{model_name} has no champion: no {CHAMPION!r} version of model "
                f"{model_name!r} in the MLflow registry ({mlflow.get_tracking_uri()});"
                " run python run.py --pipeline training first (it promotes its first "
                "model), or set model.name to a trained model."
            )
        return champion

    @classmethod
    def at(cls, model_name: str, version: str) -> Champion:
        """Version `version` of `model_name`, described as a champion would be.

        Raises:
            NoChampionError: The registry has no such version.
        """
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            found = MlflowClient().get_model_version(model_name, version)
        except MlflowException as err:
            if err.error_code not in NOT_FOUND:
                raise
            raise NoChampionError(
                f"registered model {model_name!r} has no version {version}"
            ) from None
        return cls.from_version(model_name, found)

    @classmethod
    def from_version(cls, model_name: str, version: Any) -> Champion:
        """Builds the champion from an MLflow `ModelVersion` and its run."""
        import mlflow

        tags = dict(version.tags or {})
        run = mlflow.get_run(version.run_id)
        params = run.data.params
        imgsz = int(params.get("imgsz", DEFAULT_IMGSZ))
        onnx = tags.get(ONNX_TAG) or _listed_onnx(version.run_id)
        names = tags.get(CLASS_NAMES_TAG)
        return cls(
            name=model_name,
            version=str(version.version),
            run_id=version.run_id,
            task=tags.get(TASK_TAG) or DEFAULT_TASK,
            class_names=json.loads(names) if names else [],
            test_metrics=parse_test_metrics(tags),
            onnx_latency_ms=float(tags["onnx_latency_ms"])
            if tags.get("onnx_latency_ms")
            else None,
            dataset_hash=tags.get("dataset_hash"),
            zenml_model_version=tags.get("zenml.model_version"),
            zenml_pipeline_run_id=tags.get("zenml.pipeline_run_id"),
            imgsz=imgsz,
            serving_imgsz=int(tags.get("serving_imgsz") or imgsz),
            onnx_artifact=onnx,
            precision=tags.get(PRECISION_TAG) or FP32,
            artifact_uri=str(run.info.artifact_uri),
            decisions={
                k: v for k, v in tags.items() if k.startswith(DECISION_TAG_PREFIXES)
            },
        )

    def fetch_onnx(self, dest: Path) -> Path:
        """Downloads the ONNX export that evaluation produced and timed.

        Raises:
            NoChampionError: The champion's run has no ONNX export.
        """
        from visionops.training.tracking import download_run_file

        if not self.onnx_artifact:
            raise NoChampionError(
                f"Champion v{self.version} of {self.name!r} has no ONNX export under "
                f"onnx/ in MLflow run {self.run_id}: run python run.py --pipeline "
                "training first to train and promote a model that has one."
            )
        return download_run_file(self.run_id, self.onnx_artifact, dest)

    def fetch_weights(self, dest: Path) -> Path:
        """Downloads the champion's `.pt` weights."""
        from visionops.training.tracking import download_run_file

        return download_run_file(self.run_id, WEIGHTS_ARTIFACT, dest)

    def lineage(self) -> dict[str, Any]:
        """What a served model reports about itself (BentoML metadata, `/info`)."""
        return {
            "model_name": self.name,
            "task": self.task,
            "class_names": self.class_names,
            "mlflow_version": self.version,
            "mlflow_run_id": self.run_id,
            "mlflow_model_uri": self.version_uri,
            "zenml_model_version": self.zenml_model_version or "",
            "zenml_pipeline_run_id": self.zenml_pipeline_run_id or "",
            "dataset_hash": self.dataset_hash or "",
            "imgsz": self.imgsz,
            "serving_imgsz": self.serving_imgsz,
            "precision": self.precision,
            "test_metrics": self.test_metrics,
        }


def parse_test_metrics(tags: dict[str, str]) -> dict[str, float]:
    """The `test_<metric>` tags of a registered version as metrics."""
    return {
        k.removeprefix(TEST_PREFIX): float(v)
        for k, v in tags.items()
        if k.startswith(TEST_PREFIX) and v
    }


def version_tags(
    *,
    task: Task,
    class_names: list[str],
    test_metrics: dict[str, float],
    onnx_artifact: str,
    onnx_latency_ms: float | None,
    serving_imgsz: int | None,
) -> dict[str, str]:
    """The tags `Champion.from_version` reads back, for a new registered version."""
    return {
        TASK_TAG: task.name,
        CLASS_NAMES_TAG: json.dumps(class_names),
        ONNX_TAG: onnx_artifact,
        **{f"{TEST_PREFIX}{k}": f"{v:.6f}" for k, v in test_metrics.items()},
        "onnx_latency_ms": f"{onnx_latency_ms:.3f}" if onnx_latency_ms else "",
        "serving_imgsz": str(serving_imgsz or ""),
    }


def _listed_onnx(run_id: str) -> str | None:
    """The first `onnx/*.onnx` of a run (versions registered before the ONNX tag)."""
    from mlflow.tracking import MlflowClient

    files = [
        f.path
        for f in MlflowClient().list_artifacts(run_id, "onnx")
        if f.path.endswith(".onnx")
    ]
    return files[0] if files else None


def registered_task(model_name: str) -> tuple[str, str] | None:
    """The task of a registered model's versions and one version holding it.

    Versions registered before tasks were recorded are detectors.

    Returns:
        `(task, version)` of the newest version, or None when the model has none.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        versions = MlflowClient().search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        return None
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v.version))
    return (newest.tags or {}).get(TASK_TAG) or DEFAULT_TASK, str(newest.version)


def check_model_task(model_name: str, task: Task) -> None:
    """Refuses to put a model of `task` under a registered model of another task.

    Raises:
        TaskMismatchError: Naming both tasks and the model, and what to set.
    """
    found = registered_task(model_name)
    if found is None or found[0] == task.name:
        return
    held, version = found
    raise TaskMismatchError(
        f"registered model {model_name!r} holds {held} models (v{version} is a "
        f"{held} model), but this is a {task} model; one registered model holds one "
        f"task. Set model.name to another name, or leave it unset to use "
        f"{task.default_model_name!r}."
    )
