"""Stacks as files: `stacks/<name>.yaml` applied idempotently and made active.

A stack file names the stack, one component per component type, the ZenML secrets
those components reference (`{{secret.key}}`, values only from the environment or
`.env`, never from the file) and the servers the stack needs at run time.
"""

from __future__ import annotations

import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from visionops.core.env import project_root

_ENV_REF = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")
_ONE_ENV_REF = re.compile(r"\$\{[A-Z0-9_]+\}")
_SECRET_REF = re.compile(r"\{\{\s*([^.}\s]+)\.([^}\s]+)\s*\}\}")

# Stack labels written on apply, so run.py finds the active stack's file and services.
LABEL_FILE = "visionops.stack_file"
LABEL_SERVICES = "visionops.services"

# `scheme://user:password@host`: the credentials part of a URL.
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")

# Ports for URL schemes that are not HTTP and usually come without one.
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "redis": 6379}


class ComponentSpec(BaseModel):
    """One stack component: its name, flavor and configuration."""

    model_config = ConfigDict(extra="forbid")

    name: str
    flavor: str
    configuration: dict[str, Any] = Field(default_factory=dict)


class SecretSpec(BaseModel):
    """A ZenML secret created or updated on apply; each value is a `${VAR}`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    values: dict[str, str]


class ServiceSpec(BaseModel):
    """A server the stack needs at run time: HTTP(S), TCP or a unix socket."""

    model_config = ConfigDict(extra="forbid")

    name: str
    url: str
    hint: str = ""


class StackSpec(BaseModel):
    """A stack file: a name, one component per type, secrets and services."""

    model_config = ConfigDict(extra="forbid")

    name: str
    components: dict[str, ComponentSpec]
    secrets: list[SecretSpec] = Field(default_factory=list)
    services: list[ServiceSpec] = Field(default_factory=list)
    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        """The file this spec was read from, if any."""
        return self._path


class StackError(ValueError):
    """A stack file that cannot be applied, with what to do about it."""


def redact(text: str) -> str:
    """Replaces the credentials of every URL in `text` with `***`.

    `http://user:secret@host:5000` becomes `http://***@host:5000`; use it on anything
    printed or stored that may hold a URL from the environment.
    """
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def strip_credentials(url: str) -> str:
    """The URL without its `user:password@` part (for probing and for labels)."""
    return _URL_CREDENTIALS.sub(r"\1", url)


def _check_url_credentials(spec: StackSpec, path: Path) -> None:
    """Refuses credentials inside a URL of a component: ZenML stores them in clear."""
    for kind, component in spec.components.items():
        for value in _strings(component.configuration):
            if _URL_CREDENTIALS.search(value):
                raise StackError(
                    f"{path}: the {kind} {component.name!r} gets the URL "
                    f"{redact(value)}, with credentials in it; a component's "
                    "configuration is stored in clear, so put them in the stack's "
                    "secret instead (for MLflow: MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD) and remove them from the URL."
                )


def stack_path(name_or_path: str) -> Path:
    """Resolves `local` to `stacks/local.yaml`; a path is taken as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return project_root() / "stacks" / f"{name_or_path}.yaml"


def load_env_file(path: Path) -> dict[str, str]:
    """Reads a `.env` file (KEY=value lines, as docker compose reads it)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _substitute(value: Any, env: Mapping[str, str], missing: set[str]) -> Any:
    """Replaces `${VAR}` / `${VAR:-default}`; collects variables that are unset."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            if env.get(var, "") != "":
                return env[var]
            if default is not None:
                return default
            missing.add(var)
            return match.group(0)

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env, missing) for v in value]
    return value


def _check_secret_values(raw: Any, path: Path) -> None:
    """Refuses a secret value written in the file instead of read from `${VAR}`."""
    if not isinstance(raw, dict):
        return
    for secret in raw.get("secrets") or []:
        if not isinstance(secret, dict):
            continue
        for key, value in (secret.get("values") or {}).items():
            if not (isinstance(value, str) and _ONE_ENV_REF.fullmatch(value.strip())):
                # The value itself is not repeated: it may be the secret.
                raise StackError(
                    f"{path}: secret {secret.get('name')!r} key {key!r} must be one "
                    "${VAR} reference (no default), not a value written in the file: "
                    "secret values come from the environment or .env, never from a "
                    "committed file."
                )


def load_stack_spec(name_or_path: str, env_file: Path | None = None) -> StackSpec:
    """Reads a stack file, fills in `${VAR}`s and validates it.

    Args:
        name_or_path: A stack name under `stacks/` or a path to a YAML file.
        env_file: The `.env` file read beneath the environment (the environment
            wins); defaults to `.env` at the project root.
    """
    path = stack_path(name_or_path)
    if not path.is_file():
        available = sorted(p.stem for p in (project_root() / "stacks").glob("*.yaml"))
        raise StackError(f"No stack file {path}; available stacks: {available}.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StackError(f"{path} is not valid YAML:\n{err}") from None
    _check_secret_values(raw, path)
    env_path = env_file if env_file is not None else project_root() / ".env"
    env = {**load_env_file(env_path), **os.environ}
    missing: set[str] = set()
    data = _substitute(raw, env, missing)
    if missing:
        raise StackError(
            f"{path} needs {', '.join(sorted(missing))}: set them in the environment "
            f"or in {env_path} (every variable is listed in .env.example)."
        )
    try:
        spec = StackSpec.model_validate(data)
    except ValidationError as err:
        raise StackError(
            f"{path} is not a valid stack file:\n{_problems(err)}"
        ) from None
    _check_secret_refs(spec, path)
    _check_url_credentials(spec, path)
    for service in spec.services:  # probed without them; stored in the labels
        service.url = strip_credentials(service.url)
    spec._path = path.resolve()
    return spec


def _problems(err: ValidationError) -> str:
    """Where the file is wrong and why, one line each, without the values found:
    pydantic's own text quotes them, and those are filled in from the environment
    by then (a secret's value under a misspelt key)."""
    return "\n".join(
        f"  {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}"
        for e in err.errors(include_input=False, include_url=False)
    )


def _check_secret_refs(spec: StackSpec, path: Path) -> None:
    """A `{{secret.key}}` naming a secret of this file must name one of its keys."""
    declared = {s.name: set(s.values) for s in spec.secrets}
    for component in spec.components.values():
        for value in _strings(component.configuration):
            for name, key in _SECRET_REF.findall(value):
                if name in declared and key not in declared[name]:
                    raise StackError(
                        f"{path}: {component.name} references {{{{{name}.{key}}}}} "
                        f"but secret {name!r} only has {sorted(declared[name])}."
                    )


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _label_path(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


def _apply_secret(client: Any, secret: SecretSpec) -> None:
    """Creates the ZenML secret, or updates the values that changed."""
    try:
        existing = client.get_secret(
            secret.name, allow_partial_name_match=False, allow_partial_id_match=False
        )
    except KeyError:
        client.create_secret(name=secret.name, values=secret.values)
        return
    current = existing.secret_values
    if any(current.get(k) != v for k, v in secret.values.items()):
        client.update_secret(existing.id, add_or_update_values=secret.values)


def apply_stack(spec: StackSpec, activate: bool = True) -> str:
    """Registers or updates the secrets, every component and the stack.

    Re-applying the same file changes nothing; a changed configuration updates the
    component in place, never by prompting. The stack's labels record the file and
    its services, for `check_active_stack`.

    Returns:
        The stack name.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType

    client = Client()
    for secret in spec.secrets:
        _apply_secret(client, secret)
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
            existing = client.get_stack_component(
                component_type, component.name, allow_name_prefix_match=False
            )
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
    labels = {
        LABEL_FILE: _label_path(spec.path),
        LABEL_SERVICES: [s.model_dump() for s in spec.services],
    }
    try:
        stack = client.get_stack(spec.name, allow_name_prefix_match=False)
    except KeyError:
        client.create_stack(name=spec.name, components=components, labels=labels)
    else:
        have = {t: c[0].name for t, c in stack.components.items() if c}
        have_labels = {k: (stack.labels or {}).get(k) for k in labels}
        if components != have or labels != have_labels:
            client.update_stack(
                name_id_or_prefix=stack.id,
                component_updates={t: [n] for t, n in components.items()},
                labels=labels,
            )
    if activate:
        client.activate_stack(spec.name)
    return spec.name


def _probe(url: str, timeout: float) -> str | None:
    """Returns why `url` does not answer, or None when it does."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        if scheme in ("http", "https"):
            request = urllib.request.Request(url, method="GET")
            try:
                with urllib.request.urlopen(request, timeout=timeout):
                    return None
            except urllib.error.HTTPError as err:
                # 401/403/404 still prove a server is there; 5xx means it is broken.
                return None if err.code < 500 else f"answers HTTP {err.code}"
        if scheme == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(parts.path)
            return None
        port = parts.port or _DEFAULT_PORTS.get(scheme)
        if not parts.hostname or not port:
            return "is not a URL with a host and port"
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        return f"does not answer ({reason})"


def check_services(
    spec: StackSpec | Iterable[ServiceSpec], timeout: float = 3.0
) -> None:
    """Checks that every service of a stack answers; one error lists all that don't.

    Raises:
        StackError: Naming each service, its URL, why and what to do.
    """
    services = spec.services if isinstance(spec, StackSpec) else list(spec)
    problems = []
    for service in services:
        why = _probe(service.url, timeout)
        if why:
            todo = service.hint or "start it, or fix its URL and apply the stack again"
            url = redact(service.url)
            problems.append(redact(f"  {service.name} at {url} {why}: {todo}."))
    if problems:
        raise StackError(
            "The active stack needs services that do not answer:\n"
            + "\n".join(problems)
            + "\nOr switch stacks: python run.py --stack local"
        )


def active_stack_services() -> list[ServiceSpec]:
    """The services recorded when the active stack was applied (none otherwise)."""
    from zenml.client import Client

    labels = Client().active_stack_model.labels or {}
    return [ServiceSpec.model_validate(s) for s in labels.get(LABEL_SERVICES) or []]


def check_active_stack(timeout: float = 3.0) -> None:
    """Checks the active stack's services before any pipeline runs."""
    check_services(active_stack_services(), timeout=timeout)
