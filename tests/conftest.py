"""Shared fixtures: an isolated, offline environment first, then data paths."""

from __future__ import annotations

import importlib
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# Isolate every bit of state (ZenML store, MLflow, BentoML, YOLO settings) in a
# throwaway folder before `visionops` configures the environment from it.
_STATE = Path(tempfile.mkdtemp(prefix="visionops-tests-"))
os.environ["VISIONOPS_STATE_DIR"] = str(_STATE)
for _key in (
    "ZENML_CONFIG_PATH",
    "YOLO_CONFIG_DIR",
    "BENTOML_HOME",
    "MPLCONFIGDIR",
    "XDG_CACHE_HOME",
    "UV_CACHE_DIR",
):
    os.environ.pop(_key, None)
# ZenML looks for a repository (`.zen/`, written by `zenml init`) from the working
# directory upwards, and a checkout where `make init` ran has one: its active stack
# and project would then be read from, and reset into, the checkout's `.zen/`. An
# explicit, empty repository path (here and in every subprocess) stops the search,
# so the tests use the throwaway global config only.
_NO_REPO = _STATE / "no-zenml-repository"
_NO_REPO.mkdir()
os.environ["ZENML_REPOSITORY_PATH"] = str(_NO_REPO)

import pytest  # noqa: E402
import yaml  # noqa: E402

import visionops  # noqa: E402, F401  (configures the offline environment)

# ZenML keeps the `sys.stdout.write` it finds at import for its console logs: imported
# first inside a test's capsys, it would write into that capture once it is closed
# ("--- Logging error ---" in every later run.py test). Imported here, before any
# test, and after `visionops` has pointed its config at the throwaway state.
importlib.import_module("zenml")

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "boards"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
BOARDS = SHARED_DATASETS / "roboflow-boards"

OUTBOUND: list[str] = []

# A tiny classifier (`cls_weights`): 10 chest X-rays a class at 64 px.
CHEST_XRAY = SHARED_DATASETS / "chest-xray-small"
CLS_IMGSZ = 64
CLS_NAMES = {0: "NORMAL", 1: "PNEUMONIA"}

# A tiny segmenter (`seg_weights`): the bundled shoe soles at 96 px.
SHOE_SOLES = REPO / "data" / "sample" / "shoe-soles"
SEG_IMGSZ = 96
SEG_NAMES = {0: "shoes"}

# The real training config shrunk for tests: 1 epoch at 64 px on the CPU.
TINY_TRAINING = [
    "train.epochs=1",
    "train.imgsz=64",
    "train.batch=8",
    "train.workers=0",
    "train.device=cpu",
    "evaluation.latency_runs=3",
]


def _is_loopback(host: object) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _audit(event: str, args: tuple) -> None:
    # Every connection and name lookup that would leave this machine is recorded
    # and refused, in this process and in forked workers alike.
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            OUTBOUND.append(f"connect {address}")
            raise ConnectionRefusedError(f"test blocked a connection to {address}")
    elif event == "socket.getaddrinfo" and not _is_loopback(args[0]):
        OUTBOUND.append(f"getaddrinfo {args[0]}")
        raise socket.gaierror(f"test blocked a lookup of {args[0]}")


sys.addaudithook(_audit)


@pytest.fixture
def outbound() -> list[str]:
    """The list of blocked outbound attempts, emptied for the test."""
    OUTBOUND.clear()
    return OUTBOUND


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled sample (a subset of roboflow-boards, as exported)."""
    return SAMPLE


@pytest.fixture(scope="session")
def boards_dir() -> Path:
    """The full real Roboflow export kept as exported (read-only)."""
    if not BOARDS.is_dir():
        pytest.skip(f"{BOARDS} is not present beside the checkout")
    return BOARDS


# The checkout's own state, which no test may read or write, but for the Docker
# tests' wheelhouse (tests/docker_env.py) and the Airflow test's venv
# (tests/pipelines/test_airflow_stack.py), kept there between runs.
CHECKOUT_STATE = (".zen", ".visionops", "outputs", "mlruns", "runs")
TEST_CACHES = (".visionops/docker-wheelhouse", ".visionops/airflow/venv")
# The user's cache folder, which no test may write into either.
HOME_CACHE = Path.home() / ".cache"


def _watched(root: Path) -> Iterator[Path]:
    """The checkout's state folders and what is in them, ~/.cache and what lies
    directly in it (a new folder is a write), and its `visionops` folder."""
    for top in [root / name for name in CHECKOUT_STATE]:
        if top.exists():
            yield top
            yield from top.rglob("*")
    if HOME_CACHE.exists():
        yield HOME_CACHE
        yield from HOME_CACHE.iterdir()
        yield from (HOME_CACHE / "visionops").rglob("*")


def _fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file `_watched` lists."""
    found = {}
    skipped = {root / name for name in TEST_CACHES}
    # The folders holding a test cache (`.visionops/` of a fresh clone) appear with
    # it; what else lands in them is still a change.
    holders = {parent for cache in skipped for parent in cache.parents}
    for path in _watched(root):
        if path in skipped or path in holders or skipped.intersection(path.parents):
            continue
        try:
            info = path.lstat()
        except OSError:  # removed while listing: a change all the same
            found[str(path)] = (-1, -1)
            continue
        if not path.is_dir():
            found[str(path)] = (info.st_size, info.st_mtime_ns)
        else:
            found[str(path)] = (0, 0)
    return found


_CHECKOUT_BEFORE = _fingerprint(REPO)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Removes the throwaway state folder; fails the run if the checkout's changed."""
    shutil.rmtree(_STATE, ignore_errors=True)
    after = _fingerprint(REPO)
    changed = sorted(
        path
        for path in set(_CHECKOUT_BEFORE) | set(after)
        if _CHECKOUT_BEFORE.get(path) != after.get(path)
    )
    if changed:
        listing = "\n  ".join(changed[:20])
        print(
            f"\nThe tests changed the checkout's own state or ~/.cache "
            f"({len(changed)} paths):"
            f"\n  {listing}",
            file=sys.stderr,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tiny_dataset(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A versioned dataset built from the bundled sample by the library (no ZenML)."""
    from visionops.data.anonymize import AnonymizeSettings, anonymize_dataset
    from visionops.data.sources import stage_source
    from visionops.data.split import plan_split
    from visionops.data.validate import ValidationSettings, validate_dataset
    from visionops.data.version import build_dataset_version
    from visionops.tasks import get_task

    work = tmp_path_factory.mktemp("tiny-dataset")
    task = get_task("detect")
    stage_source(sample_dir, work / "staged", tasks=[task])
    report = validate_dataset(
        work / "staged", work / "valid", ValidationSettings(), 2, task=task
    )
    faces = anonymize_dataset(
        work / "valid", work / "anon", AnonymizeSettings(enabled=False), 1
    )
    plan = plan_split(work / "anon", {"train": 0.7, "val": 0.15, "test": 0.15}, 42)
    return build_dataset_version(
        work / "anon", plan, work / "dataset", validation=report, faces=faces, task=task
    )


def tiny_model(
    task: str,
    data: Path,
    out: Path,
    *,
    imgsz: int,
    epochs: int = 1,
    batch: int = 8,
    on_train_start: Callable | None = None,
) -> Path:
    """Trains the task's default model from its architecture, on the CPU, seeded.

    Args:
        task: The task name (`detect`, `classify`, `segment`).
        data: What Ultralytics trains on: a data.yaml or a classification folder.
        out: The folder the run is written into.
        imgsz: The training image size.
        epochs: Training epochs; the last one is always validated.
        batch: The batch size.
        on_train_start: An Ultralytics callback run as training starts.

    Returns:
        The run's best.pt (after one epoch, the same checkpoint as last.pt).
    """
    from ultralytics import YOLO

    from visionops.engine.ultralytics import configure_ultralytics
    from visionops.tasks import get_task

    # Ultralytics turns its own MLflow callback on in tests named test_mlflow*,
    # writing ./mlruns; the project's settings switch it off everywhere.
    configure_ultralytics()
    model = YOLO(f"{get_task(task).default_model}.yaml")
    if on_train_start is not None:
        model.add_callback("on_train_start", on_train_start)
    model.train(
        data=str(data),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        workers=0,
        device="cpu",
        project=str(out),
        name="train",
        plots=False,
        verbose=False,
        seed=0,
        amp=False,
    )
    return out / "train" / "weights" / "best.pt"


@pytest.fixture(scope="session")
def tiny_weights(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLO11n trained from its architecture for 2 epochs at 128 px on the sample."""
    out = tmp_path_factory.mktemp("tiny-weights")
    return tiny_model("detect", tiny_dataset.data_yaml, out, imgsz=128, epochs=2)


@pytest.fixture(scope="session")
def classify_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 X-rays a class in Ultralytics' layout, root/{train,val,test}/<class>/."""
    if not CHEST_XRAY.is_dir():
        pytest.skip(f"{CHEST_XRAY} is not present beside the checkout")
    root = tmp_path_factory.mktemp("chest-xray-tiny")
    for name in CLS_NAMES.values():
        files = sorted((CHEST_XRAY / name).iterdir())[:10]
        for split, part in (
            ("train", files[:6]),
            ("val", files[6:8]),
            ("test", files[8:]),
        ):
            (root / split / name).mkdir(parents=True)
            for file in part:
                shutil.copy2(file, root / split / name / file.name)
    return root


@pytest.fixture(scope="session")
def cls_weights(
    classify_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A yolo11n-cls trained from its architecture for 1 epoch at 64 px.

    After a handful of steps BatchNorm's running statistics are still near their
    start (momentum 0.03), and such a model answers the same probabilities for
    every image. Averaging the statistics of all batches (momentum None) makes the
    tiny model tell images apart, so a preprocessing slip shows in its outputs.
    """
    import torch

    def settle_batchnorm(trainer) -> None:
        for module in trainer.model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None

    out = tmp_path_factory.mktemp("cls-weights")
    return tiny_model(
        "classify",
        classify_folder,
        out,
        imgsz=CLS_IMGSZ,
        batch=4,
        on_train_start=settle_batchnorm,
    )


@pytest.fixture(scope="session")
def segment_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled shoe soles' train and valid splits with a data.yaml, in a copy:
    Ultralytics writes its label caches beside the labels."""
    root = tmp_path_factory.mktemp("shoe-soles")
    for split in ("train", "valid"):
        shutil.copytree(SHOE_SOLES / split, root / split)
    (root / "data.yaml").write_text(
        yaml.safe_dump(
            {
                "path": str(root),
                "train": "train/images",
                "val": "valid/images",
                "names": SEG_NAMES,
            }
        )
    )
    return root


@pytest.fixture(scope="session")
def seg_weights(segment_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A yolo11n-seg trained from its architecture for 1 epoch on the shoe soles."""
    out = tmp_path_factory.mktemp("seg-weights")
    return tiny_model("segment", segment_folder / "data.yaml", out, imgsz=SEG_IMGSZ)


@pytest.fixture
def local_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """MLflow on a SQLite file of its own, its artifacts in `tmp_path`.

    A SQLite tracker puts a new experiment's artifacts in `./mlruns` of the working
    directory, which would be the checkout: the test runs in `tmp_path` instead.
    The previous tracking URI comes back afterwards.
    """
    import mlflow
    from mlflow.tracking import fluent

    monkeypatch.chdir(tmp_path)
    # An experiment an earlier test made active (ZenML's tracker sets one) is not
    # in this store: start from MLflow's default, as a fresh process does.
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow
    mlflow.set_tracking_uri(previous)
