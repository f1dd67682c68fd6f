"""Stacks as files: `stacks/<name>.yaml` applied idempotently and made active."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visionops.env import project_root

_ENV_REF = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


class ComponentSpec(BaseModel):
    """One stack component: its name, flavor and configuration."""

    model_config = ConfigDict(extra="forbid")

    name: str
    flavor: str
    configuration: dict[str, Any] = Field(default_factory=dict)


class StackSpec(BaseModel):
    """A stack file: a name and one component per component type."""

    model_config = ConfigDict(extra="forbid")

    name: str
    components: dict[str, ComponentSpec]


class StackError(ValueError):
    """A stack file that cannot be applied, with what to do about it."""


def stack_path(name_or_path: str) -> Path:
    """Resolves `local` to `stacks/local.yaml`; a path is taken as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return project_root() / "stacks" / f"{name_or_path}.yaml"


def _substitute(value: Any) -> Any:
    """Replaces `${VAR}` / `${VAR:-default}` with environment values."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise StackError(
                f"The stack file needs ${{{var}}}: set it in the environment or .env."
            )

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v) for v in value]
    return value


def load_stack_spec(name_or_path: str) -> StackSpec:
    """Reads and validates a stack file."""
    path = stack_path(name_or_path)
    if not path.is_file():
        available = sorted(p.stem for p in (project_root() / "stacks").glob("*.yaml"))
        raise StackError(f"No stack file {path}; available stacks: {available}.")
    try:
        return StackSpec.model_validate(_substitute(yaml.safe_load(path.read_text())))
    except ValidationError as err:
        raise StackError(f"{path} is not a valid stack file:\n{err}") from None


def apply_stack(spec: StackSpec, activate: bool = True) -> str:
    """Registers or updates every component and the stack, then activates it.

    Re-applying the same file changes nothing; a changed configuration updates the
    component in place, never by prompting.

    Returns:
        The stack name.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    components: dict[StackComponentType, str] = {}
    for kind, component in spec.components.items():
        try:
            component_type = StackComponentType(kind)
        except ValueError:
            allowed = [t.value for t in StackComponentType]
            raise StackError(
                f"Unknown component type {kind!r}; use one of {allowed}."
            ) from None
        try:
            existing = client.get_stack_component(component_type, component.name)
        except KeyError:
            client.create_stack_component(
                name=component.name,
                flavor=component.flavor,
                component_type=component_type,
                configuration=component.configuration,
            )
        else:
            if existing.flavor_name != component.flavor:
                raise StackError(
                    f"A {kind} named {component.name!r} exists with flavor "
                    f"{existing.flavor_name!r}, not {component.flavor!r}; rename one."
                )
            current = {k: v for k, v in existing.configuration.items() if v is not None}
            if current != {
                k: v for k, v in component.configuration.items() if v is not None
            }:
                client.update_stack_component(
                    name_id_or_prefix=component.name,
                    component_type=component_type,
                    configuration=component.configuration,
                )
        components[component_type] = component.name
    try:
        stack = client.get_stack(spec.name)
    except KeyError:
        client.create_stack(name=spec.name, components=components)
    else:
        wanted = {t: n for t, n in components.items()}
        have = {t: c[0].name for t, c in stack.components.items() if c}
        if wanted != have:
            client.update_stack(
                name_id_or_prefix=spec.name,
                component_updates={t: [n] for t, n in wanted.items()},
            )
    if activate:
        client.activate_stack(spec.name)
    return spec.name
