"""The dataset a user names is the dataset they get, checked before any training."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from visionops.app.lookup import (
    DatasetError,
    DatasetFacts,
    check_split,
    check_training_dataset,
    resolve_dataset,
)
from visionops.config import ConfigError, load_parameters
from visionops.tasks import get_task
from visionops.training.champion import Champion

COUNTS = {"train": 40, "val": 9, "test": 9}

# --- selectors, as typed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "selector"),
    [
        ("4", "4"),  # YAML reads an int, as the config comment documents
        ("v4", "4"),  # as `--status` shows champions: v3
        ("V12", "12"),
        ("'4'", "4"),
        ("latest", "latest"),
        ("AB12cd", "ab12cd"),
        ("'0123'", "0123"),  # a quoted hash prefix of digits
    ],
)
@pytest.mark.parametrize("pipeline", ["training", "batch"])
def test_dataset_selector_as_typed(pipeline: str, typed: str, selector: str) -> None:
    params = load_parameters(pipeline, overrides=[f"dataset={typed}"])
    assert params.dataset == selector


def test_dataset_selector_in_a_yaml_overlay(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters:\n  dataset: 7\n")
    assert load_parameters("training", overlays=[overlay]).dataset == "7"


@pytest.mark.parametrize("typed", ["lates", "0", "-3", "true", "4.5", "ab", "[4]"])
def test_bad_dataset_selector_names_key_value_and_allowed(typed: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_parameters("training", overrides=[f"dataset={typed}"])
    line = str(err.value).splitlines()[1].strip()
    assert line.startswith("dataset: use latest, a dataset version number (4 or v4)")
    assert "hash prefix" in line
    assert line.endswith(f"(got {yaml.safe_load(typed)!r})")


# --- resolution over a store's versions ------------------------------------------


def _version(number: int, digest: str, classes=("board",)) -> SimpleNamespace:
    """An artifact version as ZenML lists it: number, creation time, metadata."""
    return SimpleNamespace(
        version=str(number),
        created=datetime(2026, 1, number, tzinfo=UTC),
        run_metadata={
            "dataset_hash": digest,
            "task": "detect",
            "classes": list(classes),
            "images": dict(COUNTS),
        },
    )


TWIN = "1234ab" + "0" * 58
VERSIONS = [  # newest first, as listed
    _version(4, "9f00bb" + "1" * 58),
    _version(3, "9f00aa" + "1" * 58),
    _version(2, TWIN),
    _version(1, TWIN),
]


def test_resolve_latest_a_version_and_a_hash_prefix() -> None:
    assert resolve_dataset("latest", VERSIONS).facts.version == "4"
    assert resolve_dataset(1, VERSIONS).facts.version == "1"
    assert resolve_dataset("v3", VERSIONS).facts.hash.startswith("9f00aa")
    choice = resolve_dataset("9F00A", VERSIONS)
    assert choice.facts.version == "3" and choice.note == ""


def test_same_content_resolves_to_its_latest_version() -> None:
    choice = resolve_dataset("1234a", VERSIONS)
    assert choice.facts.version == "2"
    assert choice.note == (
        "versions 1, 2 hold this same content; using the latest, version 2"
    )
    assert choice.describe().startswith(
        "dataset version 2 (hash 1234ab000000, detect, train 40 / val 9 / test 9) "
        "for dataset=1234a; versions 1, 2 hold"
    )


def test_a_number_that_is_no_version() -> None:
    choice = resolve_dataset("1234", VERSIONS)  # 4+ digits: also a hash prefix
    assert choice.facts.version == "2"
    assert choice.note.startswith("no version 1234: read as a hash prefix; versions 1")
    with pytest.raises(DatasetError) as err:  # too short to be a hash prefix
        resolve_dataset("9", VERSIONS)
    assert str(err.value) == (
        "dataset: no dataset version '9' in this ZenML store; versions (hash): "
        "4 (9f00bb111111), 3 (9f00aa111111), 2 (1234ab000000), 1 (1234ab000000)."
    )


def test_a_prefix_of_two_contents_is_refused() -> None:
    with pytest.raises(DatasetError, match="matches 2 different datasets"):
        resolve_dataset("9f00", VERSIONS)
    with pytest.raises(DatasetError, match="no dataset hash prefix 'abcd'"):
        resolve_dataset("abcd", VERSIONS)
    with pytest.raises(DatasetError, match="has no dataset yet"):
        resolve_dataset("latest", [])


# --- checks on what is known before training starts ------------------------------


def _facts(**changes) -> DatasetFacts:
    base = {
        "version": "5",
        "hash": "a" * 64,
        "task": get_task("detect"),
        "classes": ["board"],
        "images": dict(COUNTS),
    }
    return DatasetFacts(**{**base, **changes})


def _champion(**changes) -> Champion:
    base = {
        "name": "board-detector",
        "version": "3",
        "run_id": "r",
        "task": "detect",
        "dataset_hash": "b" * 64,
        "class_names": ["board"],
    }
    return Champion(**{**base, **changes})


def test_a_fitting_dataset_passes() -> None:
    check_training_dataset(_facts(), None)
    check_training_dataset(_facts(), _champion())
    # unknown champion classes cannot be compared: not a reason to stop
    check_training_dataset(_facts(), _champion(class_names=[]))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_split_must_hold_images(split: str) -> None:
    for images in (
        {**COUNTS, split: 0},
        {s: n for s, n in COUNTS.items() if s != split},
    ):
        with pytest.raises(DatasetError) as err:
            check_training_dataset(_facts(images=images), None)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith("dataset: version 5 (hash aaaaaaaaaaaa")
        assert f"has no {split} split images" in message
        assert f"split.{split}=0.15" in message


def test_task_must_match_the_champion() -> None:
    with pytest.raises(DatasetError) as err:
        check_training_dataset(_facts(task=get_task("classify")), _champion())
    message = str(err.value)
    assert "\n" not in message
    assert "labelled for classify but the champion v3" in message
    assert "is a detect model" in message


def test_classes_must_match_the_champion() -> None:
    with pytest.raises(DatasetError) as err:
        check_training_dataset(_facts(classes=["board", "chip"]), _champion())
    message = str(err.value)
    assert "\n" not in message
    assert "['board', 'chip']" in message and "predicts ['board']" in message
    # the champion's own dataset always fits, whatever its recorded classes
    same = _facts(hash="b" * 64, classes=["chip"])
    check_training_dataset(same, _champion())


def test_batch_split_must_hold_images() -> None:
    check_split(_facts(), "test")
    with pytest.raises(DatasetError, match="has no val split images"):
        check_split(_facts(images={**COUNTS, "val": 0}), "val")


# --- a real store: versions saved as artifacts, champions registered in MLflow ----


def _save(dataset) -> str:
    """Saves a dataset version as the `dataset` artifact; returns its version."""
    from zenml import save_artifact

    from visionops.app.materializers import DatasetVersionMaterializer
    from visionops.core.names import DATASET
    from visionops.data.version import DatasetVersion

    artifact = save_artifact(
        DatasetVersion(dataset.root),  # the materializer re-points `root`
        name=DATASET,
        materializer=DatasetVersionMaterializer,
    )
    return str(artifact.version)


def _no_test_split(tiny_dataset, tmp_path_factory) -> object:
    """The sample again, split 80/20 with no test split, built by the library."""
    from visionops.data.anonymize import FaceReport
    from visionops.data.split import plan_split
    from visionops.data.validate import ValidationReport
    from visionops.data.version import build_dataset_version
    from visionops.tasks import get_task

    anon = tiny_dataset.root.parent / "anon"  # the validated sample (conftest)
    plan = plan_split(anon, {"train": 0.8, "val": 0.2, "test": 0.0}, 42)
    card = tiny_dataset.card
    report = ValidationReport.model_validate(
        {k: card[k] for k in ("items_in", "accepted")}
        | {"quarantined": card["quarantine"], "fixes": card["fixes"]}
    )
    return build_dataset_version(
        anon,
        plan,
        tmp_path_factory.mktemp("no-test") / "dataset",
        validation=report,
        faces=FaceReport(**card["faces"]),
        task=get_task(tiny_dataset.task),
    )


@pytest.fixture(scope="module")
def store(tiny_dataset, tmp_path_factory) -> dict:
    """The sample saved twice (same content), then a version without a test split."""
    import run

    assert run.main(["--stack", "local"]) == 0
    twin_old = _save(tiny_dataset)
    twin_new = _save(tiny_dataset)
    no_test = _no_test_split(tiny_dataset, tmp_path_factory)
    return {
        "twins": (twin_old, twin_new),
        "hash": tiny_dataset.hash,
        "no_test": _save(no_test),
        "no_test_hash": no_test.hash,
    }


def _register_champion(name: str, tags: dict[str, str], card: dict | None) -> None:
    """A registered version with alias `champion`, as training leaves it (no model)."""
    import mlflow

    from visionops.core.env import state_dir
    from visionops.training.tracking import configure_tracking

    configure_tracking()
    client = mlflow.MlflowClient()
    # Artifacts in the test's state folder: an experiment created without a
    # location would put them in ./mlruns of the working directory (the checkout).
    name_of_experiment = "dataset-selection-tests"
    experiment = client.get_experiment_by_name(name_of_experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            name_of_experiment,
            artifact_location=(state_dir() / "dataset-selection-artifacts").as_uri(),
        )
    )
    with mlflow.start_run(experiment_id=experiment_id) as active:
        if card is not None:
            mlflow.log_dict(card, "dataset/dataset_card.json")
        mlflow.log_text("not a real model", "onnx/model.onnx")
    client.create_registered_model(name)
    version = client.create_model_version(
        name,
        source=f"{active.info.artifact_uri}/onnx",
        run_id=active.info.run_id,
        tags=tags,
    )
    client.set_registered_model_alias(name, "champion", version.version)


@pytest.fixture
def planned(monkeypatch) -> list:
    """run.main checks everything but runs no pipeline: the params it would run."""
    import run

    calls: list = []
    monkeypatch.setattr(
        run,
        "run_pipeline",
        lambda name, params, enable_cache, schedule=None: calls.append(params),
    )
    return calls


def _train(*sets: str) -> int:
    import run

    args = ["--pipeline", "training"]
    for text in sets:
        args += ["--set", text]
    return run.main(args)


def test_version_number_as_typed(store: dict, planned: list, capsys) -> None:
    old, _ = store["twins"]
    for typed in (old, f"v{old}"):
        assert _train(f"dataset={typed}") == 0, capsys.readouterr().err
        assert planned[-1].dataset == old
        out = capsys.readouterr().out
        assert f"Training on dataset version {old} (hash {store['hash'][:12]}" in out


def test_same_content_is_one_dataset(store: dict, planned: list, capsys) -> None:
    old, new = store["twins"]
    assert _train(f"dataset={store['hash'][:8]}") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"Training on dataset version {new} (hash {store['hash'][:12]}" in out
    # Other tests in the session may have ingested the same sample into this store:
    # every version with this content is listed, the twins among them.
    listed = re.search(r"versions ([\d, ]+) hold this same content", out)
    assert listed, out
    assert {str(old), str(new)} <= set(listed.group(1).split(", "))
    assert f"using the latest, version {new}" in out


def test_unknown_version_lists_the_versions(store: dict, capsys) -> None:
    assert _train("dataset=9999") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Configuration error: dataset: no dataset version '9999'")
    assert f"{store['no_test']} ({store['no_test_hash'][:12]})" in err
    assert "\n" not in err


def test_bad_selector_fails_before_any_work(store: dict, planned: list, capsys) -> None:
    assert _train("dataset=lates") == 2
    assert "dataset: use latest" in capsys.readouterr().err and not planned


def test_no_test_split_fails_before_training(store: dict, planned: list, capsys):
    assert _train("dataset=latest") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"Configuration error: dataset: version {store['no_test']}")
    assert "has no test split images" in err and "\n" not in err
    assert not planned


def test_the_pipeline_itself_checks_before_its_first_step(store: dict) -> None:
    """`--pipeline all` checks the dataset it just ingested when training compiles."""
    from zenml.client import Client

    from pipelines.training import training

    runs_before = Client().list_pipeline_runs(size=1).total
    params = load_parameters("training", overrides=["dataset=latest"])
    with pytest.raises(DatasetError, match="has no test split images"):
        training.with_options(enable_cache=False)(params=params)
    assert Client().list_pipeline_runs(size=1).total == runs_before


def test_task_and_classes_match_the_champion(store: dict, planned: list, capsys):
    old, _ = store["twins"]
    card = {"class_names": ["chip", "resistor"]}
    # no `task` tag: trained before tasks existed, a detector; classes from its card
    _register_champion("dsel-other", {"dataset_hash": "f" * 64}, card)
    assert _train(f"dataset={old}", "model.name=dsel-other") == 2
    err = capsys.readouterr().err
    assert "predicts ['chip', 'resistor']" in err and "['board']" in err
    _register_champion("dsel-cls", {"dataset_hash": "f" * 64, "task": "classify"}, card)
    assert _train(f"dataset={old}", "model.name=dsel-cls") == 2
    assert "is a classify model" in capsys.readouterr().err
    # the champion's dataset is in this store: its classes come from there
    _register_champion("dsel-same", {"dataset_hash": store["no_test_hash"]}, None)
    assert _train(f"dataset={old}", "model.name=dsel-same") == 0
    assert planned[-1].dataset == old


def test_batch_uses_the_same_selectors(store: dict, planned: list, capsys) -> None:
    import run

    _, new = store["twins"]
    _register_champion("dsel-batch", {"dataset_hash": store["hash"]}, None)
    base = ["--pipeline", "batch", "--source", "dataset:test"]
    model = ["--set", "model.name=dsel-batch"]
    assert run.main([*base, *model, "--set", f"dataset={store['hash'][:6]}"]) == 0
    assert planned[-1].dataset == store["hash"][:6]
    assert f"split of dataset version {new}" in capsys.readouterr().out
    assert run.main([*base, *model, "--set", f"dataset={store['no_test']}"]) == 2
    assert "has no test split images" in capsys.readouterr().err


def test_status_shows_the_dataset_training_would_use(store: dict, capsys) -> None:
    import run

    assert run.main(["--status", "--json"]) == 0
    dataset = json.loads(capsys.readouterr().out)["dataset"]
    assert dataset["selector"] == "latest" and dataset["version"] == store["no_test"]
    assert "has no test split images" in dataset["problem"]
    old, new = store["twins"]
    assert run.main(["--status", "--json", "--set", f"dataset={old}"]) == 0
    dataset = json.loads(capsys.readouterr().out)["dataset"]
    assert dataset["version"] == old and dataset["problem"] is None
    assert dataset["hash"] == store["hash"]
    assert run.main(["--status", "--set", f"dataset={store['hash'][:10]}"]) == 0
    text = capsys.readouterr().out
    assert f"Dataset for training (dataset={store['hash'][:10]}): version {new}" in text
    listed = re.search(r"versions ([\d, ]+) hold this same content", text)
    assert listed, text
    assert {str(old), str(new)} <= set(listed.group(1).split(", "))
