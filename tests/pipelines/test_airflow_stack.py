"""The `airflow` stack run for real: a local Airflow runs the pipelines' DAGs, each
step a DockerOperator container on this machine's engine.

`python run.py --airflow` starts Airflow (its venv installed on first use, then kept
in `.visionops/airflow/venv` of the checkout, like the Docker wheelhouse), ingestion
and a 1-epoch training go through `run.py` on `stacks/airflow.yaml` with the step
images built on the CPU parent image of the docker stack's test, a one-minute
schedule of the ingestion fires and is removed, and so does one of the feedback
loop (`--pipeline loop`: its drift report and review batch through Airflow). Needs
a Docker engine: started when root, else skipped with the command that prepares it,
like tests/pipelines/test_docker_stack.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from pathlib import Path

import pytest

from tests import docker_env
from tests.conftest import TINY_TRAINING
from tests.feedback.test_review import _boards, _keep
from tests.pipelines.test_docker_stack import _step_containers
from visionops.feedback.store import FeedbackStore

REPO = Path(__file__).resolve().parents[2]
MODEL = "airflow-detector"
SOURCE = "data/sample/boards"
SAMPLE_ROOT = REPO / "data" / "sample"
# Kept between runs (minutes to install); tests/conftest.py's TEST_CACHES.
AIRFLOW_VENV = REPO / ".visionops" / "airflow" / "venv"
CRON = "* * * * *"
NOTHING: dict = {"detections": []}  # what the champion found on a kept image


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def airflow_runs(
    monkeypatch_module: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """Starts Airflow, applies the airflow stack, runs and schedules pipelines."""
    from zenml.client import Client
    from zenml.utils import source_utils

    import run
    from visionops.app import airflow

    with docker_env.engine_or_skip():
        parent = docker_env.build_parent_image()
        monkeypatch_module.setenv("VISIONOPS_PARENT_IMAGE", parent)
        monkeypatch_module.setenv(airflow.VENV_ENV, str(AIRFLOW_VENV))
        monkeypatch_module.setenv(airflow.PORT_ENV, str(_free_port()))
        source_utils.set_custom_source_root(str(REPO))
        started = time.monotonic()
        try:
            assert run.main(["--airflow"]) == 0
            server = airflow.running()
            assert server is not None
            api = airflow.AirflowClient(server)
            before = docker_env.object_ids("ps", "-aq", "--no-trunc")
            assert run.main(["--stack", "airflow"]) == 0
            _mount_into_steps(SAMPLE_ROOT)
            ingest = ["--pipeline", "ingestion", "--source", SOURCE]
            ingest += ["--set", "anonymize.enabled=false"]
            said = io.StringIO()
            with contextlib.redirect_stdout(said):
                assert run.main(ingest) == 0
            train = ["--pipeline", "training", "--set", f"model.name={MODEL}"]
            for override in TINY_TRAINING:
                train += ["--set", override]
            assert run.main(train) == 0
            client = Client()
            runs = {
                name: client.get_pipeline(name).last_run
                for name in ("ingestion", "training")
            }

            # A one-minute schedule of the ingestion: it fires, then goes.
            ingestion = _fire_once(api, ingest, "ingestion", timeout=600)

            # A one-minute schedule of the loop: run.py on this machine runs the
            # drift report and the review through Airflow, each step in a container
            # that mounts this machine's feedback store (and the batch's folder).
            feedback = tmp_path_factory.mktemp("feedback")
            store = FeedbackStore(feedback / "store")
            kept = [
                _keep(
                    store, image, "detect", NOTHING, model=MODEL, version="1", offset=n
                )
                for n, (image, _) in enumerate(_boards(3))
            ]
            loop = ["--pipeline", "loop", "--set", f"model.name={MODEL}"]
            for key in ("drift.store", "review.store"):
                loop += ["--set", f"{key}={store.root}"]
            loop += ["--set", f"review.target={feedback / 'review'}"]
            loop += ["--set", f"drift.output_dir={feedback / 'drift'}"]
            looped = _fire_once(api, loop, "loop", timeout=900)
            looped["log"] = _task_log(airflow.dag_id(looped["name"]), looped["fired"])
            for name in ("drift", "review"):
                runs[name] = client.get_pipeline(name).last_run
            dags = {d["dag_id"]: d for d in api.call("GET", "/dags")["dags"]}
            dag_runs = {dag: api.dag_runs(dag) for dag in dags}
            new = docker_env.object_ids("ps", "-aq", "--no-trunc") - before
            inspected = json.loads(docker_env.docker("inspect", *new).stdout)
            yield {
                "server": server,
                "api": api,
                "runs": runs,
                "dags": dags,
                "dag_runs": dag_runs,
                "containers": inspected,
                "schedule": ingestion["name"],
                "scheduled": ingestion["scheduled"],
                "ingestion_said": said.getvalue(),
                "kept": kept,
                "store": store,
                "review_dir": feedback / "review",
                "listed": ingestion["listed"],
                "fired": ingestion["fired"],
                "after_unschedule": ingestion["after_unschedule"],
                "loop": looped,
                "seconds": time.monotonic() - started,
            }
        finally:
            run.main(["--airflow", "stop"])
            run.main(["--stack", "local"])
            source_utils.set_custom_source_root(None)


def _mount_into_steps(folder: Path) -> None:
    """The sample on this machine reaches the step containers at the same path,
    and the containers stay to be inspected."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    kind = StackComponentType.ORCHESTRATOR
    orchestrator = client.get_stack_component(kind, "airflow")
    args = dict(orchestrator.configuration["operator_args"])
    mount = {"source": str(folder), "target": str(folder), "type": "bind"}
    args["mounts"] = [{**mount, "read_only": True}]
    # Kept for the assertions below (by default a container that succeeded goes).
    args["auto_remove"] = "never"
    client.update_stack_component(
        "airflow", kind, configuration={"operator_args": args}
    )


def _fire_once(api, command: list[str], what: str, timeout: float) -> dict:
    """Schedules a `run.py` command every minute, waits for its first successful
    run, and removes the schedule: what it said, listed and fired."""
    import run
    from visionops.app import airflow, schedules

    said, status = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(said):
        assert run.main([*command, "--schedule", CRON]) == 0
    name = schedules.schedule_name(what, CRON)
    with contextlib.redirect_stdout(status):
        assert run.main(["--status", "--json"]) == 0
    fired = _wait_for_success(api, airflow.dag_id(name), timeout=timeout)
    assert run.main(["--unschedule", name]) == 0
    return {
        "name": name,
        "scheduled": said.getvalue(),
        "listed": json.loads(status.getvalue())["schedules"],
        "fired": fired,
        "after_unschedule": schedules.active_schedules(),
    }


def _task_log(dag: str, dag_run: dict) -> str:
    """What the task of a launcher's DAG run wrote (run.py's output)."""
    from visionops.app import airflow

    folder = airflow.home() / "logs" / f"dag_id={dag}"
    logs = sorted(folder.glob(f"run_id={dag_run['dag_run_id']}/task_id=*/*.log"))
    return "\n".join(p.read_text(errors="replace") for p in logs)


def _wait_for_success(api, dag: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [r for r in api.dag_runs(dag) if r["state"] == "success"]
        if done:
            return done[0]
        time.sleep(5)
    raise AssertionError(f"the schedule's DAG {dag} had no successful run")


def test_each_pipeline_is_one_successful_airflow_dag_run(airflow_runs: dict) -> None:
    from zenml.enums import ExecutionStatus

    for name, run in airflow_runs["runs"].items():
        assert run.status == ExecutionStatus.COMPLETED, name
        assert run.stack.name == "airflow"
        # The DAG ZenML wrote for this run, as Airflow's API reports it.
        dags = [d for d in airflow_runs["dags"] if d.startswith(f"{name}-")]
        assert len(dags) == 1, dags
        dag_runs = airflow_runs["dag_runs"][dags[0]]
        assert [r["state"] for r in dag_runs] == ["success"]
        assert run.orchestrator_run_id == dag_runs[0]["dag_run_id"]
        tasks = airflow_runs["api"].task_instances(dags[0], dag_runs[0]["dag_run_id"])
        assert {t["task_id"]: t["state"] for t in tasks} == dict.fromkeys(
            run.steps, "success"
        )
        assert {t["operator"] for t in tasks} == {"DockerOperator"}
    # run.py waited for the ingestion's DAG and said how it ended.
    ingestion = airflow_runs["runs"]["ingestion"]
    assert (
        f"succeeded: ZenML run {ingestion.name}, {len(ingestion.steps)} steps"
        in airflow_runs["ingestion_said"]
    )


def test_every_step_ran_in_its_own_container(airflow_runs: dict) -> None:
    for name, run in airflow_runs["runs"].items():
        containers = _step_containers(airflow_runs["containers"], str(run.snapshot.id))
        assert set(containers) == set(run.steps), name
        assert len({c["Id"] for c in containers.values()}) == len(run.steps)
        for step, container in containers.items():
            assert container["State"]["ExitCode"] == 0, step
            env = dict(e.split("=", 1) for e in container["Config"]["Env"])
            assert env["ZENML_AIRFLOW_RUN_ID"] == run.orchestrator_run_id
            host = container["HostConfig"]
            assert host["ShmSize"] == 2 * 1024**3  # the stack file's
            targets = {m["Target"] for m in host["Mounts"]}
            assert str(SAMPLE_ROOT) in targets and env["ZENML_LOCAL_STORES_PATH"]
            assert env["ZENML_LOCAL_STORES_PATH"] in targets
            # As the user who ran the pipeline (and Airflow): the DockerOperator's
            # `user`, not the image's own (tests/pipelines/test_docker_stack.py).
            assert container["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        # No image came from a registry: each is the one ZenML built here.
        images = {c["Config"]["Image"] for c in containers.values()}
        assert len(images) == 1
        assert all(":" in i and "/" not in i.split(":")[0] for i in images)


def test_review_through_airflow_read_this_machines_store_and_wrote_here(
    airflow_runs: dict,
) -> None:
    """The records are this machine's files: mounted, the step container sees them."""
    (batch,) = airflow_runs["review_dir"].iterdir()
    said = airflow_runs["loop"]["log"]  # the scheduled loop's run.py
    assert f"Review batch: 3 image(s) of {MODEL} (detect) -> {batch}" in said
    images = sorted(p.stem for p in (batch / "train" / "images").iterdir())
    assert images == sorted(airflow_runs["kept"])
    assert airflow_runs["store"].reviewed_ids() == set(airflow_runs["kept"])
    run = airflow_runs["runs"]["review"]
    (container,) = _step_containers(
        airflow_runs["containers"], str(run.snapshot.id)
    ).values()
    mounts = {m["Source"]: m for m in container["HostConfig"]["Mounts"]}
    for folder in (airflow_runs["store"].root, airflow_runs["review_dir"]):
        assert mounts[str(folder)]["Target"] == str(folder)
        assert not mounts[str(folder)].get("ReadOnly")  # omitted when false


def test_training_through_airflow_logged_to_mlflow_and_set_the_champion(
    airflow_runs: dict,
) -> None:
    import mlflow

    run = airflow_runs["runs"]["training"]
    experiment = mlflow.get_experiment_by_name("training")
    runs = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`zenml.pipeline_run_id` = '{run.id}'",
        output_format="list",
    )
    candidate = next(r for r in runs if "candidate" in r.data.tags)
    assert "val_map50_95" in candidate.data.metrics
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["zenml.pipeline_run_id"] == str(run.id)


def test_a_one_minute_schedule_fired_and_was_removed(airflow_runs: dict) -> None:
    from zenml.client import Client
    from zenml.enums import ExecutionStatus

    from visionops.app import airflow

    name = airflow_runs["schedule"]
    # What it said: the name, when, that the parameters are fixed now, how to remove.
    said = airflow_runs["scheduled"]
    assert f"Scheduled ingestion as {name} ({CRON}, UTC)" in said
    assert "parameters as resolved above, now" in said
    assert f"python run.py --unschedule {name}" in said
    # As `--status --json` listed it while it was active.
    assert [s["name"] for s in airflow_runs["listed"]] == [name]
    assert airflow_runs["listed"][0]["cron"] == CRON
    assert airflow_runs["listed"][0]["pipeline"] == "ingestion"
    # Airflow's scheduled run made a ZenML run of the ingestion, which completed.
    fired = airflow_runs["fired"]
    assert fired["run_type"] == "scheduled"
    zenml_runs = Client().list_pipeline_runs(orchestrator_run_id=fired["dag_run_id"])
    assert [r.status for r in zenml_runs] == [ExecutionStatus.COMPLETED]
    # Removed: no active schedule, no DAG file, no DAG in Airflow.
    assert airflow_runs["after_unschedule"] == []
    assert not (airflow.dags_folder() / f"{name}.zip").exists()
    with pytest.raises(LookupError):
        airflow_runs["api"].call("GET", f"/dags/{name}")


def test_the_loops_schedule_ran_drift_and_review_and_was_removed(
    airflow_runs: dict,
) -> None:
    """Airflow ran run.py's loop on its schedule: the drift report and the review
    (each a DAG of its own, its step in a container), then no retraining (the
    champion's dataset is the latest); then it was removed."""
    from visionops.app import airflow

    loop = airflow_runs["loop"]
    name = loop["name"]
    said = loop["scheduled"]
    assert f"Scheduled loop as {name} ({CRON}, UTC)" in said
    assert f"python run.py --unschedule {name}" in said
    listed = [s for s in loop["listed"] if s["name"] == name]
    assert listed == [
        {
            "name": name,
            "pipeline": "loop",
            "cron": CRON,
            "interval_s": None,
            "orchestrator": "airflow (run.py)",
        }
    ]
    assert loop["fired"]["run_type"] == "scheduled"
    log = loop["log"]
    for pipeline in ("drift", "review"):
        run = airflow_runs["runs"][pipeline]
        assert f"ZenML run {run.name}, {len(run.steps)} steps" in log
    assert "Drift: no verdict" in log  # three records: too few for one
    assert f"No retraining of {MODEL} (champion v1) on dataset v" in log
    assert "was trained on already (model version 1)" in log
    (report,) = (airflow_runs["review_dir"].parent / "drift").iterdir()
    assert json.loads((report / "drift.json").read_text())["verdict"] is None
    assert loop["after_unschedule"] == []
    assert not airflow.launcher_path(name).exists()
    with pytest.raises(LookupError):
        airflow_runs["api"].call("GET", f"/dags/{name}")


def test_airflow_listens_on_loopback_only(airflow_runs: dict) -> None:
    """The API server on 127.0.0.1; no log server on every interface (8793, 8794)."""
    import psutil

    from visionops.app import airflow

    pid = int((airflow.folder() / "standalone.pid").read_text())
    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    listening = {
        (c.laddr.ip, c.laddr.port)
        for p in tree
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert ("127.0.0.1", int(os.environ[airflow.PORT_ENV])) in listening
    assert {ip for ip, _ in listening} <= {"127.0.0.1", "::1"}, listening


def test_a_stalled_scheduler_fails_the_wait_instead_of_hanging(
    airflow_runs: dict,
) -> None:
    """A run nobody can finish is not waited for until the 24-hour timeout.

    The scheduler is stopped (SIGSTOP: its heartbeat stops, as when it died or its
    database sat on a full disk, which `airflow standalone` does not notice).
    """
    import signal

    import psutil

    from visionops.app import airflow

    pid = int((airflow.folder() / "standalone.pid").read_text())
    # `airflow standalone` starts each component as a child: `airflow scheduler ...`.
    (scheduler,) = [
        p for p in psutil.Process(pid).children() if "scheduler" in p.cmdline()
    ]
    scheduler.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(airflow.AirflowError) as err:
            airflow_runs["api"].wait_for_run(
                "never-written", timeout=1200, poll=2, unhealthy_for=5
            )
    finally:
        scheduler.send_signal(signal.SIGCONT)
    message = str(err.value)
    assert "Airflow's scheduler unhealthy for over 5 s" in message
    assert str(airflow.log_file()) in message


def test_stopping_airflow_leaves_nothing_running(airflow_runs: dict) -> None:
    import run
    from visionops.app import airflow
    from visionops.app.dashboards import port_open

    print(f"Airflow test: {airflow_runs['seconds']:.0f} s from start to unschedule")
    pid = int((airflow.folder() / "standalone.pid").read_text())
    assert run.main(["--airflow", "stop"]) == 0
    assert airflow.running() is None
    assert not port_open(int(os.environ[airflow.PORT_ENV]))
    from visionops.core.background import group_alive

    assert not group_alive(pid)
