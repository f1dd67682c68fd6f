"""Stack files: variables, secrets, services, registration without engines, images."""

from __future__ import annotations

import http.server
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from visionops.app import docker as vdocker
from visionops.app.stacks import (
    ServiceSpec,
    StackError,
    apply_stack,
    check_services,
    load_stack_spec,
)

REPO = Path(__file__).resolve().parents[2]
STACKS = sorted((REPO / "stacks").glob("*.yaml"))
NO_ENV_FILE = Path("/nonexistent/.env")
VAR = re.compile(r"\$\{([A-Z0-9_]+)(:-[^}]*)?\}")

# What a user of the docker-cuda and kubernetes stacks puts in .env.
STACK_ENV = {
    "MINIO_ZENML_USER": "minio-user",
    "MINIO_ZENML_PASSWORD": "minio-password-1",
    "MLFLOW_TRACKING_USERNAME": "visionops",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-password-1",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
    "S3_ENDPOINT_URL": "http://127.0.0.1:9000",
    "S3_ACCESS_KEY_ID": "s3-key",
    "S3_SECRET_ACCESS_KEY": "s3-secret-1",
    "KUBERNETES_CONTEXT": "kind-visionops",
    "KUBERNETES_NAMESPACE": "visionops",
    "CONTAINER_REGISTRY_URI": "localhost:5001/visionops",
}


@pytest.fixture
def stack_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The stack variables in the environment, as after `set -a; . .env`."""
    for key, value in STACK_ENV.items():
        monkeypatch.setenv(key, value)
    return STACK_ENV


@pytest.fixture
def restore_active_stack() -> Iterator[None]:
    """Puts back the stack that was active, for the tests that come after."""
    from zenml.client import Client

    active = Client().active_stack_model.name
    yield
    Client().activate_stack(active)


def _required_vars(path: Path) -> set[str]:
    return {m.group(1) for m in VAR.finditer(path.read_text()) if not m.group(2)}


# ---- the files --------------------------------------------------------------------


@pytest.mark.parametrize("path", STACKS, ids=[p.stem for p in STACKS])
def test_every_stack_file_loads_with_its_variables_set(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in _required_vars(path):
        monkeypatch.setenv(var, STACK_ENV.get(var, f"value-of-{var.lower()}"))
    spec = load_stack_spec(str(path), env_file=NO_ENV_FILE)
    assert spec.name == path.stem
    assert "orchestrator" in spec.components and "artifact_store" in spec.components
    text = yaml.safe_dump(spec.model_dump())
    assert "${" not in text, "a variable was left unsubstituted"
    for secret in spec.secrets:
        assert all(v and "${" not in v for v in secret.values.values())


def test_missing_variables_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in STACK_ENV:
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(StackError) as err:
        load_stack_spec("docker-cuda", env_file=NO_ENV_FILE)
    message = str(err.value)
    for var in ("MINIO_ZENML_USER", "MINIO_ZENML_PASSWORD", "MLFLOW_TRACKING_PASSWORD"):
        assert var in message
    assert ".env.example" in message
    # Variables with a default in the file are not asked for.
    assert "S3_ENDPOINT_URL" not in message


def test_env_file_fills_variables_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in STACK_ENV:
        monkeypatch.delenv(key, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\n"
        + "".join(f"{k}={v}\n" for k, v in STACK_ENV.items())
        + 'MINIO_ZENML_PASSWORD="from file"\n'
        + "S3_ENDPOINT_URL=http://minio.example:9000\n"
    )
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:19000")
    spec = load_stack_spec("docker-cuda", env_file=env_file)
    secret = {s.name: s.values for s in spec.secrets}["docker-cuda-s3"]
    assert secret == {
        "aws_access_key_id": "minio-user",
        "aws_secret_access_key": "from file",
    }
    store = spec.components["artifact_store"].configuration
    assert store["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:19000"
    assert store["key"] == "{{docker-cuda-s3.aws_access_key_id}}"


def test_a_secret_value_written_in_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "leaky.yaml"
    path.write_text(
        "name: leaky\n"
        "secrets:\n"
        "  - name: leaky-s3\n"
        "    values: {aws_secret_access_key: hunter2}\n"
        "components:\n"
        "  orchestrator: {name: local, flavor: local}\n"
        "  artifact_store: {name: local, flavor: local}\n"
    )
    with pytest.raises(StackError, match="never from a committed file") as refused:
        load_stack_spec(str(path), env_file=NO_ENV_FILE)
    assert "hunter2" not in str(refused.value)
    path.write_text(path.read_text().replace("hunter2", "'${PW:-hunter2}'"))
    with pytest.raises(StackError, match="no default"):
        load_stack_spec(str(path), env_file=NO_ENV_FILE)


def test_a_typo_in_a_stack_file_does_not_print_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW", "s3cret-from-env")
    path = tmp_path / "typo.yaml"
    path.write_text(
        "name: typo\n"
        "secrets:\n"
        "  - name: typo-s3\n"
        "    valuez: {aws_secret_access_key: '${PW}'}\n"  # misspelt
        "components:\n"
        "  orchestrator: {name: local, flavor: local}\n"
        "  artifact_store: {name: local, flavor: local}\n"
    )
    with pytest.raises(StackError) as refused:
        load_stack_spec(str(path), env_file=NO_ENV_FILE)
    message = str(refused.value)
    assert "secrets.0.valuez: Extra inputs are not permitted" in message
    assert "secrets.0.values: Field required" in message
    assert "s3cret-from-env" not in message


def test_a_reference_to_an_unknown_secret_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW", "x")
    path = tmp_path / "typo.yaml"
    path.write_text(
        "name: typo\n"
        "secrets:\n"
        "  - name: typo-mlflow\n"
        "    values: {password: '${PW}', username: '${PW}'}\n"
        "components:\n"
        "  orchestrator: {name: local, flavor: local}\n"
        "  artifact_store: {name: local, flavor: local}\n"
        "  experiment_tracker:\n"
        "    name: typo-mlflow\n"
        "    flavor: mlflow\n"
        "    configuration:\n"
        "      tracking_uri: http://127.0.0.1:5000\n"
        "      tracking_username: '{{typo-mlflow.user}}'\n"
        "      tracking_password: '{{typo-mlflow.password}}'\n"
    )
    with pytest.raises(StackError, match=r"typo-mlflow\.user"):
        load_stack_spec(str(path), env_file=NO_ENV_FILE)


# ---- registration -----------------------------------------------------------------


def test_local_stack_apply_is_idempotent_and_records_its_file(
    restore_active_stack: None,
) -> None:
    from zenml.client import Client

    client = Client()
    assert apply_stack(load_stack_spec("local")) == "local"
    first = client.get_stack("local")
    assert apply_stack(load_stack_spec("local")) == "local"
    second = client.get_stack("local")
    assert client.active_stack_model.id == first.id
    assert second.updated == first.updated
    assert second.labels["visionops.stack_file"] == "stacks/local.yaml"
    assert second.labels["visionops.services"] == []


@pytest.mark.parametrize("name", ["docker-cuda", "kubernetes"])
def test_container_stacks_register_without_their_engines(
    name: str, stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Docker daemon or cluster here: registering needs neither."""
    from zenml.client import Client
    from zenml.enums import StackComponentType
    from zenml.stack import StackComponent

    client = Client()
    spec = load_stack_spec(name, env_file=NO_ENV_FILE)
    assert apply_stack(spec, activate=False) == name
    stack = client.get_stack(name)
    flavors = {t.value: c[0].flavor_name for t, c in stack.components.items()}
    expected = {
        "docker-cuda": {
            "orchestrator": "local_docker",
            "image_builder": "local",
            "artifact_store": "s3",
            "experiment_tracker": "mlflow",
        },
        "kubernetes": {
            "orchestrator": "kubernetes",
            "image_builder": "local",
            "container_registry": "default",
            "artifact_store": "s3",
            "experiment_tracker": "mlflow",
        },
    }[name]
    assert flavors == expected
    assert stack.labels["visionops.stack_file"] == f"stacks/{name}.yaml"
    assert {s["name"] for s in stack.labels["visionops.services"]} >= {"mlflow"}

    # The credentials live in ZenML secrets, and the components resolve them.
    prefix = name
    secret = client.get_secret(f"{prefix}-s3", allow_partial_name_match=False)
    user_var, password_var = (
        ("MINIO_ZENML_USER", "MINIO_ZENML_PASSWORD")
        if name == "docker-cuda"
        else ("S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")
    )
    assert secret.secret_values == {
        "aws_access_key_id": stack_env[user_var],
        "aws_secret_access_key": stack_env[password_var],
    }
    store_model = stack.components[StackComponentType.ARTIFACT_STORE][0]
    assert store_model.configuration["secret"] == (
        f"{{{{{prefix}-s3.aws_secret_access_key}}}}"
    )
    store = StackComponent.from_model(
        client.get_stack_component(StackComponentType.ARTIFACT_STORE, store_model.name)
    )
    assert store.config.secret == stack_env[password_var]
    tracker_model = stack.components[StackComponentType.EXPERIMENT_TRACKER][0]
    tracker = StackComponent.from_model(
        client.get_stack_component(
            StackComponentType.EXPERIMENT_TRACKER, tracker_model.name
        )
    )
    assert tracker.config.tracking_uri == stack_env["MLFLOW_TRACKING_URI"]
    assert tracker.config.tracking_password == stack_env["MLFLOW_TRACKING_PASSWORD"]
    if name == "kubernetes":
        orchestrator = stack.components[StackComponentType.ORCHESTRATOR][0]
        assert orchestrator.configuration["kubernetes_context"] == "kind-visionops"
        assert orchestrator.configuration["kubernetes_namespace"] == "visionops"
        registry = stack.components[StackComponentType.CONTAINER_REGISTRY][0]
        assert registry.configuration["uri"] == "localhost:5001/visionops"

    # Re-applying changes nothing; a new password updates only the secret.
    before = {c[0].name: c[0].updated for c in stack.components.values()}
    apply_stack(load_stack_spec(name, env_file=NO_ENV_FILE), activate=False)
    again = client.get_stack(name)
    assert again.updated == stack.updated
    assert {c[0].name: c[0].updated for c in again.components.values()} == before
    assert client.get_secret(f"{prefix}-s3").updated == secret.updated
    monkeypatch.setenv(password_var, "rotated-password")
    apply_stack(load_stack_spec(name, env_file=NO_ENV_FILE), activate=False)
    rotated = client.get_secret(f"{prefix}-s3", allow_partial_name_match=False)
    assert rotated.secret_values["aws_secret_access_key"] == "rotated-password"
    assert {
        c[0].name: c[0].updated for c in client.get_stack(name).components.values()
    } == before


# ---- services ---------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        code = {"/health": 200, "/broken": 503}.get(self.path, 404)
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_services_that_answer_pass(http_server: str, tmp_path: Path) -> None:
    unix_path = tmp_path / "daemon.sock"
    with (
        socket.socket() as tcp,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix,
    ):
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        unix.bind(str(unix_path))
        unix.listen()
        check_services(
            [
                ServiceSpec(name="mlflow", url=f"{http_server}/health"),
                # A 404 or 403 still proves a server is there (S3's root says 403).
                ServiceSpec(name="s3", url=f"{http_server}/bucket"),
                ServiceSpec(
                    name="db", url=f"postgresql://127.0.0.1:{tcp.getsockname()[1]}/x"
                ),
                ServiceSpec(name="docker", url=f"unix://{unix_path}"),
            ]
        )


def test_services_that_do_not_answer_are_named_with_what_to_do(
    http_server: str, tmp_path: Path
) -> None:
    port = _closed_port()
    with pytest.raises(StackError) as err:
        check_services(
            [
                ServiceSpec(name="mlflow", url=f"{http_server}/health"),
                ServiceSpec(
                    name="minio",
                    url=f"http://127.0.0.1:{port}/minio/health/live",
                    hint="docker compose up -d minio",
                ),
                ServiceSpec(name="proxy", url=f"{http_server}/broken"),
                ServiceSpec(name="docker", url=f"unix://{tmp_path}/missing.sock"),
            ],
            timeout=1.0,
        )
    lines = str(err.value).splitlines()
    minio = next(line for line in lines if "minio" in line)
    assert f"http://127.0.0.1:{port}/minio/health/live" in minio
    assert "docker compose up -d minio" in minio
    assert any("proxy" in line and "HTTP 503" in line for line in lines)
    assert any("docker" in line and "missing.sock" in line for line in lines)
    assert not any(line.strip().startswith("mlflow") for line in lines)
    assert "python run.py --stack local" in str(err.value)


def test_run_py_refuses_to_run_a_pipeline_when_a_service_is_down(
    tmp_path: Path,
    http_server: str,
    restore_active_stack: None,
    capsys: pytest.CaptureFixture,
) -> None:
    import run
    from visionops.app.stacks import check_active_stack

    port = _closed_port()
    path = tmp_path / "needs-mlflow.yaml"
    path.write_text(
        (REPO / "stacks" / "local.yaml").read_text().replace("name: local\n", "", 1)
        + "name: needs-mlflow\n"
        + "services:\n"
        + f"  - {{name: mlflow, url: 'http://127.0.0.1:{port}/health', "
        + "hint: docker compose up -d mlflow}\n"
    )
    assert run.main(["--stack", str(path)]) == 0
    capsys.readouterr()
    assert run.main(["--pipeline", "ingestion"]) == 2
    err = capsys.readouterr().err
    assert f"mlflow at http://127.0.0.1:{port}/health does not answer" in err
    assert "docker compose up -d mlflow" in err
    assert "Traceback" not in err

    # Once the service answers, the check passes.
    path.write_text(path.read_text().replace(f"127.0.0.1:{port}", http_server[7:]))
    apply_stack(load_stack_spec(str(path)))
    check_active_stack()


# ---- images for the container stacks ----------------------------------------------


def test_pipeline_settings_only_on_containerised_stacks(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    import docker
    from zenml.orchestrators.local_docker.local_docker_orchestrator import (
        LocalDockerOrchestratorSettings,
    )

    for name in ("local", "docker-cuda", "kubernetes"):
        apply_stack(load_stack_spec(name, env_file=NO_ENV_FILE), activate=False)
    assert vdocker.pipeline_settings("local") == {}
    assert set(vdocker.pipeline_settings("kubernetes")) == {"docker"}
    settings = vdocker.pipeline_settings("docker-cuda")
    assert set(settings) == {"docker", "orchestrator.local_docker"}
    assert settings["docker"].parent_image == vdocker.CUDA_PARENT_IMAGE

    # The run args survive ZenML's JSON round trip and docker-py turns them into
    # a request for every GPU and 8 GiB of shared memory.
    stored = settings["orchestrator.local_docker"].model_dump(mode="json")
    run_args = LocalDockerOrchestratorSettings.model_validate(stored).run_args
    host_config = docker.types.HostConfig(
        version="1.45",
        device_requests=run_args["device_requests"],
        shm_size=run_args["shm_size"],
    )
    assert host_config["DeviceRequests"] == [
        {
            "Driver": "",
            "Count": -1,
            "DeviceIDs": [],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]
    assert host_config["ShmSize"] == 8 * 1024**3
    # Containers on this machine write into its local stores: as whoever runs the
    # pipeline, group included (ZenML's default passes the uid alone).
    assert run_args["user"] == f"{os.getuid()}:{os.getgid()}"
    # A stack file that names a user keeps it; a pipeline's folders of this machine
    # join the stack's volumes, writable, at the same path.
    stack_args = {
        "user": "1234:1234",
        "volumes": {"/data": {"bind": "/d", "mode": "ro"}},
    }
    folder = tmp_path / "feedback"
    named = vdocker.local_docker_settings(stack_args, [folder])
    assert named.run_args == {
        "user": "1234:1234",
        "volumes": {
            "/data": {"bind": "/d", "mode": "ro"},
            str(folder): {"bind": str(folder), "mode": "rw"},
        },
    }
    assert folder.is_dir()


def test_generated_dockerfile_builds_a_cuda_image_with_the_pinned_project(
    stack_env: dict[str, str],
) -> None:
    """Renders the Dockerfile ZenML would build for docker-cuda, without an engine."""
    from zenml.client import Client
    from zenml.stack import Stack
    from zenml.utils.pipeline_docker_image_builder import (
        PipelineDockerImageBuilder,
    )

    apply_stack(load_stack_spec("docker-cuda", env_file=NO_ENV_FILE), activate=False)
    stack = Stack.from_model(Client().get_stack("docker-cuda"))
    settings = vdocker.pipeline_settings("docker-cuda")["docker"]
    files = PipelineDockerImageBuilder.gather_requirements_files(
        settings, stack, log=False
    )
    dockerfile = PipelineDockerImageBuilder._generate_zenml_pipeline_dockerfile(
        parent_image=settings.parent_image,
        docker_settings=settings,
        requirements_files=files,
        apt_packages=[*settings.apt_packages, *stack.apt_packages],
    )
    # Built with the build steps' containers removed, as the Docker CLI does.
    assert settings.build_config.build_options.to_docker_python_sdk_options() == {
        "rm": True
    }
    lines = dockerfile.splitlines()
    assert lines[0] == "FROM pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime"
    apt = next(line for line in lines if "apt-get install" in line)
    assert "'libgl1'" in apt and "'libglib2.0-0'" in apt
    installs = [line for line in lines if " -r .zenml_" in line]
    assert installs and all(
        line.startswith("RUN uv pip install") and "--system" in line
        for line in installs
    )
    requirements = dict((name, text) for name, text, _ in files)
    pinned = requirements[".zenml_user_requirements"].splitlines()
    assert {"torch==2.14.1", "ultralytics==8.4.190", "zenml[server]==0.98.0"} <= set(
        pinned
    )
    # The user requirements install last, so the project's pins win over the
    # ranges ZenML adds for the stack's integrations (mlflow, s3).
    assert installs[-1].endswith("-r .zenml_user_requirements")
    # The package itself, from the code copied into the image.
    copy_code = lines.index("COPY . .")
    assert lines[copy_code + 1 :].count("RUN uv pip install --system --no-deps .") == 1
    # The image runs as an unprivileged user (a cluster's pods, `docker run`), who
    # owns the code, from after the installs to the entrypoint.
    user = lines.index("USER 10001:10001")
    assert lines[user - 1] == "RUN chown -R 10001:10001 ."
    assert user > copy_code and not [x for x in lines[user:] if x.startswith("RUN ")]


def test_image_build_context_leaves_credentials_and_state_out(tmp_path: Path) -> None:
    from zenml.image_builders.build_context import BuildContext

    def context_files(root: Path) -> set[str]:
        context = BuildContext(
            root=str(root), dockerignore_file=str(vdocker.dockerignore_path())
        )
        return {f for f, path in context.get_files().items() if Path(path).is_file()}

    files = context_files(REPO)
    assert {"pyproject.toml", "run.py", "src/visionops/app/docker.py"} <= files
    assert {"configs/training.yaml", "pipelines/training.py"} <= files
    assert not [f for f in files if f.startswith((".venv/", ".git/", ".visionops/"))]

    # A checkout with credentials and local state in it.
    for name in (".env", ".env.local", ".venv/bin/python", ".visionops/zenml/x.db"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("secret")
    (tmp_path / "src" / "visionops").mkdir(parents=True)
    (tmp_path / "src" / "visionops" / "env.py").write_text("")
    (tmp_path / ".env.example").write_text("")
    assert context_files(tmp_path) == {"src/visionops/env.py", ".env.example"}


def test_a_component_is_found_by_its_whole_name(stack_env: dict[str, str]) -> None:
    """`docker` after `docker-cuda`: its orchestrator is a component of its own, not
    docker-cuda's, whose name merely starts with `docker` (found by prefix, it was
    then updated by name and failed)."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    apply_stack(load_stack_spec("docker-cuda", env_file=NO_ENV_FILE), activate=False)
    apply_stack(load_stack_spec("docker", env_file=NO_ENV_FILE), activate=False)
    orchestrators = {
        c.name: c.configuration
        for c in client.list_stack_components(type=StackComponentType.ORCHESTRATOR)
    }
    assert {"docker", "docker-cuda"} <= set(orchestrators)
    assert orchestrators["docker"]["run_args"] == {"shm_size": "2g"}
    assert "device_requests" not in str(orchestrators["docker"])
    assert "docker-cuda" in str(client.get_stack("docker-cuda").components)
