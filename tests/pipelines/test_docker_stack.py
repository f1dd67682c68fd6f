"""The `docker` stack run for real: every step in a container on this machine's engine.

Ingestion and a 1-epoch training go through `run.py` on `stacks/docker.yaml`, with
the step images built by ZenML from `visionops.app.docker` on a CPU parent image built
here (tests/docker_env.py). Needs a Docker engine: started when root, else skipped
with the command that prepares it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import docker_env
from tests.conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[2]
MODEL = "docker-detector"
# The bundled sample.
SOURCE = "data/sample/boards"
SAMPLE_ROOT = REPO / "data" / "sample"


@pytest.fixture(scope="module")
def docker_runs(monkeypatch_module: pytest.MonkeyPatch) -> dict:
    """Applies the docker stack and runs ingestion then training in containers."""
    from zenml.client import Client
    from zenml.utils import source_utils

    import run

    with docker_env.engine_or_skip():
        parent = docker_env.build_parent_image()
        monkeypatch_module.setenv("VISIONOPS_PARENT_IMAGE", parent)
        # The build context and the sources' root, as with `python run.py`; under
        # pytest ZenML would take pytest's own folder (that of the main module).
        source_utils.set_custom_source_root(str(REPO))
        try:
            before = docker_env.object_ids("ps", "-aq", "--no-trunc")
            assert run.main(["--stack", "docker"]) == 0
            # A source on this machine reaches the steps as a volume at the same
            # path (run.py passes it on as an absolute path), as the README says.
            _mount_into_steps(SAMPLE_ROOT)
            ingest = ["--pipeline", "ingestion", "--source", SOURCE]
            assert run.main([*ingest, "--set", "anonymize.enabled=false"]) == 0
            train = ["--pipeline", "training", "--set", f"model.name={MODEL}"]
            for override in TINY_TRAINING:
                train += ["--set", override]
            assert run.main(train) == 0
            client = Client()
            new = docker_env.object_ids("ps", "-aq", "--no-trunc") - before
            inspected = json.loads(docker_env.docker("inspect", *new).stdout)
            yield {
                "ingestion": client.get_pipeline("ingestion").last_run,
                "training": client.get_pipeline("training").last_run,
                "containers": inspected,
                "parent": parent,
            }
        finally:
            run.main(["--stack", "local"])
            source_utils.set_custom_source_root(None)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _mount_into_steps(folder: Path) -> None:
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    orchestrator = client.get_stack_component(StackComponentType.ORCHESTRATOR, "docker")
    run_args = dict(orchestrator.configuration["run_args"])
    run_args["volumes"] = {str(folder): {"bind": str(folder), "mode": "ro"}}
    client.update_stack_component(
        "docker", StackComponentType.ORCHESTRATOR, configuration={"run_args": run_args}
    )


def _step_containers(containers: list[dict], run) -> dict[str, dict]:
    """The containers that ran `run`'s steps, by step name (from their arguments)."""
    snapshot = str(run.snapshot.id)
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
    from zenml.enums import ExecutionStatus

    for name in ("ingestion", "training"):
        run = docker_runs[name]
        assert run.status == ExecutionStatus.COMPLETED, name
        assert run.stack.name == "docker"
        containers = _step_containers(docker_runs["containers"], run)
        steps = set(run.steps)
        assert steps and set(containers) == steps, name
        for step, container in containers.items():
            assert run.steps[step].status == ExecutionStatus.COMPLETED
            assert container["State"]["ExitCode"] == 0, step
            # No GPU request on the CPU stack; the stack file's shared memory.
            host = container["HostConfig"]
            assert not host.get("DeviceRequests"), step
            assert host["ShmSize"] == 2 * 1024**3
        # Each pipeline's steps ran in the image ZenML built for it.
        images = {c["Image"] for c in containers.values()}
        assert len(images) == 1


def test_training_in_containers_logged_to_mlflow_and_set_the_champion(
    docker_runs: dict,
) -> None:
    import mlflow

    run = docker_runs["training"]
    experiment = mlflow.get_experiment_by_name("training")
    runs = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`zenml.pipeline_run_id` = '{run.id}'",
        output_format="list",
    )
    assert runs
    candidate = next(r for r in runs if "candidate" in r.data.tags)
    assert "val_map50_95" in candidate.data.metrics
    assert mlflow.MlflowClient().get_metric_history(
        candidate.info.run_id, "metrics/mAP50-95B"
    )
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["zenml.pipeline_run_id"] == str(run.id)


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
    assert set(settings) == {"docker"}  # no GPU request from the pipeline settings
    docker_settings = settings["docker"]
    assert docker_settings.environment["UV_NO_BUILD_ISOLATION"] == "1"
    orchestrator = stacks["docker"].components[StackComponentType.ORCHESTRATOR][0]
    assert orchestrator.configuration["run_args"] == {"shm_size": "2g"}
