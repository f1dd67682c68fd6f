"""docker-compose.yml's PostgreSQL + MLflow pair started for real from local images.

`docker/compose.local-images.yml` only swaps the two images for ones built here
(Debian's PostgreSQL, MLflow from the wheelhouse); everything else (environment,
health checks, volumes, the backend store URI) is docker-compose.yml's own. Needs a
Docker engine: started when root, else skipped with the command that prepares it.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests import docker_env
from tests.app.test_compose import _compose_command, _filled_env

REPO = Path(__file__).resolve().parents[2]
OVERRIDE = REPO / "docker" / "compose.local-images.yml"


def _mlflow_requirements() -> list[str]:
    """What docker/mlflow.Dockerfile installs, for the wheelhouse."""
    text = (REPO / "docker" / "mlflow.Dockerfile").read_text().replace("\\\n", " ")
    run = next(line for line in text.splitlines() if "pip install" in line)
    words = shlex.split(run.split("pip install", 1)[1])
    return [w for w in words if not w.startswith("-")]


@pytest.fixture(scope="module")
def compose_pair(tmp_path_factory: pytest.TempPathFactory):
    """Builds both images, `up`s postgres + mlflow, yields a compose runner."""
    tag = uuid.uuid4().hex[:8]
    project = f"visionops-test-{tag}"
    env = {
        **_filled_env(),
        "POSTGRES_IMAGE": f"visionops-postgres:test-{tag}",
        "MLFLOW_IMAGE": f"visionops-mlflow:test-{tag}",
        # Published on loopback only, on a free port.
        "BIND_ADDRESS": "127.0.0.1",
        "MLFLOW_PORT": str(_free_port()),
    }
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}

    def compose(*args: str, check: bool = True):
        import subprocess

        result = subprocess.run(
            [
                *_compose_command(),
                "--env-file",
                str(env_file),
                "-p",
                project,
                "-f",
                str(REPO / "docker-compose.yml"),
                "-f",
                str(OVERRIDE),
                *args,
            ],
            capture_output=True,
            text=True,
            env=clean,
            cwd=REPO,
            timeout=900,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"compose {args}: {result.stdout}\n{result.stderr}")
        return result

    with docker_env.engine_or_skip() as base:
        yield from _compose_up(compose, env, base)


def _compose_up(compose, env: dict[str, str], base: str):
    """Builds the two images, starts the pair; takes them down afterwards."""
    try:
        docker_env.docker(
            "build",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "-f",
            str(REPO / "docker" / "postgres.Dockerfile"),
            "-t",
            env["POSTGRES_IMAGE"],
            str(REPO / "docker"),
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
            timeout=900,
        )
        wheels = docker_env.build_wheelhouse(_mlflow_requirements())
        with docker_env.serve_wheelhouse(wheels) as url:
            docker_env.docker(
                "build",
                "--network",
                "host",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--build-arg",
                f"PIP_FIND_LINKS={url}",
                "--build-arg",
                "PIP_NO_INDEX=1",
                "--build-arg",
                f"PIP_TRUSTED_HOST={docker_env.WHEELHOUSE_HOST}",
                "-f",
                str(REPO / "docker" / "mlflow.Dockerfile"),
                "-t",
                env["MLFLOW_IMAGE"],
                str(REPO / "docker"),
                env={**os.environ, "DOCKER_BUILDKIT": "0"},
                timeout=900,
            )
        # Only the pair: MinIO's images cannot be built here, and the server
        # starts without its artifact bucket (used only for artifact uploads).
        compose("up", "-d", "--no-build", "--no-deps", "postgres")
        _wait_healthy(compose, "postgres")
        compose("up", "-d", "--no-build", "--no-deps", "mlflow")
        _wait_healthy(compose, "mlflow")
        yield compose, f"http://127.0.0.1:{env['MLFLOW_PORT']}", env
    finally:
        compose("down", "-v", "--remove-orphans", check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(compose, service: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cid = compose("ps", "-q", service).stdout.strip()
        if cid:
            state = json.loads(docker_env.docker("inspect", cid).stdout)[0]["State"]
            health = state.get("Health", {}).get("Status")
            if health == "healthy":
                return
            if state["Status"] == "exited":
                break
        time.sleep(3)
    logs = compose("logs", service, check=False)
    raise AssertionError(f"{service} not healthy:\n{logs.stdout[-3000:]}")


def _post(url: str, body: dict, login: tuple[str, str] | None = None) -> dict:
    """POSTs JSON, logged in as `login` (user, password) with HTTP basic auth."""
    headers = {"Content-Type": "application/json"}
    if login:
        token = base64.b64encode(":".join(login).encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_mlflow_server_keeps_runs_in_the_compose_postgres(compose_pair) -> None:
    compose, url, env = compose_pair
    api = f"{url}/api/2.0/mlflow"
    # The basic-auth app: nothing without the admin pair from .env.
    login = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])
    for wrong in (None, (login[0], "not-the-password")):
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(f"{api}/experiments/create", {"name": "intruder"}, wrong)
        assert refused.value.code == 401
    experiment = _post(f"{api}/experiments/create", {"name": "compose-check"}, login)
    run = _post(
        f"{api}/runs/create",
        {"experiment_id": experiment["experiment_id"], "start_time": 0},
        login,
    )["run"]
    run_id = run["info"]["run_id"]
    _post(
        f"{api}/runs/log-metric",
        {"run_id": run_id, "key": "map50", "value": 0.5, "timestamp": 0, "step": 0},
        login,
    )

    # The metric is a row of the PostgreSQL database named in .env, read with psql
    # in the postgres container.
    query = f"SELECT key, value FROM metrics WHERE run_uuid = '{run_id}'"
    rows = compose(
        "exec",
        "-T",
        "postgres",
        "psql",
        "-U",
        env["POSTGRES_USER"],
        "-d",
        env["POSTGRES_DB"],
        "-At",
        "-c",
        query,
    ).stdout.split()
    assert rows == ["map50|0.5"]

    # Both containers run the swapped images, with compose's own health checks.
    for service, image in (
        ("postgres", env["POSTGRES_IMAGE"]),
        ("mlflow", env["MLFLOW_IMAGE"]),
    ):
        cid = compose("ps", "-q", service).stdout.strip()
        info = json.loads(docker_env.docker("inspect", cid).stdout)[0]
        assert info["Config"]["Image"] == image
        assert info["State"]["Health"]["Status"] == "healthy"
    # The PostgreSQL password is in MLflow's environment, not on its command line.
    cid = compose("ps", "-q", "mlflow").stdout.strip()
    processes = docker_env.docker("top", cid, "-eo", "pid,args").stdout
    assert "mlflow server" in processes and env["POSTGRES_PASSWORD"] not in processes
    # It runs as an unprivileged user, who owns the basic-auth database it wrote.
    owner = compose(
        "exec", "-T", "mlflow", "sh", "-c", "id -u; stat -c %u /mlflow-auth/*.db"
    ).stdout.split()
    assert owner[0] != "0" and owner[1] == owner[0], owner
