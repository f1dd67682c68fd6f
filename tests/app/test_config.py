"""Config files load and validate; bad keys and values fail with what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from visionops.config import (
    PARAMETER_MODELS,
    ConfigError,
    IngestionParameters,
    load_parameters,
    parse_override,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_file_validates(path: Path) -> None:
    pipeline = path.stem.split(".")[0]
    assert pipeline in PARAMETER_MODELS
    params = load_parameters(pipeline, overlays=[path])
    assert isinstance(params, PARAMETER_MODELS[pipeline])


def test_defaults_and_overrides() -> None:
    params = load_parameters(
        "ingestion", overrides=["split.seed=7", "anonymize.enabled=false"]
    )
    assert isinstance(params, IngestionParameters)
    assert params.split.seed == 7
    assert params.anonymize.enabled is False
    assert params.split.train == pytest.approx(0.7)


def test_overlay_file_merges_deeply(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters:\n  split:\n    seed: 3\n")
    params = load_parameters("ingestion", overlays=[overlay])
    assert params.split.seed == 3
    assert params.split.val == pytest.approx(0.15)  # untouched keys survive


def test_unknown_key_names_key_value_and_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        load_parameters("ingestion", overrides=["split.sed=7"])
    text = str(err.value)
    assert "split.sed" in text and "7" in text
    assert "seed" in text and "train" in text  # what is allowed there


def test_bad_value_names_key_and_value() -> None:
    with pytest.raises(ConfigError) as err:
        load_parameters("ingestion", overrides=["split.train=0.9"])
    assert "sum to 1" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_parameters("ingestion", overrides=["workers=lots"])
    assert "workers" in str(err.value) and "lots" in str(err.value)


def test_bad_files_fail_clearly(tmp_path: Path) -> None:
    loose = tmp_path / "loose.yaml"
    loose.write_text("source: somewhere\n")
    with pytest.raises(ConfigError, match="unknown top-level key"):
        load_parameters("ingestion", overlays=[loose])
    broken = tmp_path / "broken.yaml"
    broken.write_text("parameters: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_parameters("ingestion", overlays=[broken])
    with pytest.raises(ConfigError, match="does not exist"):
        load_parameters("ingestion", overlays=[tmp_path / "missing.yaml"])
    with pytest.raises(ConfigError, match="Unknown pipeline"):
        load_parameters("nope")


def test_task_is_a_registered_task() -> None:
    for name in ("detect", "classify", "segment"):
        assert load_parameters("training", overrides=[f"task={name}"]).task == name
    with pytest.raises(ConfigError) as err:
        load_parameters("ingestion", overrides=["task=pose"])
    assert "pose" in str(err.value) and "detect, classify, segment" in str(err.value)


def test_parse_override_shapes() -> None:
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    assert parse_override("parameters.source=x/y") == {"source": "x/y"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("novalue")
