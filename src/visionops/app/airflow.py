"""A local Airflow for the `airflow` stack: installed, started, stopped and asked.

Airflow lives in its own virtual environment (its pins conflict with ZenML's), made
from PyPI on first use. `airflow standalone` runs from it on 127.0.0.1 with its home
(configuration, SQLite database, logs), its DAGs folder and the login under
`<state>/airflow/`. ZenML's Airflow orchestrator writes one DAG file per pipeline run
or schedule into that folder (`orchestrator_settings`); the REST API says how its runs
went (`AirflowClient`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from visionops.app.containers import invoking_user, mounted, on_this_engine
from visionops.core import background
from visionops.core.env import state_dir

# Airflow 3 with the Docker provider (ZenML 0.98's DAG generator works with it;
# docs/stacks.md). Installed together, as the registries resolve them.
REQUIREMENTS = ("apache-airflow==3.3.2", "apache-airflow-providers-docker==4.6.1")
HOST = "127.0.0.1"
PORT_ENV = "VISIONOPS_AIRFLOW_PORT"
DEFAULT_PORT = 8080
# Where the venv is (it takes minutes to install: the tests keep one between runs).
VENV_ENV = "VISIONOPS_AIRFLOW_VENV"
USER = "admin"
# The module ZenML copies into each DAG file as its code (`custom_dag_generator`).
DAG_GENERATOR = "visionops.app.airflow_dag"
# The components that would serve their task logs on every interface (ports 8793 and
# 8794; no setting binds them elsewhere) unless told to skip it.
LOG_SERVERS = ("scheduler", "triggerer")
# Airflow's ids allow letters, digits, `-`, `.` and `_`.
_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-._")
FINISHED = ("success", "failed")
# How long a run is waited for while Airflow's scheduler or database is unhealthy: a
# scheduler's heartbeat is "unhealthy" after 30 s late, which a busy machine can be.
UNHEALTHY_FOR = 180.0


class AirflowError(RuntimeError):
    """Airflow that could not be installed, started or asked, and what to do."""


@dataclass(frozen=True)
class AirflowServer:
    """A running Airflow: its UI and API URL and the login."""

    url: str
    user: str
    password: str


def folder() -> Path:
    """`<state>/airflow/`: home, DAGs, login, log and pid file."""
    return state_dir() / "airflow"


def home() -> Path:
    """AIRFLOW_HOME: airflow.cfg, the SQLite database and the task logs."""
    return folder() / "home"


def dags_folder() -> Path:
    """Where ZenML writes the DAG files and Airflow's DAG processor reads them."""
    return folder() / "dags"


def venv_dir() -> Path:
    """Airflow's own virtual environment (`VISIONOPS_AIRFLOW_VENV`)."""
    given = os.environ.get(VENV_ENV)
    return Path(given).expanduser().resolve() if given else folder() / "venv"


def _bin(name: str) -> Path:
    return venv_dir() / "bin" / name


def _pid_file() -> Path:
    return folder() / "standalone.pid"


def _settings_file() -> Path:
    return folder() / "standalone.json"


def log_file() -> Path:
    """Where `airflow standalone` writes (all its components)."""
    return folder() / "standalone.log"


def _shim_dir() -> Path:
    return folder() / "bin"


def _write_shim() -> None:
    """An `airflow` command that starts the scheduler and triggerer without their
    log servers, then runs the venv's `airflow`.

    They would listen on every interface so that a web server on another machine
    could read task logs; here the API server reads them from this machine's disk.
    `airflow standalone` takes no flags for its components, but finds them on PATH.
    """
    real = venv_dir() / "bin" / "airflow"
    cases = "|".join(LOG_SERVERS)
    shim = _shim_dir() / "airflow"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(
        "#!/bin/sh\n"
        "# Written by visionops.app.airflow: no log server on every interface.\n"
        f'case "$1" in {cases}) exec "{real}" "$@" --skip-serve-logs ;; esac\n'
        f'exec "{real}" "$@"\n'
    )
    shim.chmod(0o755)


def password_file() -> Path:
    """The simple auth manager's passwords file: {user: password}, mode 600."""
    return home() / "simple_auth_manager_passwords.json.generated"


def port() -> int:
    """The API server's port (`VISIONOPS_AIRFLOW_PORT`, 8080)."""
    value = os.environ.get(PORT_ENV, "")
    try:
        return int(value) if value else DEFAULT_PORT
    except ValueError:
        raise AirflowError(f"{PORT_ENV}={value!r} is not a port number.") from None


def _stamp() -> Path:
    return venv_dir() / ".visionops-installed"


def _stamp_text() -> str:
    return hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()


def installed() -> bool:
    """Whether the venv holds exactly REQUIREMENTS."""
    stamp = _stamp()
    return stamp.is_file() and stamp.read_text().strip() == _stamp_text()


def install(quiet: bool = True) -> Path:
    """Creates Airflow's venv and installs REQUIREMENTS into it, once.

    Uses this machine's pip configuration (its index), with the download cache in
    the state folder. Takes minutes the first time.

    Returns:
        The venv folder.
    """
    venv = venv_dir()
    if installed():
        return venv
    # The interpreter this venv was made from, not this venv: Airflow's gets its
    # own site-packages.
    python = getattr(sys, "_base_executable", sys.executable)
    steps = [
        [python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS],
    ]
    env = {**os.environ, "PIP_CACHE_DIR": str(state_dir() / "cache" / "pip")}
    for command in steps:
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise AirflowError(
                f"Installing Airflow into {venv} failed ({' '.join(command[:4])}...):"
                f"\n{(result.stdout + result.stderr)[-3000:]}"
            )
    _stamp().write_text(_stamp_text() + "\n")
    return venv


def _password() -> str:
    """The admin's password, made on first start and kept (mode 600)."""
    path = password_file()
    try:
        return str(json.loads(path.read_text())[USER])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    path.touch(mode=0o600)
    path.write_text(json.dumps({USER: password}))
    path.chmod(0o600)
    return password


def environment(api_port: int) -> dict[str, str]:
    """The environment `airflow standalone` and its components run with."""
    url = f"http://{HOST}:{api_port}"
    return {
        **os.environ,
        # The standalone command starts each component as `airflow ...` from PATH:
        # the shim first (`_write_shim`), then the venv's.
        "PATH": os.pathsep.join(
            [str(_shim_dir()), str(venv_dir() / "bin"), os.environ.get("PATH", "")]
        ),
        "AIRFLOW_HOME": str(home()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": url,
        # One person looking: one API worker; tasks reach it on loopback.
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        # A DAG file written by ZenML is found within seconds (default: 5 minutes).
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # Two cores: at most two step containers at a time.
        "AIRFLOW__CORE__PARALLELISM": "2",
        # No usage reports (Scarf) from an offline machine.
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "SCARF_ANALYTICS": "false",
        "DO_NOT_TRACK": "true",
    }


def _record() -> dict[str, Any] | None:
    """The standalone Airflow this project started, if it still runs."""
    pid = background.read_pid(_pid_file())
    if pid is None:
        return None
    try:
        return {"pid": pid, **json.loads(_settings_file().read_text())}
    except (OSError, ValueError, TypeError):
        return None


def running() -> AirflowServer | None:
    """The Airflow started by `start`, while its process runs."""
    record = _record()
    if record is None:
        return None
    return AirflowServer(url=record["url"], user=USER, password=_password())


def _health(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}


def _unhealthy(
    health: dict[str, Any], parts: tuple[str, ...] = ("metadatabase", "scheduler")
) -> list[str]:
    """The parts of Airflow its health report does not call healthy."""
    return [p for p in parts if (health.get(p) or {}).get("status") != "healthy"]


def _ready(url: str) -> bool:
    """The API answers and the scheduler and DAG processor are healthy."""
    return not _unhealthy(_health(url), ("metadatabase", "scheduler", "dag_processor"))


def start(api_port: int | None = None, timeout: float = 300) -> AirflowServer:
    """Installs Airflow if needed, starts `airflow standalone` and waits for it.

    Args:
        api_port: The API server's (and UI's) port; `port()` when None.
        timeout: Seconds to wait for the scheduler and DAG processor.
    """
    api_port = api_port or port()
    url = f"http://{HOST}:{api_port}"
    server = running()
    if server is not None:
        if server.url != url:
            raise AirflowError(
                f"Airflow already runs at {server.url}; stop it first: "
                "python run.py --airflow stop"
            )
        return server
    from visionops.app.dashboards import port_open

    if port_open(api_port):
        raise AirflowError(
            f"Port {api_port} is taken; free it or set {PORT_ENV} to another port."
        )
    install()
    dags_folder().mkdir(parents=True, exist_ok=True)
    _write_shim()
    password = _password()
    process = background.start(
        [str(_bin("airflow")), "standalone"], log_file(), environment(api_port)
    )
    background.write_pid(_pid_file(), process.pid)
    _settings_file().write_text(json.dumps({"url": url, "port": api_port}))
    deadline = time.monotonic() + timeout
    while not _ready(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop()
            why = "exited" if process.returncode is not None else "was not ready"
            raise AirflowError(
                f"airflow standalone {why} within {timeout:.0f} s; see {log_file()}:"
                f"\n{background.tail(log_file())}"
            )
        time.sleep(1)
    return AirflowServer(url=url, user=USER, password=password)


def stop(timeout: float = 30) -> str | None:
    """Stops the Airflow `start` started (all its components); returns its URL."""
    record = _record()
    background.stop_recorded(_pid_file(), timeout)
    _settings_file().unlink(missing_ok=True)
    return str(record["url"]) if record else None


def dag_id(name: str) -> str:
    """`name` as an Airflow DAG id (other characters become `_`)."""
    return "".join(c if c in _ID_CHARS else "_" for c in name)


def run_dag_id(pipeline: str) -> str:
    """A new DAG id for one run of `pipeline`: the pipeline and the time."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return dag_id(f"{pipeline}-{stamp}-{secrets.token_hex(2)}")


def orchestrator_settings(
    configuration: dict[str, Any],
    dag: str | None = None,
    folders: Sequence[Path] = (),
) -> Any:
    """ZenML's Airflow settings: our DAG generator, the DAGs folder, the DAG id.

    A local orchestrator without `dag_output_dir` writes into the local Airflow's
    DAGs folder; a stack file's `dag_output_dir` (a remote Airflow's) wins. Step
    containers on this machine's engine run as the invoking user and mount
    `folders` (of this machine) at the same path, beside the stack's `mounts`.
    """
    from zenml.integrations.airflow.flavors.airflow_orchestrator_flavor import (
        AirflowOrchestratorSettings,
    )

    values: dict[str, Any] = {"custom_dag_generator": DAG_GENERATOR}
    if configuration.get("local", True) and not configuration.get("dag_output_dir"):
        values["dag_output_dir"] = str(dags_folder())
    if on_this_engine("airflow", configuration):
        # Containers on this machine's engine, writing into its local stores: as
        # the user who runs the pipeline (and Airflow), unless the stack names one;
        # removed once they succeeded (a nightly schedule would pile them up; a
        # failed one stays for `docker logs`), unless the stack says otherwise.
        args = {
            "user": invoking_user(),
            "auto_remove": "success",
            **(configuration.get("operator_args") or {}),
        }
        if folders:
            binds = [
                {"source": path, "target": path, "type": "bind", "read_only": False}
                for path in mounted(folders)
            ]
            args["mounts"] = [*(args.get("mounts") or []), *binds]
        values["operator_args"] = args
    if dag:
        values["dag_id"] = dag
    return AirflowOrchestratorSettings(**values)


def with_dag(settings: Any, pipeline: str, schedule: str | None) -> tuple[Any, str]:
    """The orchestrator settings with the DAG id of one run, or of a schedule.

    A schedule's DAG is named after it and runs one run at a time: a run that
    outlasts the interval is not joined by the next.

    Returns:
        The settings and the DAG id.
    """
    if schedule is None:
        dag = run_dag_id(pipeline)
        return settings.model_copy(update={"dag_id": dag}), dag
    dag = dag_id(schedule)
    dag_args = {**settings.dag_args, "max_active_runs": 1}
    return settings.model_copy(update={"dag_id": dag, "dag_args": dag_args}), dag


def writes_here(settings: Any) -> bool:
    """Whether the DAGs go to the local Airflow (then `run.py` waits for their runs)."""
    return settings.dag_output_dir == str(dags_folder())


def remove_dag_file(dag: str, configuration: dict[str, Any]) -> bool:
    """Removes a DAG's file from the local DAGs folder; False if there was none."""
    if not configuration.get("local", True) or configuration.get("dag_output_dir"):
        return False
    path = dags_folder() / f"{dag}.zip"
    if not path.is_file():
        return False
    path.unlink()
    return True


# The first line of a DAG file `write_launcher` wrote: what `launchers` lists.
LAUNCHER_MARK = "# visionops schedule: "
LAUNCHER_TEMPLATE = """{mark}{header}
# Written by `python run.py --pipeline {plan} --schedule '{cron}'`; removed by
# `python run.py --unschedule {name}`. Runs run.py on this machine: each of its
# pipelines is then a DAG of its own, its steps in containers.
import datetime

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
from airflow.providers.standard.operators.bash import BashOperator

with DAG(
    dag_id={name!r},
    schedule={cron!r},
    start_date=datetime.datetime.fromisoformat({start!r}),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    tags=["visionops", {plan!r}],
):
    BashOperator(
        task_id="run_py",
        bash_command={command!r},
        env={env!r},
        append_env=True,
        cwd={cwd!r},
    )
"""


def launcher_path(name: str) -> Path:
    """The DAG file of a plan's schedule."""
    return dags_folder() / f"{dag_id(name)}.py"


def write_launcher(
    name: str,
    plan: str,
    cron: str,
    command: Sequence[str],
    env: dict[str, str],
    cwd: Path,
) -> Path:
    """Writes a DAG that runs `command` (a run.py of this machine) at `cron`, one
    run at a time: the schedule of a plan, whose pipelines ZenML cannot put into
    one DAG (a gate decides at run time whether the next one runs).

    The command is Airflow's raw text (no Jinja), the environment the one given
    over Airflow's own.
    """
    import shlex

    path = launcher_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"name": name, "plan": plan, "cron": cron})
    text = LAUNCHER_TEMPLATE.format(
        mark=LAUNCHER_MARK,
        header=header,
        name=dag_id(name),
        plan=plan,
        cron=cron,
        start=datetime.now(UTC).replace(second=0, microsecond=0).isoformat(),
        command="{% raw %}" + shlex.join(command) + "{% endraw %}",
        env=env,
        cwd=str(cwd),
    )
    partial = path.with_suffix(".tmp")
    partial.write_text(text)
    partial.replace(path)  # the DAG processor never reads half a file
    return path


def launchers() -> list[dict[str, str]]:
    """The plans' schedules in the local DAGs folder: name, plan, cron."""
    found = []
    for path in sorted(dags_folder().glob("*.py")):
        with path.open(encoding="utf-8") as file:
            first = file.readline()
        if first.startswith(LAUNCHER_MARK):
            found.append(json.loads(first.removeprefix(LAUNCHER_MARK)))
    return found


class AirflowClient:
    """Airflow's REST API (v2) as the admin, with a JWT from `/auth/token`."""

    def __init__(self, server: AirflowServer) -> None:
        self.server = server
        self._token: str | None = None

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(
            f"{self.server.url}{path}", data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                raise LookupError(f"{method} {path}: not found") from None
            raise AirflowError(
                f"Airflow {method} {path} answered {err.code}: {err.read()[:500]!r}"
            ) from None
        except OSError as err:
            raise AirflowError(
                f"Airflow does not answer at {self.server.url} ({err}): "
                "python run.py --airflow"
            ) from None
        return json.loads(text) if text else None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One API call (`/api/v2/...`), logging in first."""
        if self._token is None:
            login = {"username": self.server.user, "password": self.server.password}
            self._token = self._request("POST", "/auth/token", login)["access_token"]
        return self._request(method, f"/api/v2{path}", body)

    def dag_runs(self, dag: str) -> list[dict[str, Any]]:
        """The runs of a DAG, oldest first (none while it is not parsed yet)."""
        try:
            runs = self.call("GET", f"/dags/{dag}/dagRuns?order_by=logical_date")
        except LookupError:
            return []
        return list(runs["dag_runs"])

    def task_instances(self, dag: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of one DAG run."""
        path = f"/dags/{dag}/dagRuns/{run_id}/taskInstances"
        return list(self.call("GET", path)["task_instances"])

    def delete_dag(self, dag: str, timeout: float = 120) -> bool:
        """Pauses a DAG, ends its unfinished runs and deletes it with its history.

        Airflow refuses to delete a DAG while a task of it runs: its unfinished
        runs are marked failed (their tasks are stopped), then the delete is
        retried until it goes through.

        Returns:
            False if Airflow does not know the DAG.
        """
        try:
            self.call("PATCH", f"/dags/{dag}", {"is_paused": True})
        except LookupError:
            return False
        deadline = time.monotonic() + timeout
        while True:
            for run in self.dag_runs(dag):
                if run["state"] not in FINISHED:
                    path = f"/dags/{dag}/dagRuns/{run['dag_run_id']}"
                    self.call("PATCH", path, {"state": "failed"})
            try:
                self.call("DELETE", f"/dags/{dag}")
            except LookupError:
                return True
            except AirflowError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(3)
            else:
                return True

    def wait_for_run(
        self,
        dag: str,
        timeout: float = 24 * 3600,
        poll: float = 3.0,
        unhealthy_for: float = UNHEALTHY_FOR,
    ) -> dict[str, Any]:
        """Waits for the DAG's first run to finish (the DAG file is read first).

        A run is only waited for while Airflow can finish it: its metadata database
        and scheduler healthy (a scheduler that died, or a database on a full disk,
        leaves the run `running` for ever).

        Returns:
            The DAG run as the API gives it (`state`: success or failed).

        Raises:
            AirflowError: No finished run within `timeout`, or Airflow unhealthy for
                `unhealthy_for` seconds.
        """
        deadline = time.monotonic() + timeout
        healthy_at = time.monotonic()
        while time.monotonic() < deadline:
            runs = self.dag_runs(dag)
            if runs and runs[0]["state"] in FINISHED:
                return runs[0]
            sick = _unhealthy(_health(self.server.url))
            if not sick:
                healthy_at = time.monotonic()
            elif time.monotonic() - healthy_at > unhealthy_for:
                raise AirflowError(
                    f"Airflow's {' and '.join(sick)} unhealthy for over "
                    f"{unhealthy_for:.0f} s while the DAG {dag} ran (a full disk? "
                    f"see {log_file()}; restart with python run.py --airflow stop "
                    f"&& python run.py --airflow):\n{background.tail(log_file())}"
                )
            time.sleep(poll)
        raise AirflowError(
            f"The DAG {dag} did not finish a run within {timeout:.0f} s; see "
            f"{self.server.url}/dags/{dag}"
        )


def wait_for_pipeline_run(dag: str, run: Any) -> Any:
    """Waits for the DAG of one pipeline run; returns the ZenML run, refreshed.

    Raises:
        AirflowError: Airflow is not running, or the DAG run failed (naming the
            failed tasks and where their logs are).
    """
    from zenml.client import Client

    server = running()
    if server is None:
        raise AirflowError(
            f"The DAG {dag} was written to {dags_folder()}, but the local Airflow "
            "is not running: python run.py --airflow"
        )
    client = AirflowClient(server)
    print(f"Waiting for Airflow: {server.url}/dags/{dag}")
    dag_run = client.wait_for_run(dag)
    if dag_run["state"] != "success":
        failed = [
            t["task_id"]
            for t in client.task_instances(dag, dag_run["dag_run_id"])
            if t["state"] not in ("success", "skipped")
        ]
        raise AirflowError(
            f"The Airflow DAG run {dag} ended {dag_run['state']} (tasks "
            f"{', '.join(failed) or 'none'}); logs: {server.url}/dags/{dag}"
        )
    finished = Client().get_pipeline_run(run.id)
    print(
        f"The Airflow DAG run {dag} succeeded: ZenML run {finished.name}, "
        f"{len(finished.steps)} steps, each in its container"
    )
    return finished
