"""ZenML schedules of the pipelines: made by `--schedule`, listed, removed.

A schedule runs where the active stack's orchestrator can schedule (Airflow: one
DAG per schedule, named after it). Removing one archives it in ZenML and, on a
local Airflow, removes its DAG file and the DAG; ZenML's Airflow orchestrator
leaves both behind (it cannot delete schedules).
"""

from __future__ import annotations

from typing import Any


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
    fields = cron.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"--schedule {cron!r} is not a cron expression of five fields "
            "(minute hour day month weekday), e.g. '0 3 * * *'"
        )
    name = schedule_name(pipeline, cron)
    try:
        Client().get_schedule(name, allow_name_prefix_match=False)
    except KeyError:
        pass
    else:
        raise ScheduleError(
            f"A schedule named {name} exists; remove it first: "
            f"python run.py --unschedule {name}"
        )
    return Schedule(name=name, cron_expression=" ".join(fields))


def active_schedules() -> list[dict[str, Any]]:
    """The active schedules: name, pipeline, cron expression (or interval), stack."""
    from zenml.client import Client

    client = Client()
    found = []
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
