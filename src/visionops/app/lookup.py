"""Finding a dataset version by selector, and checking it against the champion."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from visionops.config import HASH_PREFIX, ConfigError
from visionops.core.names import DATASET
from visionops.data.split import SPLITS
from visionops.tasks import Task, get_task
from visionops.training.champion import Champion

logger = logging.getLogger(__name__)

# What each split is needed for, said when it is missing.
SPLIT_USE = {
    "train": "training needs it",
    "val": "candidate selection needs it",
    "test": "evaluation and promotion need it",
}


class DatasetError(ConfigError, LookupError):
    """The named dataset does not exist or does not fit; one line says why."""


@dataclass(frozen=True)
class DatasetFacts:
    """What the artifact metadata of a dataset version says, without loading it."""

    version: str
    hash: str
    task: Task = field(default_factory=get_task)
    classes: list[str] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, artifact: Any) -> DatasetFacts:
        """Reads the facts of a `dataset` artifact version."""
        return cls.from_metadata(artifact.run_metadata, str(artifact.version))

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], version: str = "") -> DatasetFacts:
        """The facts a `dataset` artifact's metadata records (its task: the
        default where it records none)."""
        return cls(
            version=version,
            hash=str(meta.get("dataset_hash", "")),
            task=get_task(meta.get("task")),
            classes=[str(c) for c in meta.get("classes") or []],
            images={str(k): int(v) for k, v in (meta.get("images") or {}).items()},
        )

    def describe(self) -> str:
        """`version 5 (hash 1a2b3c4d5e6f, detect, train 40 / val 9 / test 9 images)`."""
        counts = " / ".join(f"{s} {self.images.get(s, 0)}" for s in SPLITS)
        return f"version {self.version} (hash {self.hash[:12]}, {self.task}, {counts})"


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset version a selector resolved to, and how."""

    selector: str
    artifact: Any
    facts: DatasetFacts
    note: str = ""  # e.g. which of several versions with the same content was taken

    def describe(self) -> str:
        """One line for people: which version `dataset: <selector>` means now."""
        text = f"dataset {self.facts.describe()} for dataset={self.selector}"
        return f"{text}; {self.note}" if self.note else text


def dataset_versions() -> list[Any]:
    """Every `dataset` artifact version of this ZenML store, newest first."""
    from zenml.client import Client

    page = Client().list_artifact_versions(
        name=DATASET, sort_by="desc:created", size=1000, hydrate=True
    )
    return list(page.items)


def _known(versions: list[Any]) -> str:
    shown = [
        f"{v.version} ({str(v.run_metadata.get('dataset_hash', ''))[:12]})"
        for v in versions[:10]
    ]
    more = f" and {len(versions) - 10} more" if len(versions) > 10 else ""
    return ", ".join(shown) + more


def _by_hash(selector: str, versions: list[Any]) -> tuple[Any, str] | None:
    """The latest version whose hash starts with `selector`, and a note, or None.

    Versions with the same hash hold the same content: one dataset.

    Raises:
        DatasetError: When the prefix matches two different contents.
    """
    matches = [
        v
        for v in versions
        if str(v.run_metadata.get("dataset_hash", "")).startswith(selector)
    ]
    if not matches:
        return None
    hashes = {str(v.run_metadata["dataset_hash"]) for v in matches}
    if len(hashes) > 1:
        raise DatasetError(
            f"dataset: hash prefix {selector!r} matches {len(hashes)} different "
            f"datasets ({', '.join(sorted(h[:12] for h in hashes))}); give more "
            "characters of the hash."
        )
    latest = max(matches, key=lambda v: v.created)
    note = ""
    if len(matches) > 1:
        same = ", ".join(sorted((str(v.version) for v in matches), key=_number))
        note = (
            f"versions {same} hold this same content; using the latest, "
            f"version {latest.version}"
        )
    return latest, note


def _number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


def resolve_dataset(
    selector: str = "latest", versions: list[Any] | None = None
) -> DatasetChoice:
    """Resolves a dataset selector to an artifact version of this ZenML store.

    Args:
        selector: `latest`, a version number (`4`) or a hash prefix, as normalised
            by `visionops.config.dataset_selector`. A number that is no version is
            tried as a hash prefix.
        versions: The store's dataset versions, newest first, if already listed.

    Raises:
        DatasetError: naming the selector and the versions that exist.
    """
    from visionops.config import dataset_selector

    try:
        selector = dataset_selector(selector)
    except ValueError as err:
        raise DatasetError(f"dataset: {err} (got {selector!r})") from None
    versions = dataset_versions() if versions is None else versions
    if not versions:
        raise DatasetError(
            "dataset: this ZenML store has no dataset yet; run "
            "`python run.py --pipeline ingestion` first."
        )
    note = ""
    exact = [v for v in versions if str(v.version) == selector]
    if selector == "latest":
        artifact = max(versions, key=lambda v: v.created)
    elif exact:
        artifact = exact[0]
    else:
        found = _by_hash(selector, versions) if HASH_PREFIX.match(selector) else None
        if found is None:
            what = "version" if selector.isdigit() else "hash prefix"
            raise DatasetError(
                f"dataset: no dataset {what} {selector!r} in this ZenML store; "
                f"versions (hash): {_known(versions)}."
            )
        artifact, note = found
        if selector.isdigit():  # say that a number was read as a hash prefix
            read = f"no version {selector}: read as a hash prefix"
            note = f"{read}; {note}" if note else read
    return DatasetChoice(selector, artifact, DatasetFacts.of(artifact), note)


def find_dataset(selector: str = "latest") -> Any:
    """Returns the `dataset` artifact version for `latest`, a version or a hash prefix.

    Raises:
        DatasetError: with what to run or which versions exist.
    """
    return resolve_dataset(selector).artifact


def _card_classes(run_id: str) -> list[str] | None:
    """The class names on the dataset card a training run logged, if any."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from visionops.data.version import CARD_FILE

    try:
        card = mlflow.artifacts.load_dict(f"runs:/{run_id}/dataset/{CARD_FILE}")
    except (MlflowException, OSError, ValueError):
        return None
    names = card.get("class_names")
    return [str(c) for c in names] if isinstance(names, list) else None


def champion_facts(
    model_name: str, versions: list[Any] | None = None
) -> Champion | None:
    """The `Champion` of `model_name` with its class names, or None.

    MLflow must point at the stack's tracker (`configure_tracking()`). Class names
    come from the version's tags; for versions registered before they were
    recorded, from the dataset with its `dataset_hash` in this store, else from
    the dataset card its run logged (empty when neither knows them).
    """
    champion = Champion.lookup(model_name)
    if champion is None or champion.class_names:
        return champion
    classes = None
    if champion.dataset_hash:
        for v in dataset_versions() if versions is None else versions:
            if v.run_metadata.get("dataset_hash") == champion.dataset_hash:
                classes = DatasetFacts.of(v).classes or None
                break
    if classes is None and champion.run_id:
        classes = _card_classes(champion.run_id)
    return champion.model_copy(update={"class_names": classes or []})


def check_split(dataset: DatasetFacts, split: str) -> None:
    """Fails when `split` of the dataset holds no image.

    Raises:
        DatasetError: one line naming the version, the split and the counts.
    """
    if dataset.images.get(split, 0) > 0:
        return
    raise DatasetError(
        f"dataset: {dataset.describe()} has no {split} split images and "
        f"{SPLIT_USE.get(split, 'this run needs it')}; ingest with a "
        f"{split} fraction above 0 (e.g. `--set split.{split}=0.15`) or pick "
        "another version with `--set dataset=<version>`."
    )


def check_training_dataset(dataset: DatasetFacts, champion: Champion | None) -> None:
    """Fails on anything that would stop a training run on `dataset` after it starts.

    Every split must hold images (train to learn, val to select, test to evaluate
    and promote); the champion, when there is one, is re-measured on the same test
    split, so its task and class names must be the dataset's.

    Raises:
        DatasetError: one line per problem, the first one found.
    """
    for split in SPLITS:
        check_split(dataset, split)
    if champion is None:
        return
    where = f"champion v{champion.version} of {champion.name!r}"
    other = "train under another `--set model.name=...` or pick a dataset"
    if dataset.task.name != champion.task:
        raise DatasetError(
            f"dataset: {dataset.describe()} is labelled for {dataset.task} but the "
            f"{where} is a {champion.task} model; {other} labelled for "
            f"{champion.task}."
        )
    if (
        champion.class_names  # unknown classes cannot be compared
        and dataset.hash != champion.dataset_hash
        and dataset.classes != champion.class_names
    ):
        raise DatasetError(
            f"dataset: {dataset.describe()} has classes {dataset.classes} but the "
            f"{where} predicts {champion.class_names} (dataset "
            f"{str(champion.dataset_hash or '')[:12]}); {other} with these classes."
        )


def select_training_dataset(selector: str, model_name: str | None) -> DatasetChoice:
    """Resolves the dataset of a training run and checks it before any work.

    `model_name` None means the default name of the dataset's task.

    Raises:
        DatasetError: The dataset is missing, ambiguous or does not fit.
        TrackingError: The active stack has no experiment tracker.
    """
    from visionops.training.tracking import configure_tracking

    configure_tracking()
    versions = dataset_versions()
    choice = resolve_dataset(selector, versions)
    model_name = model_name or choice.facts.task.default_model_name
    champ = champion_facts(model_name, versions)
    check_training_dataset(choice.facts, champ)
    return choice


def class_name_lookup() -> Callable[[str, str], list[str] | None]:
    """`registered_class_names` on the active stack's tracker; without one, a
    lookup that finds nothing (a review batch then takes the class names from
    the predictions), said in one line."""
    from visionops.training.tracking import TrackingError, configure_tracking

    try:
        configure_tracking()
    except TrackingError as err:
        logger.warning("%s Class names come from the predictions.", err)
        return lambda model_name, version: None
    return registered_class_names


def registered_class_names(model_name: str, version: str) -> list[str] | None:
    """The class names of one registered model version, by id; None when the
    registry has no such version (or it names no classes).

    MLflow must already point at the stack's tracker (`configure_tracking()`).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        found = MlflowClient().get_model_version(model_name, str(version))
        return Champion.from_version(model_name, found).class_names or None
    except MlflowException:
        return None
