"""ZenML schedules of the pipelines: made by `--schedule`, listed, removed.

A schedule runs where the active stack's orchestrator can schedule (Airflow: one
DAG per schedule, named after it). Removing one archives it in ZenML and, on a
local Airflow, removes its DAG file and the DAG; ZenML's Airflow orchestrator
leaves both behind (it cannot delete schedules).

A plan (`--pipeline loop`) is several pipelines with a decision between them, which
one ZenML DAG cannot hold: its schedule is a DAG of ours on the local Airflow that
runs run.py on this machine (`visionops.app.airflow.write_launcher`), each pipeline
then a DAG of its own with its steps in containers, compiled when it runs (a
`dataset: latest` is the latest of that night).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# What a plan's schedule hands run.py besides Airflow's own environment: where the
# project's state is, and the settings of this machine that name a folder or image.
# Never a key or password (the DAG file is plain text).
LAUNCHER_ENV = (
    "VISIONOPS_STATE_DIR",
    "VISIONOPS_FEEDBACK_DIR",
    "VISIONOPS_PARENT_IMAGE",
    "VISIONOPS_AIRFLOW_VENV",
    "VISIONOPS_AIRFLOW_PORT",
    "ZENML_CONFIG_PATH",
    "ZENML_REPOSITORY_PATH",
)


class ScheduleError(ValueError):
    """A schedule that cannot be made or removed, and what to do."""


def schedule_name(pipeline: str, cron: str) -> str:
    """The schedule's (and its DAG's) name: `training-0_3_x_x_x` for `0 3 * * *`."""
    from visionops.app.airflow import dag_id

    return dag_id(f"{pipeline}-{'_'.join(cron.split()).replace('*', 'x')}")


def make_schedule(pipeline: str, cron: str) -> Any:
    """A ZenML schedule for the active stack, checked before any work.

    Raises:
        ScheduleError: The stack's orchestrator cannot schedule, the expression is
            not a cron expression, or a schedule of that name exists.
    """
    from zenml.client import Client
    from zenml.config.schedule import Schedule

    orchestrator = Client().active_stack.orchestrator
    if not orchestrator.config.is_schedulable:
        raise ScheduleError(
            f"The {orchestrator.flavor} orchestrator of the active stack cannot run "
            "schedules; apply one that can: python run.py --stack airflow"
        )
    name, cron = _new_name(pipeline, cron)
    return Schedule(name=name, cron_expression=cron)


def _new_name(what: str, cron: str) -> tuple[str, str]:
    """The schedule's name and its cron expression, checked: five fields, and no
    schedule of that name yet."""
    from zenml.client import Client

    from visionops.app import airflow

    fields = cron.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"--schedule {cron!r} is not a cron expression of five fields "
            "(minute hour day month weekday), e.g. '0 3 * * *'"
        )
    name = schedule_name(what, cron)
    try:
        Client().get_schedule(name, allow_name_prefix_match=False)
    except KeyError:
        exists = airflow.launcher_path(name).is_file()
    else:
        exists = True
    if exists:
        raise ScheduleError(
            f"A schedule named {name} exists; remove it first: "
            f"python run.py --unschedule {name}"
        )
    return name, " ".join(fields)


def check_plan_schedule(plan: str, cron: str) -> str:
    """The name a plan's schedule will have, checked before any work: the active
    stack runs its steps in containers of the local Airflow.

    Raises:
        ScheduleError: Another orchestrator, a remote Airflow, a bad expression,
            or a schedule of that name exists.
    """
    from zenml.client import Client

    from visionops.app.containers import on_this_engine

    orchestrator = Client().active_stack_model.components["orchestrator"][0]
    configuration = orchestrator.configuration
    if (
        orchestrator.flavor_name != "airflow"
        or not on_this_engine("airflow", configuration)
        or configuration.get("dag_output_dir")
    ):
        raise ScheduleError(
            f"--pipeline {plan} --schedule runs run.py on the local Airflow of this "
            f"machine; the active stack's orchestrator is {orchestrator.name} "
            f"({orchestrator.flavor_name}): python run.py --stack airflow"
        )
    return _new_name(plan, cron)[0]


def schedule_plan(plan: str, cron: str, arguments: Sequence[str], root: Path) -> str:
    """Schedules a plan on the local Airflow: `run.py --pipeline <plan>` with the
    given arguments, from this machine's Python, at `cron` (UTC).

    Returns:
        The schedule's name.
    """
    from zenml.client import Client

    from visionops.app import airflow
    from visionops.core.env import state_dir

    name = check_plan_schedule(plan, cron)
    env = {key: os.environ[key] for key in LAUNCHER_ENV if os.environ.get(key)}
    env["VISIONOPS_STATE_DIR"] = str(state_dir())
    env["ZENML_ACTIVE_STACK_ID"] = str(Client().active_stack_model.id)
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, str(root / "run.py"), "--pipeline", plan, *arguments]
    airflow.write_launcher(name, plan, " ".join(cron.split()), command, env, root)
    return name


def active_schedules() -> list[dict[str, Any]]:
    """The active schedules: name, pipeline (or plan), cron expression (or
    interval), orchestrator (a plan's: `airflow (run.py)`)."""
    from zenml.client import Client

    from visionops.app import airflow

    client = Client()
    found = [
        {
            "name": item["name"],
            "pipeline": item["plan"],
            "cron": item["cron"],
            "interval_s": None,
            "orchestrator": "airflow (run.py)",
        }
        for item in airflow.launchers()
    ]
    for schedule in client.list_schedules(active=True, size=100, hydrate=True):
        pipeline = None
        if schedule.pipeline_id:
            pipeline = client.get_pipeline(schedule.pipeline_id).name
        orchestrator = None
        if schedule.orchestrator_id:
            orchestrator = client.get_stack_component(
                "orchestrator", schedule.orchestrator_id
            ).name
        interval = schedule.interval_second
        found.append(
            {
                "name": schedule.name,
                "pipeline": pipeline,
                "cron": schedule.cron_expression,
                "interval_s": interval.total_seconds() if interval else None,
                "orchestrator": orchestrator,
            }
        )
    return found


def unschedule(name: str) -> list[str]:
    """Archives the ZenML schedule and removes its Airflow DAG (file and history).

    Returns:
        What was removed, one line each.

    Raises:
        ScheduleError: No active schedule of that name.
    """
    from zenml.client import Client

    from visionops.app import airflow

    client = Client()
    launcher = airflow.launcher_path(name)
    if launcher.is_file():
        launcher.unlink()
        done = [f"DAG file {launcher.name}"]
        server = airflow.running()
        if server is not None and airflow.AirflowClient(server).delete_dag(
            airflow.dag_id(name)
        ):
            done.append(f"Airflow DAG {airflow.dag_id(name)}")
        return done
    try:
        schedule = client.get_schedule(name, allow_name_prefix_match=False)
    except KeyError:
        names = [s["name"] for s in active_schedules()]
        raise ScheduleError(
            f"No schedule named {name!r}; active schedules: {names or 'none'}"
        ) from None
    done = []
    orchestrator = (
        client.get_stack_component("orchestrator", schedule.orchestrator_id)
        if schedule.orchestrator_id
        else None
    )
    if orchestrator is not None and orchestrator.flavor_name == "airflow":
        dag = airflow.dag_id(name)
        if airflow.remove_dag_file(dag, orchestrator.configuration):
            done.append(f"DAG file {dag}.zip")
        server = airflow.running()
        if server is not None and airflow.AirflowClient(server).delete_dag(dag):
            done.append(f"Airflow DAG {dag}")
    client.delete_schedule(schedule.id)
    done.append(f"ZenML schedule {name}")
    return done
