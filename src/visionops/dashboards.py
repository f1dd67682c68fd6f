"""The ZenML dashboard and the MLflow UI of the active stack, run in the background."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionops.env import state_dir

HOST = "127.0.0.1"
ZENML_PORT_ENV = "VISIONOPS_ZENML_PORT"
MLFLOW_PORT_ENV = "VISIONOPS_MLFLOW_PORT"
DEFAULT_ZENML_PORT = 8237
DEFAULT_MLFLOW_PORT = 5000


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
    return _folder() / "mlflow-ui.json"


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
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


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
    url: str, timeout: float, process: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(url):
            return
        if process is not None and process.poll() is not None:
            raise DashboardError(
                f"The MLflow UI exited with status {process.returncode}; "
                f"see {_folder() / 'mlflow-ui.log'}."
            )
        time.sleep(0.5)
    raise DashboardError(f"{url} did not answer within {timeout:.0f} s.")


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
    return _local_server_url() or f"http://{HOST}:{port}"


def _local_server_url() -> str | None:
    from zenml.utils.server_utils import get_local_server

    server = get_local_server()
    url = server.status.url if server and server.status else None
    return str(url).rstrip("/") if url else None


def _mlflow_record() -> dict[str, Any] | None:
    """The MLflow UI this project started, if it still runs."""
    import psutil

    try:
        record = json.loads(_pid_file().read_text())
        process = psutil.Process(record["pid"])
        # A recycled pid belongs to another process: compare start times.
        if abs(process.create_time() - record["started"]) < 1.0:
            return record
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
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
    import psutil

    log = (_folder() / "mlflow-ui.log").open("ab")
    command, env = mlflow_ui_command(tracking_uri, port)
    # Its own session, so that stopping it also stops the workers it forks.
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    record = {
        "pid": process.pid,
        "started": psutil.Process(process.pid).create_time(),
        "port": port,
        "uri": tracking_uri,
        "url": url,
    }
    _pid_file().write_text(json.dumps(record))
    return url, process


def stop_mlflow_ui(timeout: float = 20) -> str | None:
    """Stops the MLflow UI this project started; returns its URL, or None."""
    import psutil

    record = _mlflow_record()
    _pid_file().unlink(missing_ok=True)
    if record is None:
        return None
    pid = record["pid"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline:
            alive = [p for p in psutil.process_iter(["pid"]) if _in_group(p, pid)]
            if not alive:
                return str(record["url"])
            time.sleep(0.2)
    return str(record["url"])


def _in_group(process: Any, pgid: int) -> bool:
    import psutil

    try:
        return os.getpgid(process.pid) == pgid and process.status() != "zombie"
    except (ProcessLookupError, psutil.Error):
        return False


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
        _wait_for(f"{zenml_url}/health", timeout)
        _wait_for(mlflow_url, timeout, process)
    except BaseException:
        if process is not None:
            stop_mlflow_ui()
        raise
    return Dashboards(zenml_url=zenml_url, mlflow_url=mlflow_url)


def stop() -> list[str]:
    """Stops what `start` started; returns a line per dashboard stopped."""
    stopped = []
    url = stop_mlflow_ui()
    if url:
        stopped.append(f"MLflow UI ({url})")
    if stop_zenml():
        stopped.append("ZenML dashboard (local server)")
    return stopped
