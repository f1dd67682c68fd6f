"""The DAG file ZenML's Airflow orchestrator writes: ZenML 0.98's, mended.

ZenML zips this module as `dag.py` beside a `config.json` (`custom_dag_generator`
names it, `visionops.app.airflow.orchestrator_settings`); Airflow's DAG processor
imports it from the zip and builds the DAG. It runs in Airflow's environment, where
neither ZenML nor this project is installed: only the standard library, pydantic,
Airflow and its providers. Adapted from `zenml.integrations.airflow.orchestrators.
dag_generator` (Apache-2.0), which works with Airflow 3 as it is; what differs:

- `mounts` in the operator arguments (JSON: dicts with source, target, type,
  read_only) are added to the local stores' mount instead of replacing it, so a
  stack can hand the step containers a data folder of this machine;
- the DAG class comes from `airflow.sdk` where it is (Airflow 3), so that Airflow
  warns of no deprecated import.
"""

from __future__ import annotations

import datetime
import importlib
import os
import zipfile
from typing import Any

from pydantic import BaseModel, Field

# The names ZenML reads from a DAG generator module.
ENV_ZENML_AIRFLOW_RUN_ID = "ZENML_AIRFLOW_RUN_ID"
ENV_ZENML_LOCAL_STORES_PATH = "ZENML_LOCAL_STORES_PATH"
CONFIG_FILENAME = "config.json"
_DOCKER_OPERATOR = "airflow.providers.docker.operators.docker.DockerOperator"


class TaskConfiguration(BaseModel):
    """One step: its image, command, environment and operator."""

    id: str
    zenml_step_name: str
    upstream_steps: list[str]
    docker_image: str
    command: list[str]
    arguments: list[str]
    environment: dict[str, str] = {}
    operator_source: str
    operator_args: dict[str, Any] = {}


class DagConfiguration(BaseModel):
    """The DAG: its id, tasks, schedule and the local stores to mount."""

    id: str
    tasks: list[TaskConfiguration]
    local_stores_path: str | None = None
    schedule: datetime.timedelta | str = Field(union_mode="left_to_right")
    start_date: datetime.datetime
    end_date: datetime.datetime | None = None
    catchup: bool = False
    tags: list[str] = []
    dag_args: dict[str, Any] = {}


def import_class_by_path(class_path: str) -> type[Any]:
    """Imports `package.module.Class`."""
    module_name, class_name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


def _is_subclass(operator_class: type[Any], *paths: str) -> bool:
    """Whether the operator derives from one of the classes, where installed."""
    for path in paths:
        try:
            if issubclass(operator_class, import_class_by_path(path)):
                return True
        except ImportError:
            continue
    return False


def docker_operator_kwargs(dag: DagConfiguration, task: TaskConfiguration) -> dict:
    """The DockerOperator's arguments: image, command, environment, mounts."""
    environment = {**task.environment, ENV_ZENML_AIRFLOW_RUN_ID: "{{run_id}}"}
    mounts: list[dict[str, Any]] = list(task.operator_args.get("mounts") or [])
    extra_hosts = {}
    if dag.local_stores_path:
        environment[ENV_ZENML_LOCAL_STORES_PATH] = dag.local_stores_path
        path = dag.local_stores_path
        mounts.insert(0, {"source": path, "target": path, "type": "bind"})
        extra_hosts = {"host.docker.internal": "host-gateway"}
    from docker.types import Mount

    return {
        "image": task.docker_image,
        "command": task.command + task.arguments,
        "environment": environment,
        "extra_hosts": extra_hosts,
        **{k: v for k, v in task.operator_args.items() if k != "mounts"},
        "mounts": [Mount(**m) for m in mounts],
    }


def kubernetes_pod_operator_kwargs(
    dag: DagConfiguration, task: TaskConfiguration
) -> dict:
    """The KubernetesPodOperator's arguments, as ZenML's generator gives them."""
    from kubernetes.client.models import V1EnvVar

    environment = {**task.environment, ENV_ZENML_AIRFLOW_RUN_ID: "{{run_id}}"}
    return {
        "name": f"{dag.id}_{task.id}",
        "namespace": "default",
        "image": task.docker_image,
        "cmds": task.command,
        "arguments": task.arguments,
        "env_vars": [V1EnvVar(name=k, value=v) for k, v in environment.items()],
        **task.operator_args,
    }


def get_operator_init_kwargs(
    operator_class: type[Any],
    dag_config: DagConfiguration,
    task_config: TaskConfiguration,
) -> dict[str, Any]:
    """The operator's keyword arguments (the operator_args win)."""
    kwargs: dict[str, Any] = {"task_id": task_config.id}
    if _is_subclass(
        operator_class, "airflow.providers.docker.operators.docker.DockerOperator"
    ):
        return {**kwargs, **docker_operator_kwargs(dag_config, task_config)}
    if _is_subclass(
        operator_class,
        "airflow.providers.cncf.kubernetes.operators.pod.KubernetesPodOperator",
        "airflow.providers.cncf.kubernetes.operators.kubernetes_pod."
        "KubernetesPodOperator",
    ):
        return {**kwargs, **kubernetes_pod_operator_kwargs(dag_config, task_config)}
    return {**kwargs, **task_config.operator_args}


def build_dag(dag_config: DagConfiguration) -> Any:
    """The Airflow DAG of a configuration: one operator per step, in order."""
    try:
        from airflow.sdk import DAG
    except ImportError:  # Airflow 2
        from airflow import DAG

    operators: dict[str, Any] = {}
    with DAG(
        dag_id=dag_config.id,
        is_paused_upon_creation=False,
        tags=dag_config.tags,
        schedule=dag_config.schedule,
        start_date=dag_config.start_date,
        end_date=dag_config.end_date,
        catchup=dag_config.catchup,
        **dag_config.dag_args,
    ) as dag:
        for task in dag_config.tasks:
            operator_class = import_class_by_path(task.operator_source)
            operator = operator_class(
                **get_operator_init_kwargs(operator_class, dag_config, task)
            )
            operators[task.zenml_step_name] = operator
            for upstream in task.upstream_steps:
                operator.set_upstream(operators[upstream])
    return dag


try:
    _archive = zipfile.ZipFile(os.path.dirname(__file__), "r")
except (IsADirectoryError, PermissionError, FileNotFoundError, zipfile.BadZipFile):
    pass  # imported as a module (by ZenML), not from a DAG file
else:
    dag = build_dag(
        DagConfiguration.model_validate_json(_archive.read(CONFIG_FILENAME))
    )
