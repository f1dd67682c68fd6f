"""docker-compose.yml, validated by docker compose itself without a daemon, and .env."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from visionops.app import docker as vdocker

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
# ${VAR}, ${VAR:-default}, ${VAR:?message}, but not $${...} (a literal `$` for the
# container's shell).
VAR = re.compile(r"(?<!\$)\$\{([A-Z0-9_]+)(?:(:-|:\?)[^}]*)?\}")
STATEFUL = {"postgres": "/var/lib/postgresql/data", "minio": "/data", "zenml": None}
MINIO_INIT = REPO / "docker" / "minio-init.sh"


def _volumes(service: dict) -> list[str]:
    """A service's volumes as `source:target[:mode]` (compose v1 or v2 output)."""
    return [
        v
        if isinstance(v, str)
        else f"{v['source']}:{v['target']}" + (":ro" if v.get("read_only") else "")
        for v in service.get("volumes", [])
    ]


def _published(service: dict) -> list[tuple[str, str]]:
    """Where a service publishes its ports: (host address, host port) each."""
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):  # compose v2
            found.append((port.get("host_ip", "0.0.0.0"), str(port["published"])))
        else:  # compose v1: "ip:host:container/proto", or without the ip
            parts = str(port).split("/")[0].split(":")
            ip = parts[0] if len(parts) == 3 else "0.0.0.0"
            found.append((ip, parts[-2] if len(parts) > 1 else parts[0]))
    return found


def _compose_command() -> list[str]:
    """Compose v2 (`docker compose`) when the plugin is there, else v1."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip(
        "No compose validator; to run this test: sudo apt-get install -y "
        "--no-install-recommends docker-compose (`make test` does it as root), or "
        "install the docker compose plugin."
    )


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _compose_config(
    tmp_path: Path, env: dict[str, str], compose: Path = COMPOSE, *args: str
) -> subprocess.CompletedProcess:
    """`docker compose config` with only `env` as .env (the user's .env unread)."""
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    clean = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    return subprocess.run(
        [
            *_compose_command(),
            "--env-file",
            str(env_file),
            "-f",
            str(compose),
            *args,
            "config",
        ],
        capture_output=True,
        text=True,
        env=clean,
        cwd=compose.parent,
        timeout=120,
    )


def _filled_env() -> dict[str, str]:
    """.env.example with every empty value filled, as a user would."""
    return {
        k: v or f"filled-{k.lower().replace('_', '-')}"
        for k, v in _env_example().items()
    }


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The compose file as docker compose resolves it from a filled-in .env."""
    tmp = tmp_path_factory.mktemp("compose")
    result = _compose_config(tmp, _filled_env(), COMPOSE, "--profile", "gpu")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_accepts_the_file_with_env_example_filled(config: dict) -> None:
    services = config["services"]
    assert {"postgres", "minio", "minio-init", "mlflow", "zenml", "bento", "train"} <= (
        set(services)
    )
    env = _filled_env()
    assert (
        services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        == env["POSTGRES_PASSWORD"]
    )
    assert services["zenml"]["image"] == "zenmldocker/zenml-server:0.98.0"
    assert services["bento"]["image"] == env["BENTO_IMAGE"]


def test_compose_refuses_to_start_without_the_passwords(tmp_path: Path) -> None:
    result = _compose_config(tmp_path, _env_example())  # empty passwords
    assert result.returncode != 0
    assert "in .env" in result.stderr
    assert re.search(
        r"POSTGRES_PASSWORD|MINIO_ROOT_PASSWORD|ZENML_SECRETS", result.stderr
    )


def test_the_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above means something: compose rejects an unknown option."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE.read_text().replace("    restart: on-failure\n", "    restrat: no\n", 1)
    )
    result = _compose_config(tmp_path, _filled_env(), broken)
    assert result.returncode != 0
    assert "restrat" in result.stderr


def test_every_variable_of_compose_and_stacks_is_in_env_example() -> None:
    listed = set(_env_example())
    used = {m.group(1) for m in VAR.finditer(COMPOSE.read_text())}
    assert used - listed == set()
    for stack in sorted((REPO / "stacks").glob("*.yaml")):
        required = {
            m.group(1) for m in VAR.finditer(stack.read_text()) if not m.group(2)
        }
        assert required - listed == set(), stack.name


def test_no_password_or_key_is_written_in_the_files() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    sensitive = re.compile(r"PASSWORD|SECRET|ENCRYPTION_KEY|ACCESS_KEY")
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if sensitive.search(key):
                # Required from .env, never a default in the file.
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", str(value)), (
                    name,
                    key,
                )
    text = COMPOSE.read_text()
    assert not re.search(r"\$\{[A-Z0-9_]*(PASSWORD|SECRET|KEY)[A-Z0-9_]*:-", text)
    example = _env_example()
    for key, value in example.items():
        if sensitive.search(key) and not key.endswith("_ID"):
            assert value == "", f".env.example gives {key} a value"


def test_services_restart_and_stateful_ones_have_healthchecks_and_volumes(
    config: dict,
) -> None:
    services = config["services"]
    named = set(config["volumes"])
    policies = ("always", "unless-stopped", "on-failure", "no")
    for name, service in services.items():
        assert service.get("restart") in policies, name
    for name, target in STATEFUL.items():
        service = services[name]
        assert service["healthcheck"]["test"], name
        volumes = [v.split(":") for v in service["volumes"]]
        mounted = {source: path for source, path, *_ in volumes}
        assert set(mounted) & named, f"{name} has no named volume"
        if target:
            assert target in mounted.values()
    for name in ("mlflow", "bento"):
        assert services[name]["healthcheck"]["test"], name


def test_mlflow_server_uses_postgres_and_private_minio_buckets(config: dict) -> None:
    services = config["services"]
    mlflow = services["mlflow"]
    command = " ".join(mlflow["command"])
    assert command.startswith("mlflow server --app-name basic-auth ")
    assert "--artifacts-destination s3://mlflow/" in command
    assert "--host 0.0.0.0" in command  # inside its container; published below
    # The backend store from the environment, which `mlflow server` reads: its
    # password is not on the command line.
    assert "backend-store-uri" not in command and "postgres" not in command
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith(
        "postgresql://mlflow:filled-postgres-password@postgres:5432/"
    )
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "minio": {"condition": "service_healthy"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    init = services["minio-init"]
    assert init["entrypoint"] == ["/bin/sh", "/minio-init.sh"]
    assert any(v.endswith(":/minio-init.sh:ro") for v in _volumes(init))
    script = MINIO_INIT.read_text()
    assert "mc mb --ignore-existing local/mlflow local/zenml" in script
    for bucket in ("mlflow", "zenml"):
        assert f"mc anonymous set none local/{bucket}" in script
    assert "public" not in script and "download" not in script


def test_mlflow_image_has_the_project_mlflow_and_its_drivers() -> None:
    dockerfile = (REPO / "docker" / "mlflow.Dockerfile").read_text()
    pinned = next(d for d in vdocker.project_requirements() if d.startswith("mlflow=="))
    assert pinned in dockerfile
    assert "psycopg2" in dockerfile and "boto3" in dockerfile


def test_the_images_built_here_run_as_an_unprivileged_user() -> None:
    for name in ("mlflow.Dockerfile", "project.Dockerfile"):
        lines = (REPO / "docker" / name).read_text().splitlines()
        users = [line.split()[1] for line in lines if line.startswith("USER ")]
        assert users and users[-1] not in ("root", "0"), name
        # The folders it writes to are its own.
        assert f"chown {users[-1]}:{users[-1]}" in "\n".join(lines), name


def test_gpu_and_serve_profiles(config: dict) -> None:
    train = config["services"]["train"]
    assert train["profiles"] == ["gpu"]
    devices = train["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"capabilities": ["gpu"], "count": "all", "driver": "nvidia"}]
    assert config["services"]["bento"]["profiles"] == ["serve"]
    # Services without a profile are what a plain `docker compose up` starts.
    default = {n for n, s in config["services"].items() if not s.get("profiles")}
    assert default == {"postgres", "minio", "minio-init", "mlflow", "zenml"}


def test_project_image_matches_the_pipeline_images() -> None:
    dockerfile = (REPO / "docker" / "project.Dockerfile").read_text()
    assert f"ARG PARENT_IMAGE={vdocker.CUDA_PARENT_IMAGE}\n" in dockerfile
    for package in vdocker.APT_PACKAGES:
        assert package in dockerfile
    assert "uv pip install --system --no-cache -r pyproject.toml" in dockerfile
    assert (REPO / "docker" / "project.Dockerfile.dockerignore").is_file()


def test_nothing_is_published_beyond_this_machine_by_default(
    config: dict, tmp_path: Path
) -> None:
    published = {n: _published(s) for n, s in config["services"].items()}
    assert {n for n, p in published.items() if p} == {
        "minio",
        "mlflow",
        "zenml",
        "bento",
    }
    for name, ports in published.items():
        assert all(ip == "127.0.0.1" for ip, _ in ports), (name, ports)
    # Without BIND_ADDRESS in .env too, and where it says otherwise, there.
    env = {k: v for k, v in _filled_env().items() if k != "BIND_ADDRESS"}
    for bind, expected in (({}, "127.0.0.1"), ({"BIND_ADDRESS": "172.17.0.1"}, None)):
        result = _compose_config(
            tmp_path, {**env, **bind}, COMPOSE, "--profile", "serve"
        )
        assert result.returncode == 0, result.stderr
        services = yaml.safe_load(result.stdout)["services"]
        addresses = {ip for s in services.values() for ip, _ in _published(s)}
        assert addresses == {expected or bind["BIND_ADDRESS"]}


def test_every_server_asks_for_credentials_from_env(config: dict) -> None:
    services, env = config["services"], _filled_env()
    mlflow = services["mlflow"]["environment"]
    # MLflow's basic-auth admin is the pair the stacks log in with.
    assert mlflow["MLFLOW_AUTH_ADMIN_USERNAME"] == env["MLFLOW_TRACKING_USERNAME"]
    assert mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"] == env["MLFLOW_TRACKING_PASSWORD"]
    assert mlflow["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert "/mlflow-auth" in {v.split(":")[1] for v in _volumes(services["mlflow"])}
    dockerfile = (REPO / "docker" / "mlflow.Dockerfile").read_text()
    assert "MLFLOW_AUTH_CONFIG_PATH=/etc/mlflow/basic_auth.ini" in dockerfile
    auth = (REPO / "docker" / "mlflow-auth.ini").read_text()
    assert "database_uri = sqlite:////mlflow-auth/" in auth
    # ZenML starts activated, with its admin from .env.
    zenml = services["zenml"]["environment"]
    assert zenml["ZENML_SERVER_AUTO_ACTIVATE"] == "true"
    assert zenml["ZENML_DEFAULT_USER_PASSWORD"] == env["ZENML_ADMIN_PASSWORD"]
    # The Bento wants a key.
    assert (
        services["bento"]["environment"]["VISIONOPS_API_KEY"]
        == (env["VISIONOPS_API_KEY"])
    )
    # MinIO's root account: MinIO and its init job only; MLflow has its own user.
    root = env["MINIO_ROOT_PASSWORD"]
    holders = {
        name
        for name, service in services.items()
        if root in (service.get("environment") or {}).values()
    }
    assert holders == {"minio", "minio-init"}
    assert mlflow["AWS_ACCESS_KEY_ID"] == env["MINIO_MLFLOW_USER"]
    assert mlflow["AWS_SECRET_ACCESS_KEY"] == env["MINIO_MLFLOW_PASSWORD"]
    script = MINIO_INIT.read_text()
    for bucket, user in (("mlflow", "MLFLOW"), ("zenml", "ZENML")):
        assert (
            f'bucket_user {bucket} "$MINIO_{user}_USER" "$MINIO_{user}_PASSWORD"'
            in (script)
        )
    assert '"Resource": ["arn:aws:s3:::$1/*"]' in script  # its bucket, nothing else
