"""What a run shows on the terminal: progress, per-epoch lines, the dashboard hint."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from visionops.core import console
from visionops.data.anonymize import AnonymizeSettings, anonymize_dataset
from visionops.data.sources import stage_source
from visionops.data.validate import ValidationSettings, validate_dataset
from visionops.tasks import get_task


def _ingest(sample_dir: Path, work: Path) -> int:
    """Stages, validates and blurs the bundled sample; returns its item count."""
    manifest = stage_source(sample_dir, work / "staged", cache_dir=work / "cache")
    validate_dataset(
        work / "staged", work / "validated", ValidationSettings(), task=get_task()
    )
    anonymize_dataset(
        work / "validated", work / "anonymized", AnonymizeSettings(enabled=False)
    )
    return len(manifest.items)


def test_ingestion_shows_progress_with_counts_on_stderr(
    sample_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
) -> None:
    monkeypatch.delenv(console.QUIET_ENV, raising=False)
    items = _ingest(sample_dir, tmp_path)
    out, err = capfd.readouterr()
    assert "Validating: 100%" in err and f"{items}/{items}" in err
    assert "Blurring faces: 100%" in err
    assert "Validating" not in out  # stdout stays for results


def test_quiet_ingestion_shows_no_progress(
    sample_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
) -> None:
    monkeypatch.setenv(console.QUIET_ENV, "1")
    _ingest(sample_dir, tmp_path)
    _, err = capfd.readouterr()
    assert "Validating" not in err and "Blurring faces" not in err
    assert "%|" not in err


def test_epoch_line_reads_like_ultralytics(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    metrics = {
        "train/box_loss": 1.2345,
        "metrics/mAP50B": 0.5,
        "metrics/mAP50-95B": 0.25,
        "val/box_loss": 1.5,
        "lr/pg0": 0.01,
    }
    monkeypatch.delenv(console.QUIET_ENV, raising=False)
    console.print_epoch(3, 10, metrics)
    err = capsys.readouterr().err
    assert err == "Epoch  3/10  box_loss 1.234  mAP50B 0.5  mAP50-95B 0.25\n"
    # Ultralytics' last call validates best.pt once more: named so, not "11/10".
    final = console.epoch_line(11, 10, metrics)
    assert final.startswith("best.pt ") and "11/10" not in final
    monkeypatch.setenv(console.QUIET_ENV, "1")
    console.print_epoch(4, 10, metrics)
    assert capsys.readouterr().err == ""


def test_quiet_turns_zenml_logs_down_to_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import zenml  # noqa: F401 - quiet sets the level ZenML set at import

    root = logging.getLogger()
    monkeypatch.setattr(root, "level", root.level)
    # Set first, so that the monkeypatch restores them after the test.
    monkeypatch.setenv(console.QUIET_ENV, "")
    monkeypatch.setenv("ZENML_LOGGING_VERBOSITY", "INFO")
    console.set_quiet(True)
    try:
        assert console.quiet()
        assert root.level == logging.WARNING
        assert os.environ["ZENML_LOGGING_VERBOSITY"] == "WARN"
    finally:
        console.set_quiet(False)
    assert not console.quiet()


def test_pipeline_run_hints_at_run_py_dashboard_not_zenml_login(
    sample_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import run

    caplog.set_level(logging.INFO)
    assert run.main(["--stack", "local"]) == 0
    source = ["--source", str(sample_dir), "--set", "anonymize.enabled=false"]
    assert run.main(["--pipeline", "ingestion", "--no-cache", *source]) == 0
    assert "zenml login --local" not in caplog.text
    assert console.DASHBOARD_HINT in caplog.text


def test_zenml_pro_model_advice_becomes_the_project_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The line ZenML logs for a pipeline with a model, on a store without Pro."""
    from types import SimpleNamespace

    from zenml.orchestrators.step_run_utils import log_model_version_dashboard_url

    console.replace_zenml_hints()
    caplog.set_level(logging.INFO)
    version = SimpleNamespace(project_id="p", id="v", name="1", model=None)
    log_model_version_dashboard_url(version)  # type: ignore[arg-type]
    assert "ZenML Pro" not in caplog.text and "free trial" not in caplog.text
    assert console.MODEL_HINT in caplog.text
