"""Pipeline configuration: YAML + overlays + `--set` overrides, checked by pydantic."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from visionops.data.anonymize import AnonymizeSettings
from visionops.data.validate import ValidationSettings
from visionops.env import project_root

Workers = int | Literal["auto"]


class StrictModel(BaseModel):
    """A settings block that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid")


class SplitSettings(StrictModel):
    """Train/val/test fractions and the seed of the group-aware split."""

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitSettings:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"train + val + test must sum to 1, got {total:g} "
                f"({self.train:g} + {self.val:g} + {self.test:g})"
            )
        return self


class IngestionParameters(StrictModel):
    """Everything the ingestion pipeline takes."""

    source: str = "data/sample/boards"
    workers: Workers = "auto"
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    anonymize: AnonymizeSettings = Field(default_factory=AnonymizeSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)


PARAMETER_MODELS: dict[str, type[StrictModel]] = {"ingestion": IngestionParameters}
TOP_LEVEL_KEYS = ("parameters",)


class ConfigError(ValueError):
    """A configuration problem, worded for the person who wrote the file."""


def config_path(pipeline: str) -> Path:
    """Returns the default config file of a pipeline, `configs/<pipeline>.yaml`."""
    return project_root() / "configs" / f"{pipeline}.yaml"


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Returns `base` with `overlay` merged in; nested mappings merge key by key."""
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with a `parameters:` key.")
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {unknown}; allowed: "
            f"{list(TOP_LEVEL_KEYS)} (pipeline settings go under `parameters:`)."
        )
    return data


def parse_override(text: str) -> dict[str, Any]:
    """Turns `a.b=value` into `{"a": {"b": value}}`, the value parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip().removeprefix("parameters.")
    if not sep or not key:
        raise ConfigError(
            f"--set {text!r}: expected KEY=VALUE, e.g. --set split.seed=7"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(
            f"--set {text!r}: the value is not valid YAML: {err}"
        ) from err
    tree: dict[str, Any] = {}
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err["loc"])
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1])
        return f"{loc}: unknown key (value {value!r}); allowed keys here: {allowed}"
    return f"{loc}: {err['msg']} (got {value!r})"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return sorted(getattr(current, "model_fields", {}))


def load_parameters(
    pipeline: str,
    overlays: list[Path] | None = None,
    overrides: list[str] | None = None,
) -> StrictModel:
    """Loads and validates a pipeline's parameters before any work is done.

    Args:
        pipeline: Pipeline name, a key of `PARAMETER_MODELS`.
        overlays: Extra YAML files merged, in order, over `configs/<pipeline>.yaml`.
        overrides: `key=value` strings applied last.

    Returns:
        The validated parameters model.

    Raises:
        ConfigError: naming every bad key, its value and what is allowed.
    """
    if pipeline not in PARAMETER_MODELS:
        raise ConfigError(
            f"Unknown pipeline {pipeline!r}; choose one of {sorted(PARAMETER_MODELS)}."
        )
    model = PARAMETER_MODELS[pipeline]
    data: dict[str, Any] = {}
    base = config_path(pipeline)
    for path in [base, *(overlays or [])] if base.is_file() else list(overlays or []):
        data = deep_merge(data, _read_yaml(Path(path)))
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise ConfigError("`parameters:` must be a mapping of settings.")
    for text in overrides or []:
        params = deep_merge(params, parse_override(text))
    try:
        return model.model_validate(params)
    except ValidationError as err:
        lines = [_describe(e, model) for e in err.errors()]
        raise ConfigError(
            f"Invalid {pipeline} configuration:\n  " + "\n  ".join(lines)
        ) from None
