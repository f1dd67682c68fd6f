"""Restore: apply a plan (`visionops.app.backup.plan`) to the target tracker.

Restoring never merges into, nor overwrites, what the target already has: an
experiment or registered model whose name is taken is skipped or restored under a
new name (`<name>-restored-2`), as asked, and reported. Restored entities carry
origin tags (`visionops.origin_run_id` on runs), so restoring the same backup again
recognises what is already there and completes only what is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from visionops.app.backup.archive import (
    INCOMPLETE_TAG,
    MODEL_FILES,
    ORIGIN_MODEL_TAG,
    ORIGIN_RUN_TAG,
    ORIGIN_TAG,
    ORIGIN_TAGS,
    ORIGIN_VERSION_TAG,
    RESTORE_LOCK,
    RUN_FILES,
    Backup,
    BackupError,
    open_backup,
)
from visionops.app.backup.plan import (
    ON_CONFLICT,
    ModelStep,
    Plan,
    RestoreReport,
    match_source,
    origin,
    plan_restore,
    read_target,
)
from visionops.app.backup.tracker import (
    MAX_METRICS,
    MAX_PARAMS,
    MAX_TAGS,
    check_tracker,
    chunks,
    describe,
    mlflow_client,
    public_uri,
    quiet,
)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
TERMINAL = ("FINISHED", "FAILED", "KILLED")


def parents_first(runs: list[dict]) -> list[dict]:
    """Orders runs so that every parent comes before its children."""
    by_id = {r["id"]: r for r in runs}
    ordered: list[dict] = []
    seen: set[str] = set()

    def visit(run: dict, path: tuple[str, ...] = ()) -> None:
        if run["id"] in seen:
            return
        parent = run["tags"].get(PARENT_TAG)
        if parent in by_id and parent not in path:
            visit(by_id[parent], (*path, run["id"]))
        seen.add(run["id"])
        ordered.append(run)

    for run in runs:
        visit(run)
    return ordered


def rewrite_mlmodel(
    path: Path, old_id: str, new_id: str, run_id: str | None, location: str
) -> None:
    """Points a logged model's MLmodel at its new id, run and location."""
    out = []
    for line in path.read_text().splitlines(keepends=True):
        key = line.split(":", 1)[0]
        if key == "model_id" or (key == "model_uuid" and old_id in line):
            line = f"{key}: {new_id}\n"
        elif key == "run_id" and run_id:
            line = f"run_id: {run_id}\n"
        elif key == "artifact_path" and line.startswith("artifact_path: "):
            line = f"artifact_path: {location}\n"
        out.append(line)
    path.write_text("".join(out))


class _Applier:
    """Carries out a plan against the target, recording what it made."""

    def __init__(
        self,
        plan: Plan,
        backup: Backup,
        client: Any,
        echo: Callable[[str], None],
        artifact_location: str | None,
    ) -> None:
        self.plan = plan
        self.backup = backup
        self.client = client
        self.echo = echo
        self.artifact_location = artifact_location
        self.report = plan.report(dry_run=False)
        self.model_ids = dict(plan.model_ids)  # old logged model id -> new
        self.new_runs: set[str] = set()  # old ids of runs created now

    def execute(self) -> None:
        # Runs an interrupted restore left incomplete are deleted, to be redone.
        for run_id in self.plan.redo_runs:
            self.client.delete_run(run_id)
        for step in self.plan.experiments:
            exp, action = step.experiment, step.action
            if action.action == "present":
                continue
            if step.existing_id is None:
                tags = {
                    **exp["tags"],
                    ORIGIN_TAG: origin(self.plan.source, "experiment", exp["id"]),
                }
                experiment_id = self.client.create_experiment(
                    action.target,
                    artifact_location=self.artifact_location,
                    tags=tags,
                )
                self.report.created["experiments"] += 1
            else:
                experiment_id = step.existing_id
            self.echo(f"  experiment {action.target!r}: restoring")
            for run in parents_first(exp["runs"]):
                if run["id"] not in self.report.run_ids:
                    self._restore_run(experiment_id, run)
            for model in exp["logged_models"]:
                if model["id"] not in self.model_ids:
                    self._restore_logged_model(experiment_id, model)
            for run in exp["runs"]:
                if run["id"] in self.new_runs and run["outputs"]:
                    self._link_outputs(run)
        for step in self.plan.models:
            self._restore_registered_model(step)

    def _restore_run(self, experiment_id: str, run: dict) -> None:
        from mlflow.entities import (
            Dataset,
            DatasetInput,
            InputTag,
            Metric,
            Param,
            RunTag,
        )

        tags = {k: v for k, v in run["tags"].items() if k not in ORIGIN_TAGS}
        tags.pop(RUN_NAME_TAG, None)
        parent = tags.get(PARENT_TAG)
        if parent:
            if parent in self.report.run_ids:
                tags[PARENT_TAG] = self.report.run_ids[parent]
            else:
                self.report.warnings.append(
                    f"run {run['id']}: its parent {parent} is not restored; the "
                    f"{PARENT_TAG} tag keeps the original id"
                )
        # MLflow's own tags (user, source, parent) when the run is created, the
        # rest in batches; the origin marks it, "incomplete" until the end.
        system = {k: v for k, v in tags.items() if k.startswith("mlflow.")}
        system.update({ORIGIN_RUN_TAG: run["id"], INCOMPLETE_TAG: "true"})
        new = self.client.create_run(
            experiment_id,
            start_time=run["start_time"],
            tags=system,
            run_name=run["name"],
        )
        run_id = new.info.run_id
        self.report.run_ids[run["id"]] = run_id
        others = [RunTag(k, v) for k, v in tags.items() if k not in system]
        for chunk in chunks(others, MAX_TAGS):
            self.client.log_batch(run_id, tags=chunk)
        params = [Param(k, str(v)) for k, v in run["params"].items()]
        for chunk in chunks(params, MAX_PARAMS):
            self.client.log_batch(run_id, params=chunk)
        metrics = [
            Metric(key, value, timestamp, step)
            for key, history in run["metrics"].items()
            for value, timestamp, step in history
        ]
        for chunk in chunks(metrics, MAX_METRICS):
            self.client.log_batch(run_id, metrics=chunk)
        if run["datasets"]:
            self.client.log_inputs(
                run_id,
                datasets=[
                    DatasetInput(
                        Dataset(
                            d["name"],
                            d["digest"],
                            d["source_type"],
                            d["source"],
                            d["schema"],
                            d["profile"],
                        ),
                        [InputTag(k, v) for k, v in d["tags"].items()],
                    )
                    for d in run["datasets"]
                ],
            )
        if run["artifacts"]:
            with tempfile.TemporaryDirectory(prefix="visionops-restore-") as tmp:
                local = self.backup.extract(f"{RUN_FILES}/{run['id']}", Path(tmp))
                self.client.log_artifacts(run_id, str(local))
        if run["status"] in TERMINAL:
            self.client.set_terminated(run_id, run["status"], end_time=run["end_time"])
        self.client.delete_tag(run_id, INCOMPLETE_TAG)
        self.new_runs.add(run["id"])
        self.report.created["runs"] += 1

    def _restore_logged_model(self, experiment_id: str, model: dict) -> None:
        from mlflow.entities import LoggedModelStatus

        run_id = self.report.run_ids.get(model["source_run_id"] or "")
        tags = {k: v for k, v in model["tags"].items() if k not in ORIGIN_TAGS}
        new = self.client.create_logged_model(
            experiment_id,
            name=model["name"],
            source_run_id=run_id,
            tags=tags,
            params=model["params"] or None,
            model_type=model["model_type"],
        )
        if model["artifacts"]:
            with tempfile.TemporaryDirectory(prefix="visionops-restore-") as tmp:
                local = self.backup.extract(f"{MODEL_FILES}/{model['id']}", Path(tmp))
                mlmodel = local / "MLmodel"
                if mlmodel.is_file():
                    rewrite_mlmodel(
                        mlmodel,
                        model["id"],
                        new.model_id,
                        run_id,
                        new.artifact_location,
                    )
                self.client.log_model_artifacts(new.model_id, str(local))
        status = model["status"] if model["status"] in ("READY", "FAILED") else None
        if status:
            self.client.finalize_logged_model(new.model_id, LoggedModelStatus(status))
        self.client.set_logged_model_tags(new.model_id, {ORIGIN_MODEL_TAG: model["id"]})
        self.model_ids[model["id"]] = new.model_id
        self.report.created["logged_models"] += 1

    def _link_outputs(self, run: dict) -> None:
        from mlflow.entities import LoggedModelOutput

        outputs = [
            LoggedModelOutput(self.model_ids[o["model_id"]], o["step"])
            for o in run["outputs"]
            if o["model_id"] in self.model_ids
        ]
        if outputs:
            self.client.log_outputs(self.report.run_ids[run["id"]], outputs)

    def _version_source(self, version: dict) -> tuple[str, str | None]:
        """A version's source in the target, and its logged model id there."""
        source = version["source"]
        match = match_source(self.backup.data, version)
        if match is not None:
            kind, old, rest = match
            if kind == "model" and old in self.model_ids:
                return f"models:/{self.model_ids[old]}", self.model_ids[old]
            if kind == "run" and old in self.report.run_ids:
                return f"runs:/{self.report.run_ids[old]}{rest}", None
        return source, None

    def _restore_registered_model(self, step: ModelStep) -> None:
        rm, action, name = step.model, step.action, step.action.target
        if action.action in ("create", "rename"):
            tags = {k: v for k, v in rm["tags"].items() if k not in ORIGIN_TAGS}
            tags[ORIGIN_TAG] = origin(self.plan.source, "model", rm["name"])
            self.client.create_registered_model(
                name, tags=tags, description=rm["description"] or None
            )
            self.report.created["registered_models"] += 1
        numbers = dict(step.present)  # origin version -> version here
        for version in step.versions:
            source, model_id = self._version_source(version)
            tags = {k: v for k, v in version["tags"].items() if k not in ORIGIN_TAGS}
            tags[ORIGIN_VERSION_TAG] = version["version"]
            created = self.client.create_model_version(
                name,
                source,
                run_id=self.report.run_ids.get(version["run_id"] or ""),
                tags=tags,
                description=version["description"] or None,
                model_id=model_id,
            )
            numbers[version["version"]] = str(created.version)
            if version["stage"] not in ("None", "", None):
                self.client.transition_model_version_stage(
                    name, str(created.version), version["stage"]
                )
            self.report.created["versions"] += 1
        # Last, and planned every time (not only with new versions): a restore
        # stopped before this point sets them when run again.
        for alias, old in step.aliases.items():
            if old in numbers:
                self.client.set_registered_model_alias(name, alias, numbers[old])


def apply_plan(
    plan: Plan,
    backup: Backup,
    tracking_uri: str,
    echo: Callable[[str], None] = print,
    artifact_location: str | None = None,
) -> RestoreReport:
    """Carries out a plan made by `plan_restore` for this backup and target.

    Raises:
        BackupError: On a tracker error (what was restored stays; running the same
            restore again completes it).
    """
    applier = _Applier(
        plan, backup, mlflow_client(tracking_uri), echo, artifact_location
    )
    try:
        with quiet():
            applier.execute()
    except Exception as err:  # the tracker's, its artifact store's, the disk's
        raise BackupError(
            f"Restore into {public_uri(tracking_uri)} stopped: {describe(err)}\n"
            "What was restored stays; run the same restore again to complete it."
        ) from None
    return applier.report


def restore(
    path: Path,
    tracking_uri: str,
    on_conflict: str = "skip",
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    artifact_location: str | None = None,
) -> RestoreReport:
    """Restores a backup into the tracker at `tracking_uri`: plans, then applies.

    Args:
        path: A zip written by `backup`.
        tracking_uri: The MLflow tracker to restore into.
        on_conflict: For an experiment or registered model whose name the target
            already uses: `skip` it (reported), or `rename` it to
            `<name>-restored-<n>`. Nothing is ever merged into an existing one.
        dry_run: Only plan, and report what would be created, skipped or renamed.
        echo: Where progress lines go.
        artifact_location: Where new experiments keep their artifacts; None lets
            the tracker decide (a server does; a bare SQLite store would pick
            ./mlruns, see `training.tracking.stack_artifact_location`).

    Returns:
        What was (or would be) done.

    Raises:
        BackupError: For a bad backup file, an unknown on_conflict, an unreachable
            tracker, another restore into it running (`restore_lock`), or a
            tracker error during the restore (what was restored stays; running the
            same restore again completes it, aliases included).
    """
    if on_conflict not in ON_CONFLICT:
        raise BackupError(
            f"on_conflict must be one of {ON_CONFLICT}, not {on_conflict!r}."
        )
    with open_backup(path) as opened:
        check_tracker(tracking_uri)
        if dry_run:
            return _plan(opened, tracking_uri, on_conflict).report(dry_run=True)
        # Read, plan and apply under one lock: two restores planning from the same
        # state would each create what the other creates.
        with restore_lock(tracking_uri):
            plan = _plan(opened, tracking_uri, on_conflict)
            return apply_plan(plan, opened, tracking_uri, echo, artifact_location)


def _plan(backup: Backup, tracking_uri: str, on_conflict: str) -> Plan:
    try:
        target = read_target(mlflow_client(tracking_uri), public_uri(tracking_uri))
    except Exception as err:  # the tracker's
        raise BackupError(
            f"Reading {public_uri(tracking_uri)} failed: {describe(err)}"
        ) from None
    return plan_restore(backup.data, backup.source, target, on_conflict)


def local_store(tracking_uri: str) -> Path | None:
    """The file or folder of a tracker kept on this machine (`sqlite:`, `file:`, a
    path); None for a tracking server."""
    parts = urllib.parse.urlsplit(tracking_uri)
    if parts.scheme == "sqlite":
        return Path(tracking_uri.split(":///", 1)[1])
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme == "":
        return Path(tracking_uri)
    return None


@contextlib.contextmanager
def restore_lock(tracking_uri: str) -> Iterator[None]:
    """Holds the target against a concurrent restore, or stops if one holds it.

    A tracker on this machine: an exclusive `flock` on `<store>.restore.lock`
    beside it (the system releases it when a restore dies). A tracking server: the
    registered model `RESTORE_LOCK`, which only one client can create.

    Raises:
        BackupError: Another restore holds the target.
    """
    where = public_uri(tracking_uri)
    store = local_store(tracking_uri)
    if store is None:
        with marker_lock(mlflow_client(tracking_uri), where):
            yield
        return
    lock = store.with_name(f"{store.name}.restore.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"Another restore into {where} is running (it holds {lock}): wait "
                "for it to finish, then run this one again."
            ) from None
        yield  # the lock file stays: removing it would let a third restore in


@contextlib.contextmanager
def marker_lock(client: Any, where: str) -> Iterator[None]:
    """Holds the tracker's `RESTORE_LOCK` registered model while a restore runs.

    Raises:
        BackupError: It exists: another restore runs, or one was killed (the
            message says how to clear it then).
    """
    from mlflow.exceptions import MlflowException

    holder = f"{socket.gethostname()} pid {os.getpid()}"
    try:
        client.create_registered_model(
            RESTORE_LOCK,
            tags={"holder": holder},
            description="A restore (`run.py --restore`) is running into this tracker.",
        )
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise BackupError(f"Locking {where} failed: {describe(err)}") from None
        raise BackupError(
            f"Another restore into {where} is running: it holds the registered "
            f"model {RESTORE_LOCK!r}. Wait for it to finish; if none is running "
            "(one was killed), delete that registered model and run this one again."
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(RESTORE_LOCK)
