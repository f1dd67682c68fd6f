"""Step containers on this machine's Docker engine: who they run as, what they mount.

Shared by the local Docker orchestrator's settings (`visionops.app.docker`) and the
local Airflow's DockerOperator (`visionops.app.airflow`), and read by preflight.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# The Airflow operator of steps in containers on this machine's engine, in both
# spellings a stack file may give it (ZenML stores the second).
DOCKER_OPERATORS = (
    None,
    "docker",
    "airflow.providers.docker.operators.docker.DockerOperator",
)


def invoking_user() -> str:
    """`uid:gid` of this process, for step containers on this machine's engine.

    They write into the local stores mounted from here (artifacts, the MLflow and
    ZenML databases), so they run as whoever started the pipeline: what they write
    stays that user's, and a container gets no more than its user has. ZenML's own
    default passes the uid alone, which leaves the group root's.
    """
    return f"{os.getuid()}:{os.getgid()}"


def on_this_engine(flavor: str | None, configuration: Mapping[str, Any]) -> bool:
    """Whether an orchestrator runs each step in a container on this machine's
    Docker engine, which can mount this machine's folders into it."""
    if flavor == "local_docker":
        return True
    return (
        flavor == "airflow"
        and bool(configuration.get("local", True))
        and configuration.get("operator") in DOCKER_OPERATORS
    )


def mounted(folders: Sequence[Path]) -> list[str]:
    """The folders as absolute paths, created when missing (a bind mount needs its
    source, and one Docker would create belongs to root)."""
    paths = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(str(folder.resolve()))
    return paths
