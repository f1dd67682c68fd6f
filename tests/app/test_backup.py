"""Backup and restore for real: the local SQLite tracker into an MLflow server.

The local stack's tracker gets two experiments (nested runs with metric histories and
artifacts, a failed run), two logged pyfunc models of the project's detector and a
registered model with tags, descriptions and aliases. `run.py --backup` writes it
out; `run.py --restore` puts it into the MLflow server on PostgreSQL + S3 of
`stacks/server.yaml`, and the two trackers are compared entity by entity.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported by pytest_plugins, so that pytest rewrites its asserts
    from tests.servers import MlflowServer, S3Server

pytest_plugins = ["tests.servers"]

TRAINING = "backup-training"
EXTRA = "backup-extra"
MODEL = "backup-detector"
T0 = 1_700_000_000_000  # metric timestamps (ms), kept exactly by a restore
COUNTS = (
    "experiments",
    "runs",
    "metrics",
    "registered_models",
    "model_versions",
    "registered_model_aliases",
    "logged_models",
)


def _main(*args: str) -> tuple[int, str]:
    """`run.main(args)` and what it printed."""
    import run

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run.main(list(args))
    return code, out.getvalue()


def _populate(onnx: Path, weights: Path, example: Path) -> None:
    """Fills the active tracker the way the training pipeline would."""
    import mlflow
    from mlflow.entities import Metric

    from visionops.engine.pyfunc import log_pyfunc_model
    from visionops.tasks.detect.pyfunc import YoloOnnxModel
    from visionops.training.tracking import (
        register_version,
        set_alias,
        stack_artifact_location,
    )

    client = mlflow.MlflowClient()
    location = stack_artifact_location()
    experiment = client.create_experiment(
        TRAINING, artifact_location=location, tags={"team": "vision"}
    )
    with mlflow.start_run(experiment_id=experiment, run_name="pipeline"):
        mlflow.set_tag("zenml.pipeline_run_name", "training-1")
        for i, lr0 in enumerate(("0.01", "0.02")):
            with mlflow.start_run(
                experiment_id=experiment, run_name=f"candidate-{i}", nested=True
            ) as run:
                run_id = run.info.run_id
                mlflow.log_params({"lr0": lr0, "imgsz": 128, "model": "yolo11n"})
                mlflow.set_tag("candidate", f"c{i}")
                history = [
                    Metric("train/box_loss", 2.0 / (s + 1) + i, T0 + 1000 * s, s)
                    for s in range(6)
                ] + [
                    Metric("metrics/mAP50-95B", 0.1 * s + 0.01 * i, T0 + 999 * s, s)
                    for s in range(3)
                ]
                client.log_batch(run_id, metrics=history)
                mlflow.log_artifact(str(weights), "weights")
                mlflow.log_text("epoch,loss\n0,2.0\n1,1.0\n", "training/results.csv")
                mlflow.log_dict({"lr0": lr0}, "training/plots/args.json")
                info = log_pyfunc_model(
                    YoloOnnxModel,
                    onnx,
                    metadata={"candidate": f"c{i}"},
                    example_image=example,
                )
                version = register_version(
                    MODEL,
                    info.model_uri,
                    tags={"candidate": f"c{i}", "promoted": str(i == 0).lower()},
                    description="Boards, tiny.",
                )
                client.update_model_version(MODEL, version, f"Candidate {i}.")
    set_alias(MODEL, "champion", "1")
    set_alias(MODEL, "challenger", "2")
    client.set_registered_model_tag(MODEL, "task", "detect")
    extra = client.create_experiment(EXTRA, artifact_location=location)
    failed = client.create_run(extra, run_name="broken", start_time=T0)
    client.log_param(failed.info.run_id, "reason", "out of memory")
    client.set_terminated(failed.info.run_id, "FAILED", end_time=T0 + 5000)


def _server_stack(trackers: dict) -> None:
    """Applies and activates stacks/server.yaml for this module's servers.

    The variables are set again each time: MLflow mirrors the URI it was last
    pointed at into MLFLOW_TRACKING_URI, which the stack file reads.
    """
    for key, value in trackers["stack_env"].items():
        trackers["env"].setenv(key, value)
    assert _main("--stack", "server")[0] == 0


@pytest.fixture(scope="module")
def onnx_file(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from visionops.engine.onnx import export_onnx

    return export_onnx(tiny_weights, 128, tmp_path_factory.mktemp("backup-onnx"))


@pytest.fixture(scope="module")
def trackers(
    s3: S3Server,
    mlflow_server: MlflowServer,
    onnx_file: Path,
    tiny_weights: Path,
    tiny_dataset,
    tmp_path_factory: pytest.TempPathFactory,
):
    """Local tracker filled and backed up, then restored into the server stack."""
    import mlflow
    from zenml.client import Client

    from tests.servers import server_stack_env
    from visionops.training.tracking import configure_tracking

    work = tmp_path_factory.mktemp("backup")
    previous_stack = Client().active_stack_model.id
    previous_uri = os.environ.get("MLFLOW_TRACKING_URI")
    example = sorted((tiny_dataset.root / "images" / "test").glob("*"))[0]
    try:
        with pytest.MonkeyPatch.context() as env:
            assert _main("--stack", "local")[0] == 0
            local_uri = configure_tracking()
            _populate(onnx_file, tiny_weights, example)
            archive = work / "mlflow-backup.zip"
            code, backed_up = _main("--backup", str(archive))
            assert code == 0, backed_up
            state = {
                "local": local_uri,
                "server": mlflow_server.url,
                "archive": archive,
                "work": work,
                "backup_output": backed_up,
                "env": env,
                "stack_env": server_stack_env(s3, mlflow_server, "zenml"),
            }
            _server_stack(state)
            code, state["restore_output"] = _main("--restore", str(archive))
            assert code == 0, state["restore_output"]
            yield state
    finally:  # later tests find their stack and MLflow URI as they were
        Client().activate_stack(previous_stack)
        mlflow.set_tracking_uri(previous_uri)  # type: ignore[arg-type]


# --- comparing two trackers -------------------------------------------------------


def _strip(tags: dict[str, str]) -> dict[str, str]:
    from visionops.app.backup import ORIGIN_TAGS

    return {k: v for k, v in tags.items() if k not in ORIGIN_TAGS}


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _run_artifacts(client: Any, run_id: str, dest: Path) -> dict[str, str]:
    if not client.list_artifacts(run_id):
        return {}
    return _tree_hashes(Path(client.download_artifacts(run_id, "", str(dest))))


def _experiments(uri: str, origin: bool, dest: Path) -> dict[str, Any]:
    """Every active experiment with its runs, keyed by the source's run ids.

    Args:
        uri: The tracker.
        origin: Key runs by their origin tag (a restored tracker) instead of id.
        dest: Where artifacts are downloaded to be hashed.
    """
    import mlflow

    client = mlflow.MlflowClient(uri)
    state = {}
    for exp in client.search_experiments():
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        key = {
            r.info.run_id: r.data.tags.get("visionops.origin_run_id")
            if origin
            else r.info.run_id
            for r in runs
        }
        described = {}
        for r in runs:
            tags = _strip(r.data.tags)
            if "mlflow.parentRunId" in tags:
                tags["mlflow.parentRunId"] = key[tags["mlflow.parentRunId"]]
            described[key[r.info.run_id]] = {
                "name": r.info.run_name,
                "status": r.info.status,
                "times": (r.info.start_time, r.info.end_time),
                "params": r.data.params,
                "tags": tags,
                "metrics": {
                    k: sorted(
                        (m.step, m.timestamp, m.value)
                        for m in client.get_metric_history(r.info.run_id, k)
                    )
                    for k in r.data.metrics
                },
                "artifacts": _run_artifacts(
                    client, r.info.run_id, dest / r.info.run_id
                ),
            }
        state[exp.name] = {"tags": _strip(exp.tags), "runs": described}
    return state


def _model_files(uri: str, model_id: str, dest: Path) -> dict[str, str]:
    """A logged model's files by hash, MLmodel without the lines a restore rewrites."""
    import mlflow

    location = mlflow.MlflowClient(uri).get_logged_model(model_id).artifact_location
    root = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(dest), tracking_uri=uri
        )
    )
    mlmodel = root / "MLmodel"
    rewritten = ("model_id:", "model_uuid:", "run_id:", "artifact_path:")
    mlmodel.write_text(
        "".join(
            line
            for line in mlmodel.read_text().splitlines(keepends=True)
            if not line.startswith(rewritten)
        )
    )
    return _tree_hashes(root)


def _registry(uri: str, name: str, origin: bool, dest: Path) -> dict[str, Any]:
    import mlflow

    client = mlflow.MlflowClient(uri, registry_uri=uri)
    model = client.get_registered_model(name)
    versions = {}
    for v in client.search_model_versions(f"name='{name}'"):
        run = client.get_run(v.run_id)
        versions[str(v.version)] = {
            "description": v.description or "",
            "tags": _strip(v.tags),
            "status": v.status,
            "stage": v.current_stage,
            "run": run.data.tags["visionops.origin_run_id"] if origin else v.run_id,
            "files": _model_files(
                uri, v.source.removeprefix("models:/"), dest / f"v{v.version}"
            ),
        }
    return {
        "description": model.description or "",
        "tags": _strip(model.tags),
        "aliases": {a: str(n) for a, n in model.aliases.items()},
        "versions": versions,
    }


def _counts(mlflow_server: MlflowServer) -> dict[str, int]:
    """Rows per MLflow table in the server's PostgreSQL database."""
    return {
        table: mlflow_server.postgres.query(
            mlflow_server.database, f"SELECT count(*) FROM {table}"
        )[0][0]
        for table in COUNTS
    }


def _frame(tiny_dataset):
    import pandas as pd

    from visionops.engine.pyfunc import image_to_b64

    images = sorted((tiny_dataset.root / "images" / "test").glob("*"))[:2]
    return pd.DataFrame({"image": [image_to_b64(p) for p in images]})


# --- the round trip ---------------------------------------------------------------


def test_backup_manifest_counts_everything(trackers: dict) -> None:
    with zipfile.ZipFile(trackers["archive"]) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        names = archive.namelist()
    assert manifest["format"] == "visionops-mlflow-backup"
    assert manifest["format_version"] == 1
    assert manifest["source_tracking_uri"] == trackers["local"]
    counts = manifest["counts"]
    assert counts["runs"] >= 4 and counts["logged_models"] >= 2
    assert counts["registered_models"] >= 1 and counts["aliases"] >= 2
    assert counts["metric_points"] >= 2 * 9
    assert sum(n.endswith("/weights/best.pt") for n in names) >= 2
    assert sum(n.endswith("/MLmodel") for n in names) >= 2
    assert f"{counts['runs']} runs" in trackers["backup_output"]


def test_runs_params_tags_metrics_and_artifacts_are_the_same(
    trackers: dict, tmp_path: Path
) -> None:
    source = _experiments(trackers["local"], False, tmp_path / "source")
    target = _experiments(trackers["server"], True, tmp_path / "target")
    # Every experiment with something in it comes back whole; an empty one whose
    # name the target already has (MLflow's "Default") is skipped and reported.
    kept = {name: exp for name, exp in source.items() if exp["runs"]}
    assert {TRAINING, EXTRA} <= set(kept)
    assert {name: target[name] for name in kept} == kept
    assert "experiment 'Default' skipped" in trackers["restore_output"]
    candidate = next(
        r for r in target[TRAINING]["runs"].values() if r["name"] == "candidate-1"
    )
    assert [value for _, _, value in candidate["metrics"]["train/box_loss"]][-1] == (
        pytest.approx(2.0 / 6 + 1)
    )
    assert "weights/best.pt" in candidate["artifacts"]
    assert "training/plots/args.json" in candidate["artifacts"]
    assert target[EXTRA]["runs"] and all(
        r["status"] == "FAILED" for r in target[EXTRA]["runs"].values()
    )


def test_registry_is_the_same(trackers: dict, tmp_path: Path) -> None:
    source = _registry(trackers["local"], MODEL, False, tmp_path / "source")
    target = _registry(trackers["server"], MODEL, True, tmp_path / "target")
    assert target == source
    assert source["aliases"] == {"champion": "1", "challenger": "2"}
    assert source["versions"]["2"]["description"] == "Candidate 1."
    assert source["tags"] == {"task": "detect"}


def test_restored_versions_point_at_restored_runs_and_models(trackers: dict) -> None:
    import mlflow

    mlflow.set_tracking_uri(trackers["server"])
    client = mlflow.MlflowClient(trackers["server"], registry_uri=trackers["server"])
    champion = client.get_model_version_by_alias(MODEL, "champion")
    model_id = champion.source.removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == champion.run_id
    assert logged.experiment_id == client.get_experiment_by_name(TRAINING).experiment_id
    info = mlflow.models.get_model_info(f"models:/{MODEL}@champion")
    assert info.run_id == champion.run_id and info.model_id == model_id
    run = client.get_run(champion.run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [model_id]


def test_restored_champion_predicts_the_same_boxes(
    trackers: dict, tiny_dataset
) -> None:
    import mlflow
    import pandas as pd

    frame = _frame(tiny_dataset)
    boxes = {}
    for side in ("local", "server"):
        mlflow.set_tracking_uri(trackers[side])
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
        boxes[side] = model.predict(frame, params={"conf": 0.0001})
    mlflow.set_tracking_uri(trackers["server"])
    assert len(boxes["local"]) > 0
    pd.testing.assert_frame_equal(boxes["server"], boxes["local"])


def test_second_restore_with_skip_changes_nothing(
    trackers: dict, mlflow_server: MlflowServer
) -> None:
    before = _counts(mlflow_server)
    code, out = _main("--restore", str(trackers["archive"]))
    assert code == 0
    assert f"experiment {TRAINING!r} is already restored" in out
    assert f"registered model {MODEL!r} is already restored" in out
    assert _counts(mlflow_server) == before


# --- name collisions --------------------------------------------------------------


def _other_backup(work: Path) -> Path:
    """A backup of another tracker that uses the same experiment and model names."""
    import mlflow

    from visionops.app.backup import backup

    uri = f"sqlite:///{work}/other.db"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment(TRAINING, artifact_location=str(work / "art"))
    run = client.create_run(experiment, run_name="elsewhere")
    run_id = run.info.run_id
    client.log_param(run_id, "source", "other")
    client.log_text(run_id, "not a real model", "model/notes.txt")
    client.set_terminated(run_id)
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
    return backup(work / "other.zip", uri).path


def test_name_collisions_are_skipped_or_renamed_never_merged(
    trackers: dict, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    work = trackers["work"] / "other"
    work.mkdir()
    monkeypatch.chdir(work)  # a bare SQLite store would default to ./mlruns
    other = _other_backup(work)
    client = mlflow.MlflowClient(mlflow_server.url, registry_uri=mlflow_server.url)
    training = client.get_experiment_by_name(TRAINING).experiment_id
    runs_before = len(client.search_runs([training]))
    before = _counts(mlflow_server)

    code, out = _main("--restore", str(other), "--dry-run", "--on-conflict", "rename")
    assert code == 0
    assert f"experiment {TRAINING!r} would be created as '{TRAINING}-restored-2'" in out
    assert f"model {MODEL!r} would be created as '{MODEL}-restored-2'" in out
    assert "Nothing was changed." in out
    assert _counts(mlflow_server) == before

    code, out = _main("--restore", str(other))  # skip is the default
    assert code == 0
    assert f"experiment {TRAINING!r} skipped" in out
    assert f"registered model {MODEL!r} skipped" in out
    assert _counts(mlflow_server) == before

    code, out = _main("--restore", str(other), "--on-conflict", "rename")
    assert code == 0, out
    assert f"created as '{TRAINING}-restored-2'" in out
    renamed = client.get_experiment_by_name(f"{TRAINING}-restored-2")
    [run] = client.search_runs([renamed.experiment_id])
    assert run.data.params == {"source": "other"}
    assert len(client.search_runs([training])) == runs_before  # nothing merged in
    [version] = client.search_model_versions(f"name='{MODEL}-restored-2'")
    assert version.run_id == run.info.run_id
    assert version.source == f"runs:/{run.info.run_id}/model"
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 2

    after_rename = _counts(mlflow_server)
    code, out = _main("--restore", str(other), "--on-conflict", "rename")
    assert code == 0 and "is already restored" in out
    assert _counts(mlflow_server) == after_rename


def test_restore_into_the_local_stack_keeps_files_out_of_the_checkout(
    trackers: dict, tiny_dataset
) -> None:
    """The other direction: the server's backup into the local stack, renamed."""
    import mlflow
    import pandas as pd

    from visionops.core.env import project_root

    archive = trackers["work"] / "server-backup.zip"
    assert _main("--backup", str(archive))[0] == 0  # the server stack is active
    assert _main("--stack", "local")[0] == 0
    try:
        code, out = _main("--restore", str(archive), "--on-conflict", "rename")
        assert code == 0, out
        # The server also has <name>-restored-2 (from the collision test) by now;
        # a new name never lands on a name of the backup.
        experiment = re.search(f"experiment {TRAINING!r} created as '(.+?)'", out)
        model_name = re.search(f"registered model {MODEL!r} created as '(.+?)'", out)
        assert experiment and model_name, out
        client = mlflow.MlflowClient()
        renamed = client.get_experiment_by_name(experiment.group(1))
        assert renamed.artifact_location.startswith("file:")
        assert project_root() not in Path(renamed.artifact_location[5:]).parents
        assert not (project_root() / "mlruns").exists()
        model = mlflow.pyfunc.load_model(f"models:/{model_name.group(1)}@champion")
        mlflow.set_tracking_uri(trackers["server"])
        original = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
        frame = _frame(tiny_dataset)
        pd.testing.assert_frame_equal(
            model.predict(frame, params={"conf": 0.0001}),
            original.predict(frame, params={"conf": 0.0001}),
        )
    finally:
        _server_stack(trackers)


# --- errors -----------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes], stored: bool = False) -> Path:
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _bad_backups(tmp: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Broken files, each with a phrase its error message must contain."""
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    newer = json.dumps({**manifest, "format_version": 99}).encode()
    truncated = tmp / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp / "notes.zip"
    text.write_text("not a zip at all")
    damaged = _zip(
        tmp / "damaged.zip",
        {
            "manifest.json": json.dumps(manifest).encode(),
            "data.json": b'{"experiments": [], "registered_models": []}',
            "runs/abc/weights.txt": b"the original bytes of an artifact",
        },
        stored=True,
    )
    data = damaged.read_bytes().replace(b"original", b"ORIGINAL")
    damaged.write_bytes(data)
    return {
        "not a zip": (text, "is not a readable zip file"),
        "truncated": (truncated, "is not a readable zip file"),
        "no manifest": (
            _zip(tmp / "plain.zip", {"hello.txt": b"hi"}),
            "has no manifest.json",
        ),
        "newer format": (
            _zip(tmp / "newer.zip", {"manifest.json": newer, "data.json": b"{}"}),
            "format version 99",
        ),
        "damaged member": (damaged, "'runs/abc/weights.txt' fails its checksum"),
        "missing": (tmp / "nowhere.zip", "No backup file"),
    }


def test_bad_backup_files_exit_2_with_a_message(
    trackers: dict,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    import run

    before = _counts(mlflow_server)
    for what, (path, phrase) in _bad_backups(tmp_path, trackers["archive"]).items():
        for extra in ([], ["--dry-run"]):
            assert run.main(["--restore", str(path), *extra]) == 2, what
            err = capsys.readouterr().err
            assert err.startswith("Backup error: ") and phrase in err, (what, err)
            assert "Traceback" not in err
    assert _counts(mlflow_server) == before


def test_unreachable_tracker_exits_2_with_a_message(
    trackers: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import run
    from tests.servers import free_port

    port = free_port()  # nothing listens there
    stack = tmp_path / "unreachable.yaml"
    stack.write_text(
        "name: backup-unreachable\n"
        "components:\n"
        "  orchestrator: {name: local, flavor: local}\n"
        "  artifact_store: {name: local, flavor: local}\n"
        "  experiment_tracker:\n"
        "    name: mlflow-unreachable\n"
        "    flavor: mlflow\n"
        "    configuration:\n"
        f"      tracking_uri: http://127.0.0.1:{port}\n"
        "      tracking_token: not-a-real-token\n"
    )
    try:
        for args in (
            ["--backup", str(tmp_path / "out.zip")],
            ["--restore", str(trackers["archive"])],
        ):
            assert run.main(["--stack", str(stack), *args]) == 2
            err = capsys.readouterr().err
            assert (
                f"The MLflow tracker at http://127.0.0.1:{port} is unreachable" in err
            )
            assert "Traceback" not in err
        assert not (tmp_path / "out.zip").exists()
    finally:
        _server_stack(trackers)
