"""The `docker` stack run for real, by a user who is not root.

Ingestion and a 1-epoch training go through `run.py` on `stacks/docker.yaml`, each
step in a container on this machine's engine, with the step images built by ZenML
from `visionops.app.docker` on a CPU parent image built here (tests/docker_env.py).
The commands run as uid 10002 (no account here, in the Docker socket's group, its
own state folder), as a user of the stack runs them: the step containers run as
that user and leave nothing of root's in the user's stores. Needs a Docker engine
and root (to be another user): else skipped with the command that prepares it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import docker_env
from tests.conftest import TINY_TRAINING
from visionops.app.containers import invoking_user
from visionops.core.env import state_dir

REPO = Path(__file__).resolve().parents[2]
MODEL = "docker-detector"
# The bundled sample.
SOURCE = "data/sample/boards"
SAMPLE_ROOT = REPO / "data" / "sample"
# A user who is not root and has no account on this machine.
USER_ID = 10002
# The machines' Python may live under /root (mode 700, pyenv): the user may read
# and search any folder (CAP_DAC_READ_SEARCH, nothing else); it writes as itself.
READ_ANYWHERE = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]


@pytest.fixture(scope="module")
def docker_runs() -> Iterator[dict]:
    """Applies the docker stack and runs ingestion then training, as a user."""
    if os.geteuid() != 0:
        pytest.skip("becoming another user needs root: run the suite as root")
    with docker_env.engine_or_skip():
        parent = docker_env.build_parent_image()
        # Under /tmp: pytest's own temporary folders are root's alone.
        home = Path(tempfile.mkdtemp(prefix="visionops-user-"))
        try:
            user = _User(home, parent)
            before = docker_env.object_ids("ps", "-aq", "--no-trunc")
            # A source on this machine reaches the steps as a volume at the same
            # path (run.py passes it on as an absolute path), as docs/stacks.md
            # says: the user's copy of the stack file mounts it.
            user.run("run.py", "--stack", str(_stack_with_mount(home, SAMPLE_ROOT)))
            ingest = ["--pipeline", "ingestion", "--source", SOURCE]
            user.run("run.py", *ingest, "--set", "anonymize.enabled=false")
            train = ["--pipeline", "training", "--set", f"model.name={MODEL}"]
            for override in TINY_TRAINING:
                train += ["--set", override]
            user.run("run.py", *train)
            stores = json.loads(
                user.run(
                    "-m", "tests.pipelines.stack_report", MODEL, "ingestion", "training"
                ).stdout.splitlines()[-1]
            )
            new = docker_env.object_ids("ps", "-aq", "--no-trunc") - before
            inspected = json.loads(docker_env.docker("inspect", *new).stdout)
            images = {c["Image"] for c in inspected}
            yield {
                **stores,
                "containers": inspected,
                "images": json.loads(docker_env.docker("inspect", *images).stdout),
                "parent": parent,
                "home": home,
            }
        finally:
            shutil.rmtree(home, ignore_errors=True)


class _User:
    """Runs this checkout's Python as USER_ID, with its own state under `home`."""

    def __init__(self, home: Path, parent: str) -> None:
        for folder in (home, home / "home", home / "tmp", home / "no-repo"):
            folder.mkdir(exist_ok=True)
            os.chown(folder, USER_ID, USER_ID)
        # The test's own state (ZenML, MLflow, caches) stays out of the user's.
        mine = str(state_dir())
        self.env = {k: v for k, v in os.environ.items() if mine not in v}
        self.env.update(
            HOME=str(home / "home"),
            USER="visionops-user",
            LOGNAME="visionops-user",
            TMPDIR=str(home / "tmp"),
            VISIONOPS_STATE_DIR=str(home / "state"),
            ZENML_REPOSITORY_PATH=str(home / "no-repo"),
            VISIONOPS_PARENT_IMAGE=parent,
        )
        # The Docker socket's group, the one a user of the engine is in.
        self.groups = str(docker_env.SOCKET.stat().st_gid)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        become = ["setpriv", f"--reuid={USER_ID}", f"--regid={USER_ID}"]
        become += [f"--groups={self.groups}", *READ_ANYWHERE, "--"]
        result = subprocess.run(
            [*become, sys.executable, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, (
            args,
            result.stdout[-3000:],
            result.stderr[-5000:],
        )
        return result


def _stack_with_mount(home: Path, folder: Path) -> Path:
    """The docker stack file with `folder` mounted read-only into every step."""
    spec = yaml.safe_load((REPO / "stacks" / "docker.yaml").read_text())
    run_args = spec["components"]["orchestrator"]["configuration"]["run_args"]
    run_args["volumes"] = {str(folder): {"bind": str(folder), "mode": "ro"}}
    path = home / "docker.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _step_containers(containers: list[dict], snapshot: str) -> dict[str, dict]:
    """A snapshot's step containers, by step name (from their arguments)."""
    found: dict[str, dict] = {}
    for container in containers:
        args = container["Args"]
        if (
            "--snapshot_id" in args
            and args[args.index("--snapshot_id") + 1] == snapshot
        ):
            found[args[args.index("--step_name") + 1]] = container
    return found


def test_both_pipelines_completed_with_every_step_in_its_own_container(
    docker_runs: dict,
) -> None:
    for name in ("ingestion", "training"):
        run = docker_runs["runs"][name]
        assert run["status"] == "completed", name
        assert run["stack"] == "docker"
        containers = _step_containers(docker_runs["containers"], run["snapshot"])
        assert run["steps"] and set(containers) == set(run["steps"]), name
        for step, container in containers.items():
            assert run["steps"][step] == "completed"
            assert container["State"]["ExitCode"] == 0, step
            # No GPU request on the CPU stack; the stack file's shared memory.
            host = container["HostConfig"]
            assert not host.get("DeviceRequests"), step
            assert host["ShmSize"] == 2 * 1024**3
        # Each pipeline's steps ran in the image ZenML built for it.
        images = {c["Image"] for c in containers.values()}
        assert len(images) == 1
    # The image builds left no container of a build step behind: every container
    # the runs left is a step's.
    steps = [
        _step_containers(docker_runs["containers"], run["snapshot"])
        for run in docker_runs["runs"].values()
    ]
    assert len(docker_runs["containers"]) == sum(len(s) for s in steps)


def test_steps_ran_as_the_user_and_left_nothing_of_roots_in_their_stores(
    docker_runs: dict,
) -> None:
    """Containers as the invoking user, images whose own user is not root either."""
    steps = [
        container
        for run in docker_runs["runs"].values()
        for container in _step_containers(
            docker_runs["containers"], run["snapshot"]
        ).values()
    ]
    assert len(steps) > 5
    for container in steps:
        assert container["Config"]["User"] == f"{USER_ID}:{USER_ID}"
    images = {container["Image"] for container in steps}
    assert images <= {image["Id"] for image in docker_runs["images"]}
    for image in docker_runs["images"]:
        if image["Id"] in images:
            assert image["Config"]["User"] == "10001:10001"
    # The steps wrote artifacts, the MLflow and ZenML databases and the weights
    # into the user's stores (mounted from here): all of it is the user's.
    state = docker_runs["home"] / "state"
    written = [p for p in state.rglob("*") if not p.is_symlink()]
    artifacts = [p for p in written if "local_stores" in p.parts and p.is_file()]
    assert len(artifacts) > 20
    assert [str(p) for p in written if p.stat().st_uid != USER_ID] == []


def test_training_in_containers_logged_to_mlflow_and_set_the_champion(
    docker_runs: dict,
) -> None:
    run = docker_runs["runs"]["training"]
    candidates = [
        c for c in docker_runs["candidates"] if c["pipeline_run"] == run["id"]
    ]
    assert candidates
    assert "val_map50_95" in candidates[0]["metrics"]
    assert candidates[0]["history"] > 0
    assert docker_runs["champion_run"] == run["id"]


def test_docker_stack_shares_the_local_stores_and_requests_no_gpu() -> None:
    """Without an engine: the stack file registers and its settings are the CPU ones."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    from visionops.app import docker as vdocker
    from visionops.app.stacks import apply_stack, load_stack_spec

    apply_stack(load_stack_spec("docker", env_file=Path("/nonexistent/.env")))
    apply_stack(load_stack_spec("local", env_file=Path("/nonexistent/.env")))
    stacks = {name: Client().get_stack(name) for name in ("docker", "local")}
    for kind in (
        StackComponentType.ARTIFACT_STORE,
        StackComponentType.EXPERIMENT_TRACKER,
    ):
        assert (
            stacks["docker"].components[kind][0].id
            == stacks["local"].components[kind][0].id
        )
    settings = vdocker.pipeline_settings("docker")
    # The stack file's run args (no GPU request), as the invoking user.
    run_args = settings["orchestrator.local_docker"].run_args
    assert run_args == {"shm_size": "2g", "user": invoking_user()}
    docker_settings = settings["docker"]
    assert docker_settings.environment["UV_NO_BUILD_ISOLATION"] == "1"
    orchestrator = stacks["docker"].components[StackComponentType.ORCHESTRATOR][0]
    assert orchestrator.configuration["run_args"] == {"shm_size": "2g"}
