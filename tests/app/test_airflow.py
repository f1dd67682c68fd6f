"""The Airflow stacks without Airflow: registration, settings, DAG generator, checks."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from tests.app.test_stacks import NO_ENV_FILE, STACK_ENV
from visionops.app import airflow, airflow_dag
from visionops.app import docker as vdocker
from visionops.app.stacks import (
    StackError,
    apply_stack,
    check_active_stack,
    load_stack_spec,
)
from visionops.core.env import project_root

AIRFLOW_ENV = {
    **STACK_ENV,
    "AWS_ACCESS_KEY_ID": "aws-key",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-1",
    "AIRFLOW_DAGS_URI": "s3://airflow/dags",
    "AIRFLOW_API_URL": "http://127.0.0.1:8080",
}


@pytest.fixture
def airflow_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in AIRFLOW_ENV.items():
        monkeypatch.setenv(key, value)
    return AIRFLOW_ENV


@pytest.fixture
def restore_active_stack():
    from zenml.client import Client

    active = Client().active_stack_model.name
    yield
    Client().activate_stack(active)


def _components(name: str) -> dict[str, object]:
    from zenml.client import Client

    stack = Client().get_stack(name)
    return {t.value: c[0] for t, c in stack.components.items()}


def test_airflow_stacks_share_the_stores_of_their_twins(airflow_env) -> None:
    """airflow: the local stack's stores; airflow-server: the server stack's;
    kubernetes-airflow: the kubernetes stack's, with a registry and pods."""
    for name in (
        "local",
        "server",
        "kubernetes",
        "airflow",
        "airflow-server",
        "kubernetes-airflow",
    ):
        apply_stack(load_stack_spec(name, env_file=NO_ENV_FILE), activate=False)
    for stack, twin in (
        ("airflow", "local"),
        ("airflow-server", "server"),
        ("kubernetes-airflow", "kubernetes"),
    ):
        mine, theirs = _components(stack), _components(twin)
        assert mine["orchestrator"].flavor_name == "airflow"
        for kind in ("artifact_store", "experiment_tracker"):
            assert mine[kind].id == theirs[kind].id, (stack, kind)
    local = _components("airflow")["orchestrator"].configuration
    assert local["local"] is True
    assert local["operator"] == airflow_dag._DOCKER_OPERATOR
    assert local["operator_args"] == {"shm_size": 2 * 1024**3}
    remote = _components("kubernetes-airflow")
    assert (
        remote["container_registry"].id
        == _components("kubernetes")["container_registry"].id
    )
    # Applying again changes nothing (the stored values are the file's).
    before = {n: _components(n)["orchestrator"].updated for n in ("airflow",)}
    apply_stack(load_stack_spec("airflow", env_file=NO_ENV_FILE), activate=False)
    assert {n: _components(n)["orchestrator"].updated for n in before} == before
    config = remote["orchestrator"].configuration
    assert config["local"] is False
    assert config["dag_output_dir"] == "s3://airflow/dags"
    assert config["operator"].endswith("operators.pod.KubernetesPodOperator")
    assert config["operator_args"] == {"namespace": "visionops"}


def test_airflow_stack_validates_for_a_remote_airflow(airflow_env) -> None:
    """ZenML's own check of a remote Airflow stack: a registry, no local part."""
    from zenml.client import Client
    from zenml.stack import Stack

    apply_stack(load_stack_spec("kubernetes-airflow", env_file=NO_ENV_FILE), False)
    stack = Stack.from_model(Client().get_stack("kubernetes-airflow"))
    stack.validate()  # raises StackValidationError when a component is local


def test_pipeline_settings_name_the_dag_generator_and_the_dags_folder(
    airflow_env,
) -> None:
    for name in ("airflow", "kubernetes-airflow"):
        apply_stack(load_stack_spec(name, env_file=NO_ENV_FILE), activate=False)
    settings = vdocker.pipeline_settings("airflow")
    assert set(settings) == {"docker", "orchestrator.airflow"}
    local = settings["orchestrator.airflow"]
    assert local.custom_dag_generator == "visionops.app.airflow_dag"
    assert local.dag_output_dir == str(airflow.dags_folder())
    # The stack's operator args, and the steps' containers on this machine's engine
    # run as the user who runs the pipeline (they write into the local stores) and
    # go once they succeeded (a failed one stays for its logs).
    user = f"{os.getuid()}:{os.getgid()}"
    assert local.operator_args == {
        "shm_size": 2 * 1024**3,
        "user": user,
        "auto_remove": "success",
    }
    # A remote Airflow's DAGs go where its stack file says.
    remote = vdocker.pipeline_settings("kubernetes-airflow")["orchestrator.airflow"]
    assert remote.custom_dag_generator == "visionops.app.airflow_dag"
    assert remote.dag_output_dir is None
    assert "operator_args" not in remote.model_dump(exclude_unset=True)


def test_a_dead_airflow_is_named_before_any_work(
    airflow_env, monkeypatch: pytest.MonkeyPatch, restore_active_stack
) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(airflow.PORT_ENV, str(port))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    apply_stack(load_stack_spec("airflow", env_file=NO_ENV_FILE))
    with pytest.raises(StackError) as err:
        check_active_stack(timeout=1)
    message = str(err.value)
    assert f"airflow at http://127.0.0.1:{port}/api/v2/monitor/health" in message
    assert "python run.py --airflow" in message


@pytest.mark.parametrize(
    ("pipeline", "does"),
    [
        ("drift", "reads the prediction records in"),
        ("review", "reads the prediction records in"),
        ("batch", "records each image (feedback.record=false: none) in"),
    ],
)
def test_pipelines_with_the_records_refuse_steps_in_containers_elsewhere(
    pipeline: str, does: str, airflow_env, restore_active_stack, tmp_path: Path
) -> None:
    """The records are files of this machine: a pod on a cluster would not see
    them, nor keep what a batch recorded."""
    from visionops.app import preflight
    from visionops.config import ConfigError, load_parameters

    apply_stack(load_stack_spec("kubernetes-airflow", env_file=NO_ENV_FILE))
    params = load_parameters(pipeline, overrides=[f"store={tmp_path}"])
    check = {
        "drift": preflight.check_drift,
        "review": preflight.check_review,
        "batch": preflight.check_batch,
    }
    with pytest.raises(ConfigError) as err:
        check[pipeline](params)
    message = str(err.value)
    assert f"{pipeline} pipeline {does} {tmp_path} on this machine" in message
    assert "airflow orchestrator" in message
    assert "python run.py --stack local" in message


def test_review_on_the_local_airflow_gets_this_machines_folders_mounted(
    airflow_env, restore_active_stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps in containers on this engine see the store and the batch's folder."""
    from visionops.app import preflight, registry
    from visionops.config import load_parameters

    apply_stack(load_stack_spec("airflow", env_file=NO_ENV_FILE))
    monkeypatch.chdir(tmp_path)  # relative paths are the project root's, not the cwd's
    params = load_parameters(
        "review", overrides=["store=.visionops/feedback-x", "target=outputs/rev-x"]
    )
    params = preflight.check_review(params)
    root = project_root()
    assert params.store == str(root / ".visionops" / "feedback-x")
    assert params.target == str(root / "outputs" / "rev-x")
    folders = registry.PIPELINES["review"].folders(params)
    assert folders == [Path(params.store), Path(params.target)]

    here = [tmp_path / "store", tmp_path / "batch"]
    settings = vdocker.pipeline_settings("airflow", here)
    mounts = settings["orchestrator.airflow"].operator_args["mounts"]
    assert mounts == [
        {"source": str(p), "target": str(p), "type": "bind", "read_only": False}
        for p in here
    ]
    assert all(p.is_dir() for p in here)  # made here, as the user, before Docker


def test_run_py_refuses_a_schedule_where_the_orchestrator_cannot(
    capsys: pytest.CaptureFixture[str], restore_active_stack
) -> None:
    import run

    assert run.main(["--stack", "local"]) == 0
    code = run.main(["--pipeline", "ingestion", "--schedule", "0 3 * * *"])
    assert code == 2
    assert "cannot run schedules" in capsys.readouterr().err
    assert run.main(["--schedule", "0 3 * * *"]) == 2
    assert "--schedule goes with --pipeline" in capsys.readouterr().err


def test_unschedule_names_the_active_schedules() -> None:
    from visionops.app.schedules import ScheduleError, unschedule

    with pytest.raises(ScheduleError, match="active schedules: none"):
        unschedule("nightly")


def test_schedule_names_are_dag_ids() -> None:
    from visionops.app.schedules import schedule_name

    assert schedule_name("training", "0 3 * * *") == "training-0_3_x_x_x"
    assert schedule_name("drift", "*/15 * * * 1-5") == "drift-x_15_x_x_x_1-5"
    assert airflow.run_dag_id("training").startswith("training-")


def test_a_schedule_dag_runs_one_run_at_a_time_and_a_run_gets_its_own_dag() -> None:
    base = airflow.orchestrator_settings({"local": True})
    scheduled, dag = airflow.with_dag(base, "training", "training-0_3_x_x_x")
    assert dag == scheduled.dag_id == "training-0_3_x_x_x"
    assert scheduled.dag_args == {"max_active_runs": 1}
    first, one = airflow.with_dag(base, "training", None)
    second, other = airflow.with_dag(base, "training", None)
    assert one != other and first.dag_id == one and first.dag_args == {}
    assert airflow.writes_here(first)


def test_dag_generator_adds_mounts_to_the_local_stores(tmp_path: Path) -> None:
    """A stack's `mounts` join the stores' mount; ZenML's generator replaced it."""
    task = airflow_dag.TaskConfiguration(
        id="trainer",
        zenml_step_name="trainer",
        upstream_steps=[],
        docker_image="zenml:training",
        command=["python", "-m", "zenml.entrypoints.entrypoint"],
        arguments=["--step_name", "trainer"],
        environment={"ZENML_STORE_URL": "sqlite:///x"},
        operator_source=airflow_dag._DOCKER_OPERATOR,
        operator_args={
            "shm_size": 2 * 1024**3,
            "mounts": [{"source": "/data", "target": "/data", "type": "bind"}],
        },
    )
    dag = airflow_dag.DagConfiguration(
        id="training-1",
        tasks=[task],
        local_stores_path=str(tmp_path),
        schedule="@once",
        start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    )
    # Through JSON, as the DAG file carries it.
    dag = airflow_dag.DagConfiguration.model_validate_json(dag.model_dump_json())
    kwargs = airflow_dag.docker_operator_kwargs(dag, dag.tasks[0])
    assert [(m["Source"], m["Target"]) for m in kwargs["mounts"]] == [
        (str(tmp_path), str(tmp_path)),
        ("/data", "/data"),
    ]
    assert kwargs["shm_size"] == 2 * 1024**3
    assert kwargs["command"][-2:] == ["--step_name", "trainer"]
    assert kwargs["environment"]["ZENML_AIRFLOW_RUN_ID"] == "{{run_id}}"
    assert kwargs["environment"]["ZENML_LOCAL_STORES_PATH"] == str(tmp_path)
    assert kwargs["environment"]["ZENML_STORE_URL"] == "sqlite:///x"


def test_airflow_environment_binds_loopback_and_reads_our_dags() -> None:
    env = airflow.environment(18080)
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(airflow.dags_folder())
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == (
        "http://127.0.0.1:18080/execution/"
    )
    assert env["AIRFLOW_HOME"].startswith(str(airflow.folder()))
    first, second = env["PATH"].split(":")[:2]
    assert (first, second) == (
        str(airflow.folder() / "bin"),
        str(airflow.venv_dir() / "bin"),
    )


def test_the_airflow_shim_starts_scheduler_and_triggerer_without_log_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`airflow standalone` finds the shim first on PATH; it adds the flag."""
    import subprocess

    monkeypatch.setenv(airflow.VENV_ENV, str(tmp_path / "venv"))
    real = tmp_path / "venv" / "bin" / "airflow"
    real.parent.mkdir(parents=True)
    real.write_text('#!/bin/sh\necho "$@"\n')
    real.chmod(0o755)
    airflow._write_shim()
    env = airflow.environment(18080)

    def run(*args: str) -> str:
        out = subprocess.run(
            ["airflow", *args], env=env, capture_output=True, text=True
        )
        return out.stdout.strip()

    assert run("scheduler") == "scheduler --skip-serve-logs"
    assert run("triggerer") == "triggerer --skip-serve-logs"
    assert run("api-server") == "api-server"
    assert run("dags", "list") == "dags list"


def _load_launcher(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Runs a launcher DAG file against stand-ins of Airflow's DAG and
    BashOperator; returns what it built them with."""
    import sys
    import types

    built: dict = {}

    class DAG:
        def __init__(self, **kwargs):
            built["dag"] = kwargs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class BashOperator:
        def __init__(self, **kwargs):
            built["task"] = kwargs

    sdk = types.ModuleType("airflow.sdk")
    sdk.DAG = DAG
    bash = types.ModuleType("airflow.providers.standard.operators.bash")
    bash.BashOperator = BashOperator
    for name in ("airflow", "airflow.providers", "airflow.providers.standard"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "airflow.providers.standard.operators", bash)
    monkeypatch.setitem(sys.modules, "airflow.sdk", sdk)
    monkeypatch.setitem(sys.modules, bash.__name__, bash)
    exec(compile(path.read_text(), str(path), "exec"), {})  # noqa: S102
    return built


def test_a_plans_schedule_is_a_dag_that_runs_run_py_here(
    airflow_env, restore_active_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--pipeline loop --schedule`: one task running this machine's run.py with
    the command's settings, one run at a time; listed, then removed."""
    import shlex
    import sys

    from zenml.client import Client

    from visionops.app import schedules

    apply_stack(load_stack_spec("local", env_file=NO_ENV_FILE))
    with pytest.raises(schedules.ScheduleError, match="python run.py --stack airflow"):
        schedules.check_plan_schedule("loop", "0 4 * * *")
    apply_stack(load_stack_spec("airflow", env_file=NO_ENV_FILE))
    monkeypatch.setenv("VISIONOPS_API_KEY", "never-in-a-dag-file")
    settings = ["--set", "min_reviewed=5", "--set", "training={train: {epochs: 3}}"]
    name = schedules.schedule_plan("loop", "0  4 * * *", settings, project_root())
    assert name == "loop-0_4_x_x_x"
    path = airflow.launcher_path(name)
    assert "never-in-a-dag-file" not in path.read_text()
    built = _load_launcher(path, monkeypatch)
    assert built["dag"]["dag_id"] == name
    assert built["dag"]["schedule"] == "0 4 * * *"
    assert built["dag"]["max_active_runs"] == 1 and not built["dag"]["catchup"]
    task = built["task"]
    raw = task["bash_command"]
    assert raw.startswith("{% raw %}") and raw.endswith("{% endraw %}")
    command = shlex.split(raw.removeprefix("{% raw %}").removesuffix("{% endraw %}"))
    run_py = str(project_root() / "run.py")
    assert command == [sys.executable, run_py, "--pipeline", "loop", *settings]
    assert task["cwd"] == str(project_root()) and task["append_env"]
    assert task["env"]["ZENML_ACTIVE_STACK_ID"] == str(Client().active_stack_model.id)
    assert task["env"]["VISIONOPS_STATE_DIR"] == os.environ["VISIONOPS_STATE_DIR"]
    assert "VISIONOPS_API_KEY" not in task["env"]

    listed = [s for s in schedules.active_schedules() if s["name"] == name]
    assert listed == [
        {
            "name": name,
            "pipeline": "loop",
            "cron": "0 4 * * *",
            "interval_s": None,
            "orchestrator": "airflow (run.py)",
        }
    ]
    with pytest.raises(schedules.ScheduleError, match="exists; remove it first"):
        schedules.check_plan_schedule("loop", "0 4 * * *")
    assert schedules.unschedule(name) == [f"DAG file {name}.py"]
    assert not path.exists()
    assert not [s for s in schedules.active_schedules() if s["name"] == name]
