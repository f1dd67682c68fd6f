"""Real services on loopback for the tests: PostgreSQL, S3 (moto), MLflow and ZenML.

A pytest plugin: a module that needs them says `pytest_plugins = ["tests.servers"]`.
PostgreSQL and the S3 server live for the session; each module gets its own MLflow
server (a fresh database and bucket) so modules never see each other's runs. Every
service listens on 127.0.0.1 on a free port and is stopped afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from visionops.core import background

HOST = "127.0.0.1"
START_TIMEOUT = 180  # seconds; an MLflow or ZenML server takes 15-40 s on 2 busy cores
BIN = Path(sys.executable).parent
# Throwaway credentials of the throwaway S3 server, never real ones.
S3_KEY = "visionops-test"
S3_SECRET = "visionops-test-secret"
S3_REGION = "us-east-1"


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _tail(log: Path, lines: int = 30) -> str:
    return background.tail(log, lines)


def wait_http(url: str, process: subprocess.Popen, log: Path, what: str) -> None:
    """Waits until `url` answers any HTTP response; fails if the process dies."""
    background.wait_ready(url, process, log, what, START_TIMEOUT, any_status=True)


def start_process(command: list[str], log: Path, env: dict[str, str] | None = None):
    """Starts a server in its own process group, output to `log`."""
    return background.start(command, log, env)


def stop_process(process: subprocess.Popen) -> None:
    """Stops a process started by `start_process`, and its children."""
    background.stop(process, timeout=5)  # throwaway servers: no long goodbye


# --- PostgreSQL -------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """Finds initdb/pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<N>/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        folder = Path(initdb).resolve().parent
        if (folder / "pg_ctl").is_file():
            return folder
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(found[-1]).parent if found else None


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: the user to run it as, None if not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("Running as root without a `postgres` or `nobody` user.")


@dataclass
class Postgres:
    """A PostgreSQL server with trust authentication for user `postgres`."""

    port: int
    user: str = "postgres"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of one database."""
        return f"postgresql://{self.user}@{HOST}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg2 connection (autocommit) to one database."""
        import psycopg2

        connection = psycopg2.connect(
            host=HOST, port=self.port, user=self.user, dbname=database
        )
        connection.autocommit = True
        return connection

    def create_database(self, name: str) -> None:
        """Creates an empty database."""
        with contextlib.closing(self.connect()) as connection:
            connection.cursor().execute(f'CREATE DATABASE "{name}"')

    def query(self, database: str, sql: str, params: tuple = ()) -> list[tuple]:
        """Runs one SELECT and returns its rows."""
        with contextlib.closing(self.connect(database)) as connection:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            return cursor.fetchall()


@contextlib.contextmanager
def run_postgres() -> Iterator[Postgres]:
    """initdb into a temporary folder, pg_ctl start on a free port; removed after."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed; to run this test: sudo apt-get install -y "
            "--no-install-recommends postgresql (`make test` does it as root)"
        )
    user = _unprivileged_user()
    # Under /tmp itself, not pytest's root-only tmp folder, so `user` can reach it.
    root = Path(tempfile.mkdtemp(prefix="visionops-pg-"))
    as_user = ["runuser", "-u", user, "--"] if user else []
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, log, port = root / "data", root / "postgres.log", free_port()
    try:
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres"]
            + ["--auth=trust", "--encoding=UTF8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {root} -c listen_addresses={HOST} -c fsync=off"
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options]
            + ["-l", str(log), "-w", "-t", str(START_TIMEOUT), "start"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as err:
        shutil.rmtree(root, ignore_errors=True)
        output = (err.stdout or b"").decode() + (err.stderr or b"").decode()
        raise RuntimeError(
            f"PostgreSQL did not start:\n{output}\n{_tail(log)}"
        ) from err
    try:
        yield Postgres(port)
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate"]
            + ["-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


# --- S3 ---------------------------------------------------------------------------


@dataclass
class S3Server:
    """An S3-compatible endpoint (moto) with throwaway credentials."""

    url: str
    key: str = S3_KEY
    secret: str = S3_SECRET
    region: str = S3_REGION

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> None:
        """Creates a bucket."""
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str) -> list[str]:
        """Every object key in a bucket."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def read(self, bucket: str, key: str) -> bytes:
        """One object's bytes."""
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def env(self) -> dict[str, str]:
        """What a process needs in its environment to reach this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": self.region,
        }


@contextlib.contextmanager
def run_s3(log_dir: Path) -> Iterator[S3Server]:
    """`moto_server` on a free port (in memory), stopped after."""
    executable = BIN / "moto_server"
    if not executable.is_file():
        pytest.skip("moto_server is missing: pip install 'moto[server]'")
    port, log = free_port(), log_dir / "moto.log"
    process = start_process([str(executable), "-H", HOST, "-p", str(port)], log)
    url = f"http://{HOST}:{port}"
    try:
        wait_http(url, process, log, "moto_server")
        yield S3Server(url)
    finally:
        stop_process(process)


# --- MLflow -----------------------------------------------------------------------


@dataclass
class MlflowServer:
    """An MLflow tracking server: runs in PostgreSQL, artifacts in an S3 bucket."""

    url: str
    database: str
    bucket: str
    postgres: Postgres
    s3: S3Server
    log: Path
    process: subprocess.Popen = field(repr=False)


@contextlib.contextmanager
def run_mlflow(
    postgres: Postgres,
    s3: S3Server,
    database: str,
    bucket: str,
    log_dir: Path,
) -> Iterator[MlflowServer]:
    """`mlflow server` on a new database and bucket; clients reach S3 through it."""
    postgres.create_database(database)
    s3.create_bucket(bucket)
    port, log = free_port(), log_dir / f"mlflow-{database}.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_RUN_", "MLFLOW_EXPERIMENT_"))
    }
    env.update(s3.env())
    env.update({"MLFLOW_S3_ENDPOINT_URL": s3.url, "MLFLOW_DISABLE_TELEMETRY": "true"})
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        postgres.url(database),
        "--artifacts-destination",
        f"s3://{bucket}",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    process = start_process(command, log, env)
    url = f"http://{HOST}:{port}"
    try:
        wait_http(f"{url}/health", process, log, "mlflow server")
        yield MlflowServer(url, database, bucket, postgres, s3, log, process)
    finally:
        stop_process(process)


def server_stack_env(s3: S3Server, mlflow: MlflowServer, bucket: str) -> dict:
    """The environment `stacks/server.yaml` reads, for these servers."""
    return {
        "S3_ENDPOINT_URL": s3.url,
        "AWS_ACCESS_KEY_ID": s3.key,
        "AWS_SECRET_ACCESS_KEY": s3.secret,
        "S3_REGION": s3.region,
        "ZENML_BUCKET": bucket,
        "MLFLOW_TRACKING_URI": mlflow.url,
        "MLFLOW_TRACKING_USERNAME": "visionops",
        "MLFLOW_TRACKING_PASSWORD": "unused-by-this-server",
    }


# --- ZenML ------------------------------------------------------------------------


@contextlib.contextmanager
def zenml_local_server(port: int) -> Iterator[str]:
    """`zenml login --local --port PORT`, and on exit `zenml logout --local`.

    The client is connected to the server for the duration, then goes back to the
    store and the active stack it had, so later tests see their state unchanged.
    """
    from zenml.client import Client
    from zenml.enums import ServerProviderType
    from zenml.zen_server.deploy.deployer import LocalServerDeployer
    from zenml.zen_server.deploy.deployment import LocalServerDeploymentConfig

    previous_stack = Client().active_stack_model.id
    deployer = LocalServerDeployer()
    config = LocalServerDeploymentConfig(
        provider=ServerProviderType.DAEMON, ip_address=HOST, port=port
    )
    try:
        server = deployer.deploy_server(config, timeout=START_TIMEOUT)
        deployer.connect_to_server()
        assert server.status is not None and server.status.url
        yield server.status.url.rstrip("/")
    finally:
        deployer.remove_server()  # also disconnects: back to the local store
        Client().activate_stack(previous_stack)


# --- Fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def services_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the servers write their logs (named in failures)."""
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for the whole session."""
    with run_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def s3(services_log_dir: Path) -> Iterator[S3Server]:
    """An S3 server (moto) for the whole session."""
    with run_s3(services_log_dir) as server:
        yield server


@pytest.fixture(scope="module")
def mlflow_server(
    request: pytest.FixtureRequest,
    postgres: Postgres,
    s3: S3Server,
    services_log_dir: Path,
) -> Iterator[MlflowServer]:
    """An MLflow server of this module's own (database and bucket named after it).

    The bucket is `mlflow-artifacts` for test_server_stack, `mlflow-artifacts-<x>`
    for any other module `test_<x>`.
    """
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    suffix = "" if module == "server_stack" else f"-{module.replace('_', '-')}"
    database = f"mlflow_{module}"
    bucket = f"mlflow-artifacts{suffix}"
    with run_mlflow(postgres, s3, database, bucket, services_log_dir) as server:
        yield server
