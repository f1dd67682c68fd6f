"""Failing fast and keeping secrets: usage, dead services, credentials, restores.

Each test replays what a user ran into: `--status` hanging on a dead MLflow and
saying "none yet", a password from MLFLOW_TRACKING_URI printed and stored, a refused
restore that still wrote half an experiment, a step failure ending in a traceback,
and state written under $HOME.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-pw"


@pytest.fixture
def restore_active_stack() -> Iterator[None]:
    """Puts back the stack that was active, for the tests that come after."""
    from zenml.client import Client

    active = Client().active_stack_model.name
    yield
    Client().activate_stack(active)


def _stack_file(tmp_path: Path, name: str, tracker_uri: str, services: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        "components:\n"
        "  orchestrator: {name: local, flavor: local}\n"
        "  artifact_store: {name: local, flavor: local}\n"
        "  experiment_tracker:\n"
        f"    name: mlflow-{name}\n"
        "    flavor: mlflow\n"
        "    configuration:\n"
        f"      tracking_uri: '{tracker_uri}'\n"
        "      tracking_token: not-a-real-token\n" + services
    )
    return path


# --- usage ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--json"], "--json goes with --status"),
        (["--set", "x=1"], "--set goes with --pipeline"),
        (["--config", "overlay.yaml"], "--config goes with --pipeline"),
        (["--no-cache"], "--no-cache goes with --pipeline"),
        (["--status", "--source", "x"], "--source goes with --pipeline"),
    ],
)
def test_a_misused_option_gets_one_line_and_the_short_usage(
    args: list[str], flag: str, capsys: pytest.CaptureFixture
) -> None:
    import run

    assert run.main(args) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0] == f"run.py: error: {flag}" or lines[0].startswith(
        f"run.py: error: {flag}"
    )
    assert lines[1].startswith("usage: run.py")
    assert "examples:" not in err + out  # not the whole help
    assert out == ""


# --- import names -----------------------------------------------------------------


def test_artifact_types_have_one_import_name_under_any_source_root() -> None:
    """With the checkout as ZenML's source root (after `make init`), not `src.`."""
    from zenml.utils import source_utils

    from visionops.app.materializers import DatasetVersionMaterializer
    from visionops.batch.predict import PredictionSet
    from visionops.config import TrainingParameters
    from visionops.data.version import DatasetVersion, StagedDataset
    from visionops.training.candidates import ModelFile

    classes = [
        DatasetVersion,
        StagedDataset,
        ModelFile,
        PredictionSet,
        TrainingParameters,
        DatasetVersionMaterializer,
    ]
    source_utils.set_custom_source_root(str(REPO))
    try:
        for cls in classes:
            path = source_utils.resolve(cls).import_path
            assert path == f"{cls.__module__}.{cls.__qualname__}"
            assert path.startswith("visionops.")
            assert source_utils.load(path) is cls
            # Stores written before the fix recorded `src.visionops...`: same class.
            assert source_utils.load(f"src.{path}") is cls
    finally:
        source_utils.set_custom_source_root(None)


def test_a_subclass_defined_elsewhere_keeps_its_own_name() -> None:
    from zenml.utils import source_utils

    assert source_utils.resolve(_Sub).import_path.endswith("test_failing_fast._Sub")


def _sub_base() -> type:
    from visionops.data.version import StagedDataset

    return StagedDataset


class _Sub(_sub_base()):  # type: ignore[misc]
    """A class outside the library derived from one of its artifact types."""


# --- --status with a dead tracker ---------------------------------------------------


def test_status_names_a_dead_tracker_and_fails(
    tmp_path: Path, restore_active_stack: None, capsys: pytest.CaptureFixture
) -> None:
    import run

    port = free_port()  # nothing listens there
    uri = f"http://127.0.0.1:{port}"
    with_services = _stack_file(
        tmp_path,
        "status-dead-mlflow",
        uri,
        f"services:\n  - {{name: mlflow, url: '{uri}/health', hint: start mlflow}}\n",
    )
    without_services = _stack_file(tmp_path, "status-dead-tracker", uri, "")
    for path, named in ((with_services, "mlflow at"), (without_services, "MLflow")):
        assert run.main(["--stack", str(path)]) == 0
        capsys.readouterr()
        assert run.main(["--status"]) == 1
        out, err = capsys.readouterr()
        assert "Champion: none yet" not in out
        assert named in err and f"127.0.0.1:{port}" in err, err
        assert "Traceback" not in err


# --- credentials in URLs ----------------------------------------------------------


def test_credentials_in_a_tracking_uri_are_never_printed_or_stored(
    tmp_path: Path,
    restore_active_stack: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from zenml.client import Client

    import run
    from visionops.app.stacks import LABEL_SERVICES, redact

    port = free_port()
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", f"http://visionops:{PASSWORD}@127.0.0.1:{port}"
    )
    assert redact(os.environ["MLFLOW_TRACKING_URI"]) == f"http://***@127.0.0.1:{port}"

    # A service URL: probed and stored without the credentials.
    local = (REPO / "stacks" / "local.yaml").read_text().replace("name: local\n", "", 1)
    services = tmp_path / "creds-service.yaml"
    services.write_text(
        local
        + "name: creds-service\n"
        + "services:\n  - {name: mlflow, url: '${MLFLOW_TRACKING_URI}/health'}\n"
    )
    assert run.main(["--stack", str(services)]) == 0
    labels = Client().active_stack_model.labels
    assert PASSWORD not in json.dumps(labels)
    assert labels[LABEL_SERVICES][0]["url"] == f"http://127.0.0.1:{port}/health"
    assert run.main(["--pipeline", "ingestion"]) == 2  # the service is down
    out, err = capsys.readouterr()
    assert f"mlflow at http://127.0.0.1:{port}/health does not answer" in err
    assert PASSWORD not in out + err

    # A component's configuration is stored in clear: refused, redacted.
    tracker = _stack_file(tmp_path, "creds-tracker", "${MLFLOW_TRACKING_URI}", "")
    assert run.main(["--stack", str(tracker)]) == 2
    out, err = capsys.readouterr()
    assert f"http://***@127.0.0.1:{port}" in err
    assert "MLFLOW_TRACKING_PASSWORD" in err
    assert PASSWORD not in out + err
    with pytest.raises(KeyError):
        Client().get_stack("creds-tracker", allow_name_prefix_match=False)
    stored = [c.configuration for c in Client().list_stack_components(size=1000)]
    assert PASSWORD not in json.dumps(stored, default=str)


# --- restore: validate the whole archive first ---------------------------------------


def test_a_restore_with_an_escaping_member_writes_nothing(tmp_path: Path) -> None:
    import mlflow

    from visionops.app.backup import BackupError, backup, restore

    origin = f"sqlite:///{tmp_path}/origin.db"
    client = mlflow.MlflowClient(origin, registry_uri=origin)
    experiment = client.create_experiment(
        "traversal", artifact_location=str(tmp_path / "origin-art")
    )
    run_id = client.create_run(experiment).info.run_id
    client.log_text(run_id, "weights", "model/notes.txt")
    client.set_terminated(run_id)
    good = backup(tmp_path / "good.zip", origin).path

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        # Sorted after the run's own files: found only once the run was created.
        out.writestr(f"runs/{run_id}/../../escaped.txt", b"outside")

    target = f"sqlite:///{tmp_path}/target.db"
    for dry_run in (True, False):
        with pytest.raises(BackupError, match="escapes its folder; nothing was"):
            restore(evil, target, dry_run=dry_run, echo=lambda line: None)
    names = [
        e.name
        for e in mlflow.MlflowClient(target, registry_uri=target).search_experiments()
    ]
    assert "traversal" not in names
    assert not list(tmp_path.rglob("escaped.txt"))


# --- a failed step ------------------------------------------------------------------


def test_a_failed_step_ends_with_one_line_and_a_log(
    sample_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
) -> None:
    import importlib

    import run

    load_source = importlib.import_module("steps.ingestion.load_source")

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(load_source, "stage_source", broken)
    assert run.main(["--stack", "local"]) == 0
    args = ["--pipeline", "ingestion", "--source", str(sample_dir), "--no-cache"]
    capfd.readouterr()
    assert run.main([*args, "--set", "anonymize.enabled=false"]) == 1
    out, err = capfd.readouterr()
    assert "Traceback (most recent call last)" not in out + err
    print(err)
    line = next(x for x in err.splitlines() if "pipeline failed" in x)
    assert line.startswith(
        "The ingestion pipeline failed at step ingestion/load_source"
    )
    assert "OSError: No space left on device" in line
    log = Path(err.split("Full traceback: ")[1].split()[0])
    assert "Traceback" in log.read_text() and "No space left" in log.read_text()


# --- state under $HOME ----------------------------------------------------------------


def test_onnx_runtime_writes_nothing_under_home(tmp_path: Path) -> None:
    """ONNX Runtime's telemetry would write a device id under ~/.cache."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XDG_CACHE_HOME", "UV_CACHE_DIR", "ORT_DISABLE_TELEMETRY")
    }
    env["HOME"] = str(home)
    code = (
        "import visionops\n"
        "import onnxruntime as ort\n"
        "from onnx import TensorProto, helper\n"
        "x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])\n"
        "y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])\n"
        "graph = helper.make_graph([helper.make_node('Identity', ['x'], ['y'])],"
        " 'g', [x], [y])\n"
        "opset = [helper.make_opsetid('', 17)]\n"
        "model = helper.make_model(graph, opset_imports=opset)\n"
        "model.ir_version = 8\n"
        "session = ort.InferenceSession(model.SerializeToString(),"
        " providers=['CPUExecutionProvider'])\n"
        "print(session.run(None, {'x': [1.0]})[0][0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1.0"
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []


def test_docker_wheelhouse_stays_in_the_checkout_or_where_the_user_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Docker tests' wheelhouses go to `.visionops/`, not ~/.cache."""
    from tests import docker_env

    monkeypatch.delenv(docker_env.WHEELHOUSE_ENV, raising=False)
    default = docker_env.wheelhouse_dir()
    assert default == REPO / ".visionops" / "docker-wheelhouse"
    assert Path.home() / ".cache" not in default.parents
    monkeypatch.setenv(docker_env.WHEELHOUSE_ENV, str(tmp_path / "wheels"))
    assert docker_env.wheelhouse_dir() == tmp_path / "wheels"

    # `make clean` removes the default wheelhouse's top folder, and says so.
    def make(*args: str) -> str:
        return subprocess.run(
            ["make", "-s", "-C", str(REPO), *args], capture_output=True, text=True
        ).stdout

    assert default.relative_to(REPO).parts[0] in make("-n", "clean").split()
    (line,) = [x for x in make("help").splitlines() if "make clean" in x]
    assert "wheelhouse" in line


def test_the_kept_bento_wheelhouse_is_the_services_packages_without_torch() -> None:
    """What stays on disk between runs is small: torch's 3.5 GB goes after a build."""
    from tests import docker_env
    from visionops.serving.service import IMAGE

    pins = docker_env.bento_requirements()
    names = {pin.split("==")[0] for pin in pins}
    assert "torch" not in names and not any(n.startswith("nvidia") for n in names)
    # Every package the Bento's image installs, at its pinned version, and uv.
    assert set(IMAGE.python_requirements.split()) <= set(pins)
    assert "uv" in names


def test_a_build_that_would_fill_the_disk_is_refused_first() -> None:
    from tests import docker_env

    refused = r"needs about \d+ GB free.*docker image prune"
    with pytest.raises(RuntimeError, match=refused):
        docker_env.require_free_space(10**18, "the CPU parent image")
    docker_env.require_free_space(1, "the CPU parent image")
