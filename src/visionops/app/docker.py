"""The Docker settings pipelines run with on stacks whose steps run in containers."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visionops.app.containers import invoking_user, mounted
from visionops.core.env import project_root

# The official PyTorch image with exactly the torch the project pins: PyPI's
# torch==2.14.1 for Linux x86_64 is the CUDA 13.0 build (cuBLAS 13.1, cuDNN 9.24),
# which is what this image ships, so the pinned requirement is already satisfied and
# the image's CUDA libraries are the ones torch was built against (no second 3 GB
# download), and its conda Python has the pip that ZenML's generated Dockerfile
# needs. Hosts need an NVIDIA driver for CUDA 13.0 (>= 580) and the NVIDIA
# Container Toolkit. VISIONOPS_PARENT_IMAGE picks another image.
CUDA_PARENT_IMAGE = "pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime"
PARENT_IMAGE_ENV = "VISIONOPS_PARENT_IMAGE"

# OpenCV (pulled in by Ultralytics) loads libGL and GLib at import.
APT_PACKAGES = ("libgl1", "libglib2.0-0")

# Orchestrator flavors that run each step in a container built from DockerSettings.
CONTAINERISED = frozenset(
    {
        "local_docker",
        "kubernetes",
        "kubeflow",
        "tekton",
        "airflow",
        "vertex",
        "sagemaker",
        "azureml",
        "databricks",
        "modal",
    }
)

# Where the code sits in ZenML's images (its DOCKER_IMAGE_WORKDIR).
IMAGE_WORKDIR = "/app"

# Who the step images run as when nobody says otherwise (a cluster's pods): not
# root; numeric, so no account is needed in the parent image (uid 10001, like the
# compose images' `visionops` and `mlflow`).
IMAGE_USER = "10001:10001"


def dockerignore_path() -> Path:
    """What stays out of the build context; compose's project image uses it too."""
    return project_root() / "docker" / "project.Dockerfile.dockerignore"


def project_requirements() -> list[str]:
    """The project's own dependencies, as pinned in pyproject.toml."""
    data = tomllib.loads((project_root() / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def docker_settings() -> Any:
    """DockerSettings for a CUDA image with the pinned requirements and the package.

    The code is always baked into the image (not downloaded from the artifact
    store), so the project can be installed from it; `.env`, the venv and local state
    stay out of the build context (`docker/project.Dockerfile.dockerignore`).
    """
    from zenml.config import DockerSettings
    from zenml.config.docker_settings import DockerBuildConfig, PythonPackageInstaller

    return DockerSettings(
        parent_image=os.environ.get(PARENT_IMAGE_ENV) or CUDA_PARENT_IMAGE,
        requirements=project_requirements(),
        apt_packages=list(APT_PACKAGES),
        python_package_installer=PythonPackageInstaller.UV,
        # ZenML's `uv pip install` has no --system otherwise, and fails outside a venv.
        python_package_installer_args={"system": None},
        local_project_install_command="uv pip install --system --no-deps .",
        allow_download_from_artifact_store=False,
        allow_download_from_code_repository=False,
        build_config=DockerBuildConfig(
            dockerignore=str(dockerignore_path()),
            # The Docker SDK keeps each build step's container unless told (the CLI
            # removes them): every build of changed code would leave a few behind.
            build_options={"rm": True},
        ),
        user=IMAGE_USER,
        environment={
            "VISIONOPS_ROOT": IMAGE_WORKDIR,
            # The package builds with the image's own setuptools: an isolated build
            # would fetch setuptools from an index, which offline builds cannot reach.
            "UV_NO_BUILD_ISOLATION": "1",
        },
    )


def local_docker_settings(
    run_args: dict[str, Any] | None = None, folders: Sequence[Path] = ()
) -> Any:
    """The local Docker orchestrator's run args, as the invoking user.

    The stack file's `run_args` when it gives some, else every GPU of the host and
    shared memory for PyTorch's data loader workers; `user` in them wins. The
    `folders` of this machine join the stack's volumes, writable, at the same path.
    """
    from zenml.orchestrators.local_docker.local_docker_orchestrator import (
        LocalDockerOrchestratorSettings,
    )

    # The dict form of docker.types.DeviceRequest: it survives ZenML's JSON round
    # trip of the settings, where a DeviceRequest object comes back with keys docker-py
    # no longer accepts.
    gpus = {"count": -1, "capabilities": [["gpu"]]}
    args = {"user": invoking_user()}
    args |= run_args or {"device_requests": [gpus], "shm_size": "8g"}
    if folders:
        volumes = {path: {"bind": path, "mode": "rw"} for path in mounted(folders)}
        args["volumes"] = {**(args.get("volumes") or {}), **volumes}
    return LocalDockerOrchestratorSettings(run_args=args)


def _orchestrator(stack_name: str) -> Any:
    """The orchestrator component of a registered stack, or None."""
    from zenml.client import Client
    from zenml.enums import StackComponentType

    stack = Client().get_stack(stack_name, allow_name_prefix_match=False)
    orchestrators = stack.components.get(StackComponentType.ORCHESTRATOR) or []
    return orchestrators[0] if orchestrators else None


def orchestrator_flavor(stack_name: str) -> str | None:
    """The flavor of a registered stack's orchestrator."""
    orchestrator = _orchestrator(stack_name)
    return orchestrator.flavor_name if orchestrator else None


def pipeline_settings(stack_name: str, folders: Sequence[Path] = ()) -> dict[str, Any]:
    """Settings for `pipeline.with_options(settings=...)` on a stack.

    Empty unless the stack's orchestrator runs steps in containers. On `local_docker`
    the containers get the host's GPUs, unless the stack file gives the orchestrator
    its own `run_args` (the CPU stack `docker` does): then the stack decides; either
    way they run as the invoking user. On `airflow`, the project's DAG generator and
    the local Airflow's DAGs folder (and there, too, the invoking user). Containers
    on this machine's engine mount `folders` (of this machine, which the pipeline's
    steps read or write) at the same path.
    """
    orchestrator = _orchestrator(stack_name)
    flavor = orchestrator.flavor_name if orchestrator else None
    if flavor not in CONTAINERISED:
        return {}
    settings: dict[str, Any] = {"docker": docker_settings()}
    if flavor == "local_docker":
        settings["orchestrator.local_docker"] = local_docker_settings(
            orchestrator.configuration.get("run_args"), folders
        )
    if flavor == "airflow":
        from visionops.app.airflow import orchestrator_settings

        settings["orchestrator.airflow"] = orchestrator_settings(
            orchestrator.configuration, folders=folders
        )
    return settings
