"""Restore planning on a small backup: what is created, skipped, renamed, redone.

Two SQLite trackers, no server: a backup of one experiment (two runs, one with an
artifact) and one registered model, planned against an empty target, a target whose
names are taken, and a target an interrupted restore left behind. Planning (and a dry
run) must leave the target exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

EXPERIMENT = "plan-training"
MODEL = "plan-detector"


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri, registry_uri=uri)


def _state(uri: str) -> dict:
    """Everything a restore could change in a tracker, deleted entities included."""
    from mlflow.entities import ViewType

    client = _client(uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL
    )
    models = client.search_registered_models()
    return {
        "experiments": sorted(
            (e.experiment_id, e.name, e.lifecycle_stage, tuple(sorted(e.tags.items())))
            for e in experiments
        ),
        "runs": sorted(
            (
                r.info.run_id,
                r.info.lifecycle_stage,
                r.info.status,
                tuple(sorted(r.data.tags.items())),
                tuple(sorted(r.data.params.items())),
            )
            for r in runs
        ),
        "registered_models": sorted(
            (m.name, tuple(sorted(m.tags.items()))) for m in models
        ),
        "versions": sorted(
            (v.name, v.version, v.source)
            for m in models
            for v in client.search_model_versions(f"name='{m.name}'")
        ),
    }


@pytest.fixture(scope="module")
def small_backup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup of one experiment with two runs and one registered model."""
    from visionops.app.backup import backup

    root = tmp_path_factory.mktemp("plan-origin")
    uri = f"sqlite:///{root}/origin.db"
    client = _client(uri)
    experiment = client.create_experiment(
        EXPERIMENT, artifact_location=(root / "artifacts").as_uri()
    )
    run_ids = []
    for lr in ("0.01", "0.001"):
        run_id = client.create_run(experiment, run_name=f"lr-{lr}").info.run_id
        client.log_param(run_id, "lr0", lr)
        client.log_metric(run_id, "map50", 0.5, step=0)
        client.set_terminated(run_id)
        run_ids.append(run_id)
    client.log_text(run_ids[0], "weights", "model/notes.txt")
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, f"runs:/{run_ids[0]}/model", run_ids[0])
    client.set_registered_model_alias(MODEL, "champion", "1")
    return backup(root / "small.zip", uri).path


def _target(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/target.db"


def _restore(path: Path, uri: str, tmp_path: Path, dry_run: bool = False):
    """A restore whose new experiments keep their artifacts under tmp_path."""
    from visionops.app.backup import restore

    return restore(
        path,
        uri,
        dry_run=dry_run,
        echo=lambda line: None,
        artifact_location=(tmp_path / "target-artifacts").as_uri(),
    )


def _plan(path: Path, uri: str, on_conflict: str = "skip"):
    from visionops.app.backup import open_backup, plan_restore, read_target

    with open_backup(path) as opened:
        target = read_target(_client(uri), uri)
        return plan_restore(opened.data, opened.source, target, on_conflict)


def _decisions(plan) -> dict[tuple[str, str], tuple[str, str]]:
    return {(a.kind, a.name): (a.action, a.target) for a in plan.actions}


def test_an_empty_target_gets_everything_created(
    small_backup: Path, tmp_path: Path
) -> None:
    plan = _plan(small_backup, _target(tmp_path))
    assert _decisions(plan) == {
        # Every SQLite store has an empty Default: nothing to restore into it.
        ("experiment", "Default"): ("skip", ""),
        ("experiment", EXPERIMENT): ("create", EXPERIMENT),
        ("registered model", MODEL): ("create", MODEL),
    }
    assert [len(s.experiment["runs"]) for s in plan.experiments] == [2]
    assert [len(s.versions) for s in plan.models] == [1]
    assert plan.redo_runs == [] and plan.warnings == []


def test_taken_names_are_skipped_or_renamed(small_backup: Path, tmp_path: Path) -> None:
    uri = _target(tmp_path)
    client = _client(uri)
    client.create_experiment(EXPERIMENT)
    client.create_registered_model(MODEL)

    skip = _plan(small_backup, uri, "skip")
    assert _decisions(skip) == {
        ("experiment", "Default"): ("skip", ""),
        ("experiment", EXPERIMENT): ("skip", ""),
        ("registered model", MODEL): ("skip", ""),
    }
    assert skip.experiments == [] and skip.models == []

    rename = _plan(small_backup, uri, "rename")
    assert _decisions(rename) == {
        ("experiment", "Default"): ("skip", ""),
        ("experiment", EXPERIMENT): ("rename", f"{EXPERIMENT}-restored-2"),
        ("registered model", MODEL): ("rename", f"{MODEL}-restored-2"),
    }


def test_a_skipped_experiment_takes_its_versions_with_it(
    small_backup: Path, tmp_path: Path
) -> None:
    """The model is new, but its version's run stays behind: warned, not restored."""
    uri = _target(tmp_path)
    _client(uri).create_experiment(EXPERIMENT)
    plan = _plan(small_backup, uri, "skip")
    assert _decisions(plan)[("registered model", MODEL)] == ("create", MODEL)
    assert [s.versions for s in plan.models] == [[]]
    assert any("version(s) 1 not restored" in w for w in plan.warnings)


def test_plan_restore_is_a_function_of_its_arguments(small_backup: Path) -> None:
    """No tracker at all: the target's state is a value."""
    from visionops.app.backup import TargetState, open_backup, plan_restore
    from visionops.app.backup.plan import TargetExperiment

    target = TargetState(
        "memory://target",
        experiments=[TargetExperiment("7", EXPERIMENT, False, None)],  # deleted
        registered_models={"other": None},
    )
    with open_backup(small_backup) as opened:
        plan = plan_restore(opened.data, opened.source, target, "rename")
    assert _decisions(plan) == {
        ("experiment", "Default"): ("create", "Default"),  # not in this target
        # MLflow keeps a deleted experiment's name: it is taken.
        ("experiment", EXPERIMENT): ("rename", f"{EXPERIMENT}-restored-2"),
        ("registered model", MODEL): ("create", MODEL),
    }
    assert target.experiments == [TargetExperiment("7", EXPERIMENT, False, None)]


def test_planning_and_a_dry_run_write_nothing(
    small_backup: Path, tmp_path: Path
) -> None:
    """An interrupted restore is seen and planned for, and left as it is until applied.

    The run a restore was writing when it stopped keeps its `restore_incomplete` tag;
    planning used to delete it, even for a dry run.
    """
    from visionops.app.backup.archive import INCOMPLETE_TAG

    uri = _target(tmp_path)
    done = _restore(small_backup, uri, tmp_path)
    assert done.created["runs"] == 2 and done.created["versions"] == 1
    interrupted = sorted(done.run_ids.values())[0]
    _client(uri).set_tag(interrupted, INCOMPLETE_TAG, "true")
    before = _state(uri)

    plan = _plan(small_backup, uri)
    assert plan.redo_runs == [interrupted]
    assert _decisions(plan)[("experiment", EXPERIMENT)] == ("complete", EXPERIMENT)
    assert _decisions(plan)[("registered model", MODEL)] == ("present", MODEL)
    report = _restore(small_backup, uri, tmp_path, dry_run=True)
    assert "would be completed [1 runs, 0 logged models missing" in report.text()
    assert "Nothing was changed." in report.text()
    assert _state(uri) == before

    # Applying the plan deletes the incomplete run and restores it again.
    applied = _restore(small_backup, uri, tmp_path)
    assert applied.created["runs"] == 1
    runs = {r[0]: r for r in _state(uri)["runs"]}
    assert runs[interrupted][1] == "deleted"
    active = [r for r in runs.values() if r[1] == "active"]
    assert len(active) == 2
    assert all(INCOMPLETE_TAG not in dict(r[3]) for r in active)


def test_a_restore_run_again_sets_the_aliases_it_did_not(
    small_backup: Path, tmp_path: Path
) -> None:
    """Stopped after its versions but before its aliases, a restore run again
    completes them; an alias moved in the target since is kept and reported."""
    uri = _target(tmp_path)
    client = _client(uri)
    _restore(small_backup, uri, tmp_path)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    client.delete_registered_model_alias(MODEL, "champion")  # where it stopped

    plan = _plan(small_backup, uri)
    model = next(a for a in plan.actions if a.name == MODEL)
    assert (model.action, model.details) == ("complete", "aliases missing: champion")
    again = _restore(small_backup, uri, tmp_path)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert again.created["versions"] == 0 and again.created["runs"] == 0
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 1

    # Moved by the target's owner (a second version promoted): kept, and said.
    run_id = client.search_runs(
        [client.get_experiment_by_name(EXPERIMENT).experiment_id]
    )[0].info.run_id
    client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id)
    client.set_registered_model_alias(MODEL, "champion", "2")
    plan = _plan(small_backup, uri)
    assert [a.action for a in plan.actions if a.name == MODEL] == ["present"]
    assert any("alias 'champion' is on version 2" in w for w in plan.warnings)
    _restore(small_backup, uri, tmp_path)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"


def test_a_second_restore_into_a_locked_target_stops(
    small_backup: Path, tmp_path: Path
) -> None:
    from visionops.app.backup import BackupError, read_target
    from visionops.app.backup.archive import RESTORE_LOCK
    from visionops.app.backup.restore import marker_lock, restore_lock

    uri = _target(tmp_path)
    _client(uri).search_experiments()  # creates the store
    before = _state(uri)
    with restore_lock(uri):  # a restore running into this local store
        with pytest.raises(BackupError, match="Another restore into .* is running"):
            _restore(small_backup, uri, tmp_path)
        assert _state(uri) == before
        assert (tmp_path / "target.db.restore.lock").is_file()
    assert _restore(small_backup, uri, tmp_path).created["runs"] == 2

    # A tracking server's lock: one registered model only one client can create.
    client = _client(uri)
    with marker_lock(client, "the server"):
        with pytest.raises(BackupError, match=RESTORE_LOCK), marker_lock(client, "x"):
            pass
        # Not a model of the tracker to the planning (nor to a backup).
        assert RESTORE_LOCK not in read_target(client, uri).registered_models
    names = {m.name for m in client.search_registered_models()}
    assert RESTORE_LOCK not in names and MODEL in names


def test_two_backups_to_one_path_leave_a_whole_zip(
    small_backup: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each backup writes its own temporary file, on disk before it is renamed."""
    import os
    import threading

    from visionops.app.backup import backup, open_backup
    from visionops.core import files

    uri = _target(tmp_path)
    _restore(small_backup, uri, tmp_path)
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def spy_replace(src, dst) -> None:
        events.append(("replace", str(src)))
        replace(src, dst)

    monkeypatch.setattr(files.os, "fsync", spy_fsync)
    monkeypatch.setattr(files.os, "replace", spy_replace)
    path = tmp_path / "out" / "backup.zip"
    errors: list[BaseException] = []

    def one() -> None:
        try:
            backup(path, uri)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with open_backup(path) as opened:
        assert [m["name"] for m in opened.data["registered_models"]] == [MODEL]
    assert sorted(p.name for p in path.parent.iterdir()) == ["backup.zip"]
    temps = [name for kind, name in events if kind == "replace"]
    assert len(set(temps)) == 2  # one temporary file each
    for temp in temps:  # its data on disk before the rename
        assert events.index(("fsync", temp)) < events.index(("replace", temp))
