"""The ZenML dashboard and the MLflow UI of the active stack, run in the background."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionops.core import background
from visionops.core.env import state_dir

HOST = "127.0.0.1"
ZENML_PORT_ENV = "VISIONOPS_ZENML_PORT"
MLFLOW_PORT_ENV = "VISIONOPS_MLFLOW_PORT"
DEFAULT_ZENML_PORT = 8237
DEFAULT_MLFLOW_PORT = 5000
# ZenML's MLflow tracker names a pipeline's experiment after the pipeline.
TRAINING_EXPERIMENT = "training"
# MLflow 3 opens an experiment without this tag on its GenAI overview; with it
# (the UI's "Machine learning" type), on the runs table with metric columns.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# The runs table shows no metric column until one is picked; a view shared through
# an experiment tag (what the UI's "Share" writes) picks the project's metrics.
RUNS_VIEW_KEY = "visionops"
RUNS_VIEW_METRICS = (
    "val_map50_95",
    "val_map50",
    "val_precision",
    "val_recall",
    "test_map50_95",
    "test_onnx_latency_ms",
)


def _experiment_tags() -> dict[str, str]:
    """The tags that make the training experiment open on its runs and metrics."""
    view = {
        "selectedColumns": [
            *(f"attributes.`{name}`" for name in ("Source", "Models", "Dataset")),
            *(f"metrics.`{name}`" for name in RUNS_VIEW_METRICS),
        ]
    }
    return {
        **EXPERIMENT_KIND,
        f"mlflow.sharedViewState.{RUNS_VIEW_KEY}": json.dumps(view),
    }


class DashboardError(RuntimeError):
    """A dashboard that could not start, with what to do about it."""


@dataclass(frozen=True)
class Dashboards:
    """Where the dashboards answer."""

    zenml_url: str
    mlflow_url: str


def _folder() -> Path:
    folder = state_dir() / "dashboards"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _pid_file() -> Path:
    return _folder() / "mlflow-ui.pid"


def _settings_file() -> Path:
    """What the running MLflow UI serves: its tracking URI, port and URL."""
    return _folder() / "mlflow-ui.json"


def _log_file() -> Path:
    return _folder() / "mlflow-ui.log"


def _port(given: int | None, env: str, default: int) -> int:
    if given is not None:
        return given
    value = os.environ.get(env, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise DashboardError(f"{env}={value!r} is not a port number.") from None


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether `url` answers an HTTP GET with a 2xx status."""
    return background.answers(url, timeout=timeout)


def mlflow_ui_command(tracking_uri: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The `mlflow ui` command line and environment for a tracking URI."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        HOST,
        "--port",
        str(port),
        # One person looking: one worker starts in seconds, four take half a minute
        # on two cores.
        "--workers",
        "1",
    ]
    # The job runner and its consumers serve GenAI features this project has none of.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return command, env


def port_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), 1.0):
        return True
    return False


def _wait_for(
    url: str,
    timeout: float,
    what: str,
    process: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    try:
        background.wait_ready(url, process, log, what, timeout)
    except background.BackgroundError as err:
        raise DashboardError(str(err)) from None


def _zenml(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """Runs the ZenML CLI of this environment (it shares the ZenML config path)."""
    beside = Path(sys.executable).with_name("zenml")
    command = str(beside) if beside.is_file() else shutil.which("zenml")
    if command is None:
        raise DashboardError("The zenml command is not installed: pip install zenml.")
    env = {**os.environ, "ZENML_AUTO_OPEN_DASHBOARD": "false"}
    return subprocess.run(
        [command, *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def _remote_zenml_url() -> str | None:
    """The URL of the ZenML server the client uses, unless it is local or a file."""
    from zenml.config.global_config import GlobalConfiguration
    from zenml.utils.server_utils import connected_to_local_server

    store = GlobalConfiguration().store_configuration
    if store.type == "rest" and not connected_to_local_server():
        return str(store.url)
    return None


def start_zenml(port: int) -> str:
    """Starts the local ZenML server on the active store (`zenml login --local`)."""
    remote = _remote_zenml_url()
    if remote:
        return remote  # a deployed server serves its own dashboard
    running = _local_server_url()
    if running == f"http://{HOST}:{port}" and answers(f"{running}/health"):
        return running
    result = _zenml("login", "--local", "--port", str(port))
    if result.returncode != 0:
        raise DashboardError(
            f"`zenml login --local --port {port}` failed:\n"
            f"{result.stdout}{result.stderr}"
        )
    skip_onboarding()
    return _local_server_url() or f"http://{HOST}:{port}"


def skip_onboarding() -> None:
    """Answers the local dashboard's first-visit survey for the default user.

    The dashboard asks while the user's `email_opted_in` is unset and its
    metadata lacks `finished_onboarding_survey`: no newsletter, survey done.
    """
    from zenml.client import Client

    client = Client()
    user = client.zen_store.get_user(client.active_user.id)  # not the cached one
    metadata = dict(user.user_metadata or {})
    if user.email_opted_in is not None and metadata.get("finished_onboarding_survey"):
        return
    client.update_user(
        user.id,
        updated_email_opt_in=bool(user.email_opted_in),
        updated_metadata={**metadata, "finished_onboarding_survey": True},
    )


def _local_server_url() -> str | None:
    from zenml.utils.server_utils import get_local_server

    server = get_local_server()
    url = server.status.url if server and server.status else None
    return str(url).rstrip("/") if url else None


def _mlflow_record() -> dict[str, Any] | None:
    """The MLflow UI this project started (pid, uri, port, url), if it still runs."""
    pid = background.read_pid(_pid_file())
    if pid is None:
        return None
    try:
        settings = json.loads(_settings_file().read_text())
        return {"pid": pid, **{k: settings[k] for k in ("uri", "port", "url")}}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start_mlflow_ui(tracking_uri: str, port: int) -> tuple[str, Any]:
    """Starts `mlflow ui` on the tracker's store; a tracking server is its own UI.

    Returns:
        The URL and the new process (None when nothing was started).
    """
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/"), None
    url = f"http://{HOST}:{port}"
    record = _mlflow_record()
    if record and record["uri"] == tracking_uri and record["port"] == port:
        return url, None
    if record:
        stop_mlflow_ui()
    if port_open(port):
        raise DashboardError(
            f"Port {port} is taken; free it or set {MLFLOW_PORT_ENV} to another port."
        )
    command, env = mlflow_ui_command(tracking_uri, port)
    process = background.start(command, _log_file(), env)
    _settings_file().write_text(
        json.dumps({"uri": tracking_uri, "port": port, "url": url})
    )
    background.write_pid(_pid_file(), process.pid)
    return url, process


def stop_mlflow_ui(timeout: float = 20) -> str | None:
    """Stops the MLflow UI this project started; returns its URL, or None."""
    record = _mlflow_record()
    background.stop_recorded(_pid_file(), timeout / 2)
    _settings_file().unlink(missing_ok=True)
    return str(record["url"]) if record else None


def stop_zenml() -> bool:
    """Stops the local ZenML server and points the client back at the local store."""
    from zenml.utils.server_utils import get_local_server

    if get_local_server() is None:
        return False
    # The CLI disconnects the client (it reads the config this process may hold
    # stale) and shuts the server down; if the client was not connected to it,
    # only the deployer can shut it down.
    _zenml("logout", "--local", timeout=120)
    if get_local_server() is not None:
        from zenml.zen_server.deploy.deployer import LocalServerDeployer

        LocalServerDeployer().remove_server()
    return True


def start(
    zenml_port: int | None = None,
    mlflow_port: int | None = None,
    timeout: float = 120,
) -> Dashboards:
    """Starts both dashboards in the background and waits until both answer.

    Args:
        zenml_port: Port of the local ZenML server (`VISIONOPS_ZENML_PORT`, 8237).
        mlflow_port: Port of the MLflow UI (`VISIONOPS_MLFLOW_PORT`, 5000).
        timeout: Seconds to wait for each to answer.
    """
    from visionops.training.tracking import TrackingError, configure_tracking

    zenml_port = _port(zenml_port, ZENML_PORT_ENV, DEFAULT_ZENML_PORT)
    mlflow_port = _port(mlflow_port, MLFLOW_PORT_ENV, DEFAULT_MLFLOW_PORT)
    try:
        tracking_uri = configure_tracking()
    except TrackingError as err:
        raise DashboardError(str(err)) from None
    mlflow_url, process = start_mlflow_ui(tracking_uri, mlflow_port)
    try:
        zenml_url = start_zenml(zenml_port)
        _wait_for(f"{zenml_url}/health", timeout, "The ZenML server")
        _wait_for(mlflow_url, timeout, "The MLflow UI", process, _log_file())
    except BaseException:
        if process is not None:
            stop_mlflow_ui()
        raise
    return Dashboards(zenml_url=zenml_url, mlflow_url=mlflow_url)


def training_experiment_id() -> str:
    """The training experiment's id, created (or tagged) as a machine-learning one.

    Creating it before the first training run lets its link work at once; ZenML's
    tracker then logs into it. Its artifacts go where the stack's tracker keeps
    them (MLflow's default would be `./mlruns` of the working directory). Needs
    the tracking URI set (`configure_tracking`).
    """
    from mlflow.tracking import MlflowClient

    from visionops.training.tracking import stack_artifact_location

    client = MlflowClient()
    experiment = client.get_experiment_by_name(TRAINING_EXPERIMENT)
    if experiment is None:
        return client.create_experiment(
            TRAINING_EXPERIMENT,
            artifact_location=stack_artifact_location(),
            tags=_experiment_tags(),
        )
    for key, value in _experiment_tags().items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def deep_links(urls: Dashboards, model_name: str | None = None) -> dict[str, str]:
    """The views worth opening: the project's runs, the training runs, the model(s).

    Args:
        urls: Where the dashboards answer (`start`).
        model_name: The registered model (training config `model.name`); None:
            each task's default name that is registered.

    Returns:
        A label and URL per view, in the order to show them.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from zenml.client import Client

    from visionops.tasks import available_tasks, get_task

    project = Client().active_project.name
    try:
        experiment = training_experiment_id()
    except MlflowException as err:
        raise DashboardError(f"MLflow: {err}") from None
    names = (
        [model_name]
        if model_name
        else [get_task(task).default_model_name for task in available_tasks()]
    )
    registered = []
    for name in names:
        try:
            MlflowClient().get_registered_model(name)
        except MlflowException as err:
            if "RESOURCE_DOES_NOT_EXIST" not in str(err.error_code):
                raise DashboardError(f"MLflow: {err}") from None
        else:
            registered.append(name)
    # The UI keeps a GenAI/ML switch; the parameter picks ML for an old experiment.
    ml = "?workflowType=machine_learning"
    links = {
        "ZenML pipeline runs": f"{urls.zenml_url}/projects/{project}/runs",
        "MLflow training runs": (
            f"{urls.mlflow_url}/#/experiments/{experiment}/runs{ml}"
            f"&viewStateShareKey={RUNS_VIEW_KEY}"
        ),
    }
    for name in registered:
        one = len(registered) == 1
        label = "MLflow registered model" if one else f"MLflow model {name}"
        links[label] = f"{urls.mlflow_url}/#/models/{name}{ml}"
    if not registered:  # before the first training: the list of models
        links["MLflow registered models"] = f"{urls.mlflow_url}/#/models{ml}"
    return links


def stop() -> list[str]:
    """Stops what `start` started; returns a line per dashboard stopped."""
    stopped = []
    url = stop_mlflow_ui()
    if url:
        stopped.append(f"MLflow UI ({url})")
    if stop_zenml():
        stopped.append("ZenML dashboard (local server)")
    return stopped
