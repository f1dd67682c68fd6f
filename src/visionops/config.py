"""Pipeline configuration: YAML + overlays + `--set` overrides, checked by pydantic."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from visionops.core.env import project_root
from visionops.core.images import MAX_PIXELS
from visionops.data.anonymize import AnonymizeSettings
from visionops.data.sources.archive import ArchiveLimits
from visionops.data.sources.base import SourceError
from visionops.data.sources.picsellia import SCHEME, parse_uri
from visionops.data.validate import ValidationSettings
from visionops.engine.report import Rule
from visionops.engine.task import (
    CHAMPION_MODEL,
    DEFAULT_CONF,
    DEFAULT_IOU,
    DEFAULT_MAX_DET,
    MODEL_FILE_SUFFIXES,
    MODEL_NAME,
    EvalSettings,
)
from visionops.engine.tracks import DEFAULT_TRACKER, tracker_config
from visionops.tasks import REGISTRY

Workers = int | Literal["auto"]

HASH_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")
VERSION = re.compile(r"^v?([1-9][0-9]*)$")
DATASET_PREFIX = "dataset:"
DATASET_SPLITS = ("train", "val", "test")


def dataset_selector(value: Any) -> str:
    """Normalises a dataset selector: `latest`, a version number, or a hash prefix.

    A version is accepted as typed: `4` (YAML or `--set` gives an int), `"4"` or
    `v4`; it becomes `"4"`. A hash prefix (4 to 64 hex digits) is lower-cased.

    Raises:
        ValueError: naming what is allowed.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return str(value)
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "latest":
        return text
    if text is not None and (match := VERSION.match(text)):
        return match.group(1)
    if text is not None and HASH_PREFIX.match(text):
        return text
    raise ValueError(
        "use latest, a dataset version number (4 or v4) or a dataset hash prefix "
        "(4+ hex digits); `python run.py --status` shows the dataset in use"
    )


DatasetSelector = Annotated[str, BeforeValidator(dataset_selector)]


class StrictModel(BaseModel):
    """A settings block that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid")


class SplitSettings(StrictModel):
    """Train/val/test fractions, the seed and the groups of the split.

    Attributes:
        group_by: A regular expression searched in each file name; images whose
            match is the same (`person\\d+`: one patient) share a split. None
            groups the augmented copies of one Roboflow photo.
        refresh_test: With `merge_with`: split everything again, the test split
            included, instead of keeping the parent's splits.
    """

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    seed: int = 42
    group_by: str | None = None
    refresh_test: bool = False

    @field_validator("group_by")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a regular expression ({err})") from None
        return value or None

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitSettings:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + val + test must sum to 1, got {total:g} "
                f"({self.train:g} + {self.val:g} + {self.test:g})"
            )
        return self


def _known_task(name: str) -> str:
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(REGISTRY)}")
    return name


# A task of the registry (`visionops.tasks.REGISTRY`): a new task adds no name here.
TaskName = Annotated[str, AfterValidator(_known_task)]


class IngestionParameters(StrictModel):
    """Everything the ingestion pipeline takes.

    Attributes:
        task: detect, classify or segment; None infers it from the source
            (class folders or image-level labels: classify; mask images:
            segment; boxes or polygons: detect).
        archive: Caps on what a zipped source may expand to.
        merge_with: A dataset version (`latest`, `v3`, a hash prefix) the
            source's items are added to; the new version keeps its test split.
    """

    source: str = "data/sample/boards"
    task: TaskName | None = None
    workers: Workers = "auto"
    archive: ArchiveLimits = Field(default_factory=ArchiveLimits)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    anonymize: AnonymizeSettings = Field(default_factory=AnonymizeSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    merge_with: DatasetSelector | None = None


DEVICE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+|\d+(,\d+)*)$")
# A metric name (`map50_95`, `top1`, `recall_PNEUMONIA`); which exist depends on
# the task and the classes, checked against the dataset before training.
METRIC_NAME = r"^[A-Za-z0-9_.-]+$"
Metric = Annotated[str, Field(pattern=METRIC_NAME)]


class TrainSettings(StrictModel):
    """Ultralytics training arguments that a candidate (or the grid) may set."""

    imgsz: int = Field(320, ge=32, le=2048, multiple_of=32)
    epochs: int = Field(30, ge=1)
    batch: int = Field(16, ge=1)
    patience: int = Field(10, ge=0)
    optimizer: Literal[
        "auto", "SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp"
    ] = "auto"
    lr0: float = Field(0.01, gt=0, le=1)
    seed: int = 0
    device: str = "auto"
    workers: int = Field(2, ge=0)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE.match(value):
            raise ValueError("use auto, cpu, mps, cuda, cuda:N or GPU indices like 0,1")
        return value


def check_model_name(value: str) -> str:
    """Accepts yolo11/yolo26 n/s/m/l/x names (with or without a task suffix such as
    `-cls`), a path to .pt weights or a .yaml, or `champion` / `champion@v3` (the
    registered model's champion, or one of its versions)."""
    if MODEL_NAME.match(value) or value.endswith(MODEL_FILE_SUFFIXES):
        return value
    if CHAMPION_MODEL.match(value.lower()):
        return value.lower()
    raise ValueError(
        "use a model name like yolo11n, yolo11s, yolo11m, yolo26n, yolo26s, yolo26m "
        "(the task adds -cls or -seg; yolo11n-cls is accepted too), a path to .pt "
        "weights or an architecture .yaml, or champion / champion@v3 to fine-tune "
        "the registered model's champion (or that version)"
    )


def champion_version(model: str) -> str | None:
    """The version a `champion@v3` model names (`"3"`); None for `champion`.

    Raises:
        ValueError: `model` is no champion reference.
    """
    match = CHAMPION_MODEL.match(model)
    if match is None:
        raise ValueError(f"{model!r} is not champion or champion@<version>")
    return match.group("version")


class PromotionSettings(StrictModel):
    """When a challenger replaces the champion.

    `metric` unset means the task's default (detect: map50_95, classify: top1);
    `floors` are minimum test scores on other metrics, e.g. `{specificity: 0.8}`.
    `rule`: `confident` (default) promotes when the lower bound of the paired
    bootstrap interval of challenger minus champion is above `margin`, so a
    difference the test split cannot tell from noise keeps the champion (a
    retrain on the same data must not swap champions back and forth and
    redeploy); `margin` compares the two scores alone (the rule before
    intervals), and is what decides when no interval can be computed.
    """

    metric: Metric | None = None
    rule: Rule = "confident"
    margin: float = Field(0.0, ge=0)
    min_score: float | None = Field(None, ge=0, le=1)
    max_latency_ms: float | None = Field(None, gt=0)
    floors: dict[Metric, float] = Field(default_factory=dict)


class BootstrapSettings(StrictModel):
    """The paired bootstrap behind the `confident` rules of promotion and INT8.

    Both models are scored on the same resamples of the test images; the
    interval of their difference says whether the split can tell them apart.
    1,000 resamples put the 2.5% and 97.5% quantiles within a few thousandths
    of their limit; the seed makes the verdict reproducible.
    """

    resamples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    seed: int = 0


class EvaluationSettings(StrictModel):
    """How the selected candidate and the champion are measured on the test split."""

    serving_imgsz: int | None = Field(None, ge=32, le=2048, multiple_of=32)
    latency_runs: int = Field(20, ge=1)
    batch: int = Field(8, ge=1)
    positive_class: str | None = None
    # Static INT8 copy of the ONNX export, served when its promotion metric on
    # the test split is within `max_quantization_drop` (absolute) of the FP32 one.
    quantize: bool = True
    max_quantization_drop: float = Field(0.01, ge=0.0, le=1.0)
    # `confident` (default): serve INT8 unless its drop is confidently larger
    # than `max_quantization_drop` (the whole interval of INT8 minus FP32 lies
    # below -max_quantization_drop): the same model must not be served INT8 on
    # one machine and FP32 on another over a few test images. `margin`: the
    # two scores alone.
    quantization_rule: Rule = "confident"
    calibration_images: int = Field(100, ge=1)  # from the validation split
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)

    def for_model(self, imgsz: int, device: str) -> EvalSettings:
        """How a model trained at `imgsz` (or its export taking `imgsz`) is
        measured on the test split on `device`."""
        return EvalSettings(
            imgsz=imgsz,
            batch=self.batch,
            device=device,
            positive_class=self.positive_class,
        )


class ModelSettings(StrictModel):
    """The model identity shared by the ZenML Model and the MLflow registered model."""

    # None: the task's default (detect: board-detector, classify: image-classifier).
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    tags: list[str] = Field(default_factory=list)


class TrainingParameters(StrictModel):
    """Everything the training pipeline takes."""

    dataset: DatasetSelector = "latest"
    task: TaskName | None = None
    models: list[str] = Field(default_factory=lambda: ["yolo11n"], min_length=1)
    train: TrainSettings = Field(default_factory=TrainSettings)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    pretrained: Literal["auto", "required", "never"] = "auto"
    selection_metric: Metric | None = None
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    resume: bool = False
    model: ModelSettings = Field(default_factory=ModelSettings)

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        return [check_model_name(v) for v in value]

    @model_validator(mode="after")
    def _grid_points_are_valid(self) -> TrainingParameters:
        allowed = {"model", *TrainSettings.model_fields}
        for key, values in self.grid.items():
            if key not in allowed:
                raise ValueError(
                    f"grid.{key}: not a training setting; allowed: {sorted(allowed)}"
                )
            if not values:
                raise ValueError(f"grid.{key}: give at least one value")
        base = self.train.model_dump()
        for point in self.grid_points():
            for key, value in point.items():
                if key == "model":
                    check_model_name(value)
                    continue
                try:
                    TrainSettings.model_validate({**base, key: value})
                except ValidationError as err:
                    raise ValueError(
                        f"grid.{key}={value!r}: {err.errors()[0]['msg']}"
                    ) from None
        return self

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values (one empty point without a grid)."""
        keys = list(self.grid)
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*self.grid.values())
        ]


# --- production feedback: what the service and batch record and keep ------------


class SelectionPolicy(StrictModel):
    """What every selection policy has: a switch and its rate caps.

    Attributes:
        enabled: Whether the policy picks images.
        per_hour: At most this many images picked per UTC hour (per process).
        per_day: At most this many per UTC day (per process).
    """

    enabled: bool = True
    per_hour: int = Field(10, ge=0)
    per_day: int = Field(100, ge=0)


class RandomPolicy(SelectionPolicy):
    """A random slice of all images, the unbiased sample.

    Attributes:
        fraction: The probability of picking any one image.
    """

    fraction: float = Field(0.01, ge=0.0, le=1.0)


class ConfidencePolicy(SelectionPolicy):
    """Images with a confidence just above the threshold (the model hesitated).

    Attributes:
        low: The band's lower end (the default `conf` threshold).
        high: Its upper end: any box (or top class) scoring in `[low, high)`.
    """

    low: float = Field(DEFAULT_CONF, ge=0.0, le=1.0)
    high: float = Field(0.4, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _band(self) -> ConfidencePolicy:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class EmptyPolicy(SelectionPolicy):
    """Images where the model found nothing (a missed object is found there)."""


class ClassesPolicy(SelectionPolicy):
    """Images where one of the chosen classes was found (a rare class, say).

    Attributes:
        classes: The class names; empty: the policy picks nothing.
    """

    enabled: bool = False
    classes: list[str] = Field(default_factory=list)


class CountPolicy(SelectionPolicy):
    """Images with few or many objects (crowds, or fewer than expected).

    Attributes:
        min: Picked when fewer objects than this were found (None: no lower bound).
        max: Picked when more than this were found (None: no upper bound).
    """

    enabled: bool = False
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)


class MarginPolicy(SelectionPolicy):
    """Classified images whose two most probable classes are close.

    Attributes:
        below: Picked when top-1 minus top-2 probability is below this.
    """

    below: float = Field(0.1, ge=0.0, le=1.0)


class SelectionSettings(StrictModel):
    """The selection policies by name; an image is kept when any picks it (each
    within its caps). `visionops.feedback.selection.POLICIES` holds their tests.
    A policy that reads what a task does not give (a margin for detection) never
    picks."""

    random: RandomPolicy = Field(default_factory=RandomPolicy)
    confidence: ConfidencePolicy = Field(default_factory=ConfidencePolicy)
    empty: EmptyPolicy = Field(default_factory=EmptyPolicy)
    classes: ClassesPolicy = Field(default_factory=ClassesPolicy)
    count: CountPolicy = Field(default_factory=CountPolicy)
    margin: MarginPolicy = Field(default_factory=MarginPolicy)


class FeedbackSettings(StrictModel):
    """What the service and batch record per image and which images they keep.

    Attributes:
        record: Write one prediction record per image (off: nothing is recorded
            nor kept).
        queue: Images waiting for the background writer (selected ones to be
            face-blurred and kept, and the service's drift features); when it is
            full an image is not kept (counted as dropped) nor featurized
            (`unfeatured`), so memory stays bounded.
        features: The service computes each image's drift features (its look,
            the prediction's figures, the model's embedding) off the request
            path, for `--pipeline drift`; batch writes those its drift report
            computes.
        anonymize: The ingestion anonymiser's settings, used on every kept image
            (it cannot be turned off: no unblurred face is written).
        selection: The policies.
    """

    record: bool = True
    queue: int = Field(8, ge=1, le=256)
    features: bool = True
    anonymize: AnonymizeSettings = Field(default_factory=AnonymizeSettings)
    selection: SelectionSettings = Field(default_factory=SelectionSettings)

    @field_validator("anonymize")
    @classmethod
    def _always_blur(cls, value: AnonymizeSettings) -> AnonymizeSettings:
        if not value.enabled:
            raise ValueError("kept images are always face-blurred; remove enabled")
        return value


def dataset_split(source: str) -> str | None:
    """The split of a `dataset:<split>` source (`valid` means val), else None.

    Raises:
        ValueError: For `dataset:` with an unknown split.
    """
    if not source.startswith(DATASET_PREFIX):
        return None
    split = source.removeprefix(DATASET_PREFIX).strip().lower()
    split = {"valid": "val", "validation": "val"}.get(split, split)
    if split not in DATASET_SPLITS:
        raise ValueError(
            f"{source!r}: use dataset:train, dataset:val or dataset:test "
            "(a split of the dataset version)"
        )
    return split


def _tracker(value: str) -> str:
    tracker_config(value)  # raises, naming what is allowed
    return value


class VideoSettings(BaseModel):
    """How batch reads and writes videos (`visionops.batch.video`).

    Attributes:
        fps: Predict this many frames per second of video (the nearest whole
            stride); None: every frame (or `stride`).
        stride: Predict every `stride`-th frame; set `fps` or `stride`, not both.
        tracker: Ultralytics' tracker for tasks whose predictions have boxes:
            `bytetrack`, `botsort`, or the path of a tracker YAML of one's own.
        blur_faces: Hide faces in the annotated video (as ingestion does);
            predictions are made on the frames as they are.
        max_frame_pixels: Refuse videos whose frames are larger (the service's
            limit on one image by default).
        contact_sheet: Frames drawn in the report's contact sheet per video.
    """

    model_config = ConfigDict(extra="forbid")

    fps: float | None = Field(None, gt=0.0, le=1000.0)
    stride: int | None = Field(None, ge=1, le=100_000)
    tracker: Annotated[str, AfterValidator(_tracker)] = DEFAULT_TRACKER
    blur_faces: bool = True
    max_frame_pixels: int = Field(MAX_PIXELS, ge=1)
    contact_sheet: int = Field(12, ge=0, le=100)

    @model_validator(mode="after")
    def _one_rate(self) -> VideoSettings:
        if self.fps is not None and self.stride is not None:
            raise ValueError(
                f"video.fps {self.fps} and video.stride {self.stride}: set one"
            )
        return self

    def stride_for(self, video_fps: float) -> int:
        """Frames advanced per predicted frame for a video of `video_fps`."""
        if self.fps is not None and video_fps > 0:
            return max(1, round(video_fps / self.fps))
        return self.stride or 1


class BatchSettings(BaseModel):
    """How the detector runs over a folder.

    Attributes:
        conf: Keep boxes scoring above this.
        iou: NMS IoU threshold.
        max_det: Keep at most this many boxes per image.
        batch: Images decoded and sent to ONNX Runtime together.
        threads: ONNX Runtime intra-op threads (`auto`: one per CPU core); as many
            threads decode the next batch meanwhile.
        device: `auto` uses ONNX Runtime's CUDA provider when it is installed.
        grid_size: Images in the annotated sample grid (0: none).
        video: How videos in the folder are read and written.
    """

    model_config = ConfigDict(extra="forbid")

    conf: float = Field(DEFAULT_CONF, ge=0.0, le=1.0)
    iou: float = Field(DEFAULT_IOU, gt=0.0, le=1.0)
    max_det: int = Field(DEFAULT_MAX_DET, ge=1)
    batch: int = Field(8, ge=1, le=1024)
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    grid_size: int = Field(16, ge=0, le=100)
    video: VideoSettings = Field(default_factory=VideoSettings)


class DriftSettings(StrictModel):
    """When a drift report says the images moved away from the model's reference.

    Attributes:
        enabled: Write `drift.html` and `drift.json` beside a batch run's outputs
            (when the champion has a reference).
        min_images: Fewer images than this: the report says so, no verdict.
        drift_share: The per-image features (sizes, brightness, counts,
            confidences) drift when at least this share of their tests fail.
        embedding_share: The embedding drifts when at least this share of its
            components' tests fail.
        low_confidence: An image whose confidence (highest box confidence, top-1
            probability) is below this is a low-confidence prediction.
        low_confidence_margin: Drift when the share of low-confidence images is
            above the test split's by more than this.
        retrain: On a drift verdict, print the review and retraining commands.
    """

    enabled: bool = True
    min_images: int = Field(10, ge=2)
    drift_share: float = Field(0.4, gt=0.0, le=1.0)
    embedding_share: float = Field(0.4, gt=0.0, le=1.0)
    low_confidence: float = Field(0.5, ge=0.0, le=1.0)
    low_confidence_margin: float = Field(0.2, ge=0.0, le=1.0)
    retrain: bool = False


class BatchParameters(StrictModel, BatchSettings):
    """Everything the batch inference pipeline takes: its `BatchSettings` and more."""

    source: str = "dataset:test"
    dataset: DatasetSelector = "latest"
    output_dir: str | None = "outputs/batch"
    # The feedback store the records and kept images go to; None: this machine's.
    store: str | None = None
    model: ModelSettings = Field(default_factory=ModelSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("give a folder of images or dataset:<train|val|test>")
        dataset_split(value)  # a bad dataset:<split> raises, naming what is allowed
        return value

    def settings(self) -> BatchSettings:
        """The prediction settings alone, as the predict step takes them."""
        return BatchSettings(**self.model_dump(include=set(BatchSettings.model_fields)))


class DeploymentParameters(StrictModel):
    """Everything the deployment pipeline takes."""

    serve: bool = False
    port: int = Field(3000, ge=1024, le=65535)
    model: ModelSettings = Field(default_factory=ModelSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)


# Where review batches go unless `target` says otherwise (a folder per batch).
REVIEW_FOLDER = "outputs/review"


class ReviewParameters(StrictModel):
    """Everything the review pipeline takes.

    Attributes:
        target: A folder (each batch in `<target>/<time>/`, relative to the
            project root) or `picsellia://<dataset>/<version>` (or
            `picsellia://<version id>`).
        max_images: At most this many images per batch, oldest first; the rest
            wait for the next one.
        store: The feedback store to read; None: `VISIONOPS_FEEDBACK_DIR`, else
            the state folder's (`.visionops/feedback`).
        model: `name`: only the images this registered model predicted; None:
            whichever model predicted them, when it is one model.
    """

    target: str = REVIEW_FOLDER
    max_images: int = Field(500, ge=1, le=100_000)
    store: str | None = None
    model: ModelSettings = Field(default_factory=ModelSettings)

    @field_validator("target")
    @classmethod
    def _known_target(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                f"give a folder (default {REVIEW_FOLDER}) or "
                "picsellia://<dataset>/<version>"
            )
        if value.startswith(SCHEME):
            try:
                parse_uri(value)
            except SourceError as err:
                raise ValueError(str(err)) from None
        elif "://" in value:
            raise ValueError(
                "use a local folder or picsellia://<dataset>/<version>; no other "
                "platform is supported"
            )
        return value


class DriftParameters(StrictModel):
    """Everything the drift pipeline takes: which records, and the thresholds.

    Attributes:
        days: Records of the last this many days (None: all kept).
        last: At most this many of the newest records (None: all in `days`).
        store: The feedback store's folder (None: this machine's, as the
            service writes it).
        output_dir: `drift.html` and `drift.json` are copied to
            `<output_dir>/<run start time>/`; None: not copied.
    """

    days: int | None = Field(7, ge=1)
    last: int | None = Field(None, ge=1)
    store: str | None = None
    output_dir: str | None = "outputs/drift"
    model: ModelSettings = Field(default_factory=ModelSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)


class LoopParameters(StrictModel):
    """The feedback loop (`--pipeline loop`): a drift report, a review batch, and a
    retraining from the champion when enough corrected labels came back.

    Attributes:
        min_reviewed: Retrain when the latest dataset holds at least this many
            reviewed items (merged review batches) since the champion's dataset.
        on_drift: Also retrain on fewer (at least one) when the drift report
            of the same run says drift.
        model: `name`: the registered model the loop looks after, passed to each
            pipeline; None: each pipeline's own default.
        drift: The drift pipeline's parameters over `configs/drift.yaml`.
        review: The review pipeline's parameters over `configs/review.yaml`.
        training: The training pipeline's parameters over
            `configs/training.yaml` (`models: [champion]`: from the champion).
    """

    min_reviewed: int = Field(50, ge=1)
    on_drift: bool = False
    model: ModelSettings = Field(default_factory=ModelSettings)
    drift: dict[str, Any] = Field(default_factory=dict)
    review: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)


PARAMETER_MODELS: dict[str, type[StrictModel]] = {
    "ingestion": IngestionParameters,
    "training": TrainingParameters,
    "batch": BatchParameters,
    "deployment": DeploymentParameters,
    "review": ReviewParameters,
    "drift": DriftParameters,
    "loop": LoopParameters,
}
TOP_LEVEL_KEYS = ("parameters", "model")


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the file."""


def config_path(pipeline: str) -> Path:
    """Returns the default config file of a pipeline, `configs/<pipeline>.yaml`."""
    return project_root() / "configs" / f"{pipeline}.yaml"


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Returns `base` with `overlay` merged in; nested mappings merge key by key."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with a `parameters:` key.")
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {unknown}; allowed: "
            f"{list(TOP_LEVEL_KEYS)} (pipeline settings go under `parameters:`)."
        )
    return data


def parse_override(text: str) -> dict[str, Any]:
    """Turns `a.b=value` into `{"a": {"b": value}}`, the value parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("parameters.")
    if not sep or not key:
        raise ConfigError(
            f"--set {text!r}: expected KEY=VALUE, e.g. --set split.seed=7"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(
            f"--set {text!r}: the value is not valid YAML: {err}"
        ) from err
    tree: dict[str, Any] = {}
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        return f"{loc}: unknown key (value {value!r}); allowed keys here: {allowed}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if not loc:  # a check across several keys names them in its message
        return message
    return f"{loc}: {message} (got {value!r})"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return sorted(getattr(current, "model_fields", {}))


def load_parameters(
    pipeline: str,
    overlays: list[Path] | None = None,
    overrides: list[str] | None = None,
) -> StrictModel:
    """Loads and validates a pipeline's parameters before any work is done.

    Args:
        pipeline: Pipeline name, a key of `PARAMETER_MODELS`.
        overlays: Extra YAML files merged, in order, over `configs/<pipeline>.yaml`.
        overrides: `key=value` strings applied last.

    Returns:
        The validated parameters model.

    Raises:
        ConfigError: naming every bad key, its value and what is allowed.
    """
    if pipeline not in PARAMETER_MODELS:
        raise ConfigError(
            f"Unknown pipeline {pipeline!r}; choose one of {sorted(PARAMETER_MODELS)}."
        )
    model = PARAMETER_MODELS[pipeline]
    data: dict[str, Any] = {}
    base = config_path(pipeline)
    for path in [base, *(overlays or [])] if base.is_file() else list(overlays or []):
        data = deep_merge(data, _read_yaml(Path(path)))
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise ConfigError("`parameters:` must be a mapping of settings.")
    if "model" in data:  # the top-level `model:` block names the model identity
        params = {**params, "model": data["model"]}
    for text in overrides or []:
        params = deep_merge(params, parse_override(text))
    try:
        return model.model_validate(params)
    except ValidationError as err:
        lines = [_describe(e, model) for e in err.errors()]
        raise ConfigError(
            f"Invalid {pipeline} configuration:\n  " + "\n  ".join(lines)
        ) from None
