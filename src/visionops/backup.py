"""Back up an MLflow tracker into a zip, and restore it into any other tracker.

A backup holds every active experiment with its runs (params, tags, full metric
histories, dataset inputs, artifact files), MLflow 3 logged models with their files,
and the model registry (registered models, versions with tags, descriptions and
stages, aliases). It goes through the MlflowClient API only, so SQLite stores and
tracking servers are alike on either side.

Restoring never merges into, nor overwrites, what the target already has: an
experiment or registered model whose name is taken is skipped or restored under a
new name (`<name>-restored-2`), as asked, and reported. Restored entities carry
origin tags (`visionops.origin_run_id` on runs), so restoring the same backup again
recognises what is already there and completes only what is missing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

FORMAT = "visionops-mlflow-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA = "data.json"
RUN_FILES = "runs"
MODEL_FILES = "models"

# Tags restore adds; everything else is copied as it was.
ORIGIN_RUN_TAG = "visionops.origin_run_id"
ORIGIN_MODEL_TAG = "visionops.origin_model_id"  # on MLflow 3 logged models
ORIGIN_TAG = "visionops.origin"  # on experiments and registered models
ORIGIN_VERSION_TAG = "visionops.origin_version"  # on model versions
INCOMPLETE_TAG = "visionops.restore_incomplete"  # removed once a run is complete
ORIGIN_TAGS = (
    ORIGIN_RUN_TAG,
    ORIGIN_MODEL_TAG,
    ORIGIN_TAG,
    ORIGIN_VERSION_TAG,
    INCOMPLETE_TAG,
)

ON_CONFLICT = ("skip", "rename")
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
TERMINAL = ("FINISHED", "FAILED", "KILLED")
# MLflow's log_batch limits per request.
MAX_PARAMS, MAX_TAGS, MAX_METRICS = 100, 100, 1000
PAGE = 1000
HEALTH_TIMEOUT_S = 10


class BackupError(RuntimeError):
    """A backup or restore that cannot go on, with what to do about it."""


@dataclass
class BackupSummary:
    """What a backup wrote."""

    path: Path
    source: str
    counts: dict[str, int]


@dataclass
class Action:
    """One decision of a restore: what happens to one experiment or model."""

    kind: str  # "experiment" | "registered model"
    name: str
    action: str  # create | rename | skip | present | complete
    target: str = ""  # the name in the target
    reason: str = ""
    details: str = ""

    def line(self, dry_run: bool) -> str:
        """One human line, in the future tense for a dry run."""
        verbs = {
            "create": ("would be created", "created"),
            "rename": ("would be created as", "created as"),
            "skip": ("would be skipped", "skipped"),
            "present": ("is already restored", "is already restored"),
            "complete": ("would be completed", "completed"),
        }
        verb = verbs[self.action][0 if dry_run else 1]
        text = f"{self.kind} {self.name!r} {verb}"
        if self.action == "rename":
            text += f" {self.target!r}"
        elif self.action in ("present", "complete") and self.target != self.name:
            text += f" (as {self.target!r})"
        if self.details:
            text += f" [{self.details}]"
        if self.reason:
            text += f": {self.reason}"
        return text


@dataclass
class RestoreReport:
    """What a restore did (or, for a dry run, would do)."""

    source: str
    target: str
    dry_run: bool
    actions: list[Action] = field(default_factory=list)
    created: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("experiments", "runs", "logged_models", "registered_models", "versions"),
            0,
        )
    )
    warnings: list[str] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)  # old -> new

    def text(self) -> str:
        """The report for people."""
        head = "Dry run: restore" if self.dry_run else "Restored"
        lines = [f"{head} {self.source} -> {self.target}"]
        lines += [f"  {a.line(self.dry_run)}" for a in self.actions]
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.dry_run:
            lines.append("Nothing was changed.")
        else:
            made = ", ".join(
                f"{n} {k.replace('_', ' ')}" for k, n in self.created.items()
            )
            skipped = sum(a.action == "skip" for a in self.actions)
            lines.append(f"Created {made}; skipped {skipped}.")
        return "\n".join(lines)


# --- helpers ----------------------------------------------------------------------


def stack_artifact_location() -> str | None:
    """Where the active ZenML stack's MLflow tracker keeps artifacts, if it decides.

    A tracker without a tracking_uri (the local stack) keeps its SQLite store and
    its artifacts inside the stack's artifact store, as ZenML sets them up; a
    tracking server decides for itself (None).
    """
    from zenml.client import Client
    from zenml.integrations.mlflow.experiment_trackers import (
        mlflow_experiment_tracker as zenml_mlflow,
    )

    stack = Client().active_stack
    tracker = stack.experiment_tracker
    if tracker is None or getattr(tracker.config, "tracking_uri", None):
        return None
    root = os.path.abspath(
        os.path.join(
            stack.artifact_store.path, zenml_mlflow.LOCAL_MLFLOW_ARTIFACTS_DIRECTORY
        )
    )
    return "file:" + root


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def public_uri(uri: str) -> str:
    """The URI without any user:password part, fit for a manifest or a message."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return uri


def check_tracker(tracking_uri: str) -> None:
    """Fails fast, with a clear message, when the tracker does not answer.

    A tracking server is probed with one `/health` request (MLflow's own client
    retries for minutes); then one search checks the store itself.
    """
    from mlflow.exceptions import MlflowException

    where = public_uri(tracking_uri)
    if tracking_uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(
                tracking_uri.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S
            ).close()
        except urllib.error.HTTPError:
            pass  # it answers; authentication and the rest are checked below
        except OSError as err:
            raise BackupError(
                f"The MLflow tracker at {where} is unreachable ({err}). Start it, "
                "or check MLFLOW_TRACKING_URI and the active stack "
                "(`python run.py --status`)."
            ) from None
    try:
        _client(tracking_uri).search_experiments(max_results=1)
    except (MlflowException, OSError) as err:
        raise BackupError(f"The MLflow tracker at {where} failed: {err}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No progress bars nor run links from MLflow while this runs."""
    quiet = {
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    previous = {key: os.environ.get(key) for key in quiet}
    os.environ.update(quiet)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _describe(err: Exception) -> str:
    """An error as one line for people: MLflow's own message, else type and text."""
    from mlflow.exceptions import MlflowException

    return (
        str(err) if isinstance(err, MlflowException) else f"{type(err).__name__}: {err}"
    )


def _pages(search: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Every item of a paged MLflow search, page after page."""
    token: str | None = None
    while True:
        page = search(*args, page_token=token, **kwargs)
        yield from page
        token = page.token
        if not token:
            return


def _name_filter(name: str) -> str:
    """A search_model_versions filter for one registered model."""
    escaped = name.replace("'", "\\'")
    return f"name='{escaped}'"


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- backup -----------------------------------------------------------------------


def _write_tree(archive: zipfile.ZipFile, local: Path, prefix: str) -> list[dict]:
    """Adds the files under `local` as `prefix/<relative path>`; lists them."""
    listed = []
    for path in _files_under(local):
        rel = path.relative_to(local).as_posix()
        archive.write(path, f"{prefix}/{rel}")
        listed.append({"path": rel, "size": path.stat().st_size})
    return listed


def _backup_run(client: Any, run: Any, archive: zipfile.ZipFile, tmp: Path) -> dict:
    info, data = run.info, run.data
    metrics = {
        key: [
            [m.value, m.timestamp, m.step]
            for m in client.get_metric_history(info.run_id, key)
        ]
        for key in sorted(data.metrics)
    }
    artifacts: list[dict] = []
    if client.list_artifacts(info.run_id):
        local = Path(client.download_artifacts(info.run_id, "", str(tmp / info.run_id)))
        artifacts = _write_tree(archive, local, f"{RUN_FILES}/{info.run_id}")
        shutil.rmtree(tmp / info.run_id, ignore_errors=True)
    datasets = []
    for item in run.inputs.dataset_inputs if run.inputs else []:
        d = item.dataset
        datasets.append(
            {
                "name": d.name,
                "digest": d.digest,
                "source_type": d.source_type,
                "source": d.source,
                "schema": d.schema,
                "profile": d.profile,
                "tags": {t.key: t.value for t in item.tags},
            }
        )
    outputs = [
        {"model_id": o.model_id, "step": o.step}
        for o in (run.outputs.model_outputs if run.outputs else [])
    ]
    return {
        "id": info.run_id,
        "name": info.run_name,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "params": dict(data.params),
        "tags": dict(data.tags),
        "metrics": metrics,
        "datasets": datasets,
        "outputs": outputs,
        "artifacts": artifacts,
    }


def _backup_logged_model(
    model: Any, tracking_uri: str, archive: zipfile.ZipFile, tmp: Path
) -> dict:
    import mlflow

    artifacts: list[dict] = []
    status = str(getattr(model.status, "name", model.status))
    if status == "READY":
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model.artifact_location,
                dst_path=str(tmp / model.model_id),
                tracking_uri=tracking_uri,
            )
        )
        artifacts = _write_tree(archive, local, f"{MODEL_FILES}/{model.model_id}")
        shutil.rmtree(tmp / model.model_id, ignore_errors=True)
    return {
        "id": model.model_id,
        "name": model.name,
        "source_run_id": model.source_run_id,
        "model_type": model.model_type,
        "status": status,
        "tags": dict(model.tags or {}),
        "params": dict(model.params or {}),
        "artifact_location": model.artifact_location,
        "artifacts": artifacts,
    }


def _backup_registry(client: Any) -> list[dict]:
    models = []
    for rm in _pages(client.search_registered_models, max_results=PAGE):
        versions = sorted(
            _pages(client.search_model_versions, _name_filter(rm.name), PAGE),
            key=lambda v: int(v.version),
        )
        models.append(
            {
                "name": rm.name,
                "description": rm.description or "",
                "tags": dict(rm.tags or {}),
                "aliases": {a: str(v) for a, v in (rm.aliases or {}).items()},
                "versions": [
                    {
                        "version": str(v.version),
                        "source": v.source,
                        "run_id": v.run_id,
                        "model_id": getattr(v, "model_id", None),
                        "description": v.description or "",
                        "tags": dict(v.tags or {}),
                        "stage": v.current_stage or "None",
                        "run_link": v.run_link or "",
                    }
                    for v in versions
                ],
            }
        )
    return models


def backup(path: Path, tracking_uri: str) -> BackupSummary:
    """Writes everything the tracker holds into a zip at `path`.

    Args:
        path: The zip to write (replaced atomically if it exists).
        tracking_uri: The MLflow tracker to read (e.g. from `configure_tracking()`).

    Returns:
        Where it went, from where, and how many of each thing it holds.

    Raises:
        BackupError: If the tracker does not answer or reading from it fails.
    """
    from mlflow.entities import ViewType

    check_tracker(tracking_uri)
    client = _client(tracking_uri)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    experiments: list[dict] = []
    try:
        with (
            _quiet(),
            tempfile.TemporaryDirectory(prefix="visionops-backup-") as tmp,
            zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive,
        ):
            for exp in _pages(
                client.search_experiments,
                view_type=ViewType.ACTIVE_ONLY,
                max_results=PAGE,
            ):
                runs = [
                    _backup_run(client, run, archive, Path(tmp))
                    for run in _pages(
                        client.search_runs,
                        [exp.experiment_id],
                        run_view_type=ViewType.ACTIVE_ONLY,
                        max_results=PAGE,
                        order_by=["attributes.start_time ASC"],
                    )
                ]
                models = [
                    _backup_logged_model(m, tracking_uri, archive, Path(tmp))
                    for m in _pages(
                        client.search_logged_models,
                        [exp.experiment_id],
                        max_results=100,
                    )
                ]
                experiments.append(
                    {
                        "id": exp.experiment_id,
                        "name": exp.name,
                        "tags": dict(exp.tags or {}),
                        "runs": runs,
                        "logged_models": models,
                    }
                )
            registry = _backup_registry(client)
            counts = {
                "experiments": len(experiments),
                "runs": sum(len(e["runs"]) for e in experiments),
                "metric_points": sum(
                    len(h)
                    for e in experiments
                    for r in e["runs"]
                    for h in r["metrics"].values()
                ),
                "run_artifact_files": sum(
                    len(r["artifacts"]) for e in experiments for r in e["runs"]
                ),
                "logged_models": sum(len(e["logged_models"]) for e in experiments),
                "registered_models": len(registry),
                "model_versions": sum(len(m["versions"]) for m in registry),
                "aliases": sum(len(m["aliases"]) for m in registry),
            }
            import mlflow

            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "source_tracking_uri": public_uri(tracking_uri),
                "mlflow_version": mlflow.__version__,
                "counts": counts,
            }
            archive.writestr(
                DATA,
                json.dumps({"experiments": experiments, "registered_models": registry}),
            )
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
        os.replace(partial, path)
    except Exception as err:  # the tracker's, its artifact store's, the disk's
        partial.unlink(missing_ok=True)
        raise BackupError(
            f"Backup of {public_uri(tracking_uri)} failed: {_describe(err)}"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupSummary(path, public_uri(tracking_uri), counts)


def format_backup(summary: BackupSummary) -> str:
    """The backup summary for people."""
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in summary.counts.items())
    return f"Backed up {summary.source} to {summary.path}: {counts}."


# --- reading a backup -------------------------------------------------------------


@dataclass
class Backup:
    """An opened, checked backup zip."""

    path: Path
    manifest: dict
    data: dict
    archive: zipfile.ZipFile
    members: dict[str, list[str]]  # "runs/<id>" or "models/<id>" -> its members

    @property
    def source(self) -> str:
        return str(self.manifest["source_tracking_uri"])

    def extract(self, prefix: str, dest: Path) -> Path:
        """Extracts the files under `prefix/` into `dest`; none may escape it."""
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        for member in self.members.get(prefix, []):
            target = (root / PurePosixPath(member[len(prefix) + 1 :])).resolve()
            if root not in target.parents:
                raise BackupError(f"{self.path}: member {member!r} escapes its folder.")
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.archive.open(member) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
        return dest


def _check_member_names(path: Path, archive: zipfile.ZipFile) -> None:
    """Refuses the whole archive, before anything is written, if a member escapes.

    A member is extracted relative to its run's or model's folder: an absolute
    name, a `..` part, a backslash or a drive letter could put it anywhere.
    """
    for info in archive.infolist():
        name = info.filename
        parts = PurePosixPath(name).parts
        if (
            name.startswith("/")
            or "\\" in name
            or ".." in parts
            or (parts and ":" in parts[0])
            or stat.S_ISLNK(info.external_attr >> 16)
        ):
            raise BackupError(
                f"{path}: member {name!r} escapes its folder; nothing was restored."
            )


@contextlib.contextmanager
def open_backup(path: Path) -> Iterator[Backup]:
    """Opens and checks a backup: a readable zip, our format and version, intact.

    Raises:
        BackupError: For a missing file, a bad zip, another format or version, or a
            damaged member.
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"No backup file at {path}.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise BackupError(f"{path} is not a readable zip file ({err}).") from None
    with archive:
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except KeyError:
            raise BackupError(
                f"{path} has no {MANIFEST}: it is not a backup made by "
                "`run.py --backup`."
            ) from None
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            raise BackupError(f"{path}: {MANIFEST} is damaged ({err}).") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BackupError(
                f"{path} is not a backup made by `run.py --backup` (format "
                f"{manifest.get('format') if isinstance(manifest, dict) else None!r})."
            )
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BackupError(
                f"{path} has format version {version!r}; this version of VisionOps "
                f"reads version {FORMAT_VERSION} only."
            )
        try:
            bad = archive.testzip()  # every member's CRC, before anything changes
            if bad is not None:
                raise BackupError(f"{path} is damaged: {bad!r} fails its checksum.")
            data = json.loads(archive.read(DATA))
        except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, OSError) as err:
            raise BackupError(f"{path} is damaged ({err}).") from None
        _check_member_names(path, archive)
        members: dict[str, list[str]] = {}
        for name in archive.namelist():
            parts = name.split("/", 2)
            if len(parts) == 3 and parts[2] and not name.endswith("/"):
                members.setdefault(f"{parts[0]}/{parts[1]}", []).append(name)
        yield Backup(path, manifest, data, archive, members)


# --- restore ----------------------------------------------------------------------


def _free_name(taken: set[str], name: str) -> str:
    """`<name>-restored-<n>` with the smallest n >= 2 that is not taken (and takes it).

    `taken` holds the target's names and every name of the backup, so a new name
    never lands on one that another entity of the same restore keeps.
    """
    n = 2
    while f"{name}-restored-{n}" in taken:
        n += 1
    taken.add(f"{name}-restored-{n}")
    return f"{name}-restored-{n}"


def _parents_first(runs: list[dict]) -> list[dict]:
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


def _rewrite_mlmodel(
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


class _Restorer:
    """Plans a restore against the target, then carries it out."""

    def __init__(
        self,
        backup: Backup,
        tracking_uri: str,
        on_conflict: str,
        echo: Callable[[str], None],
        artifact_location: str | None = None,
    ) -> None:
        self.backup = backup
        self.artifact_location = artifact_location
        self.uri = tracking_uri
        self.client = _client(tracking_uri)
        self.on_conflict = on_conflict
        self.echo = echo
        self.source = backup.source
        self.model_ids: dict[str, str] = {}  # old logged model id -> new
        self.new_runs: set[str] = set()  # old ids of runs created now

    # planning

    def _origin(self, kind: str, key: str) -> str:
        return f"{self.source}#{kind}:{key}"

    def _target_experiments(self) -> list[Any]:
        from mlflow.entities import ViewType

        return list(
            _pages(
                self.client.search_experiments, view_type=ViewType.ALL, max_results=PAGE
            )
        )

    def _restored_runs(self, experiment_id: str) -> dict[str, Any]:
        """Runs restored earlier into a target experiment, by original run id.

        A run left incomplete by an interrupted restore is deleted, to be redone.
        """
        from mlflow.entities import ViewType

        found = {}
        for run in _pages(
            self.client.search_runs,
            [experiment_id],
            filter_string=f"tags.`{ORIGIN_RUN_TAG}` LIKE '%'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=PAGE,
        ):
            if run.data.tags.get(INCOMPLETE_TAG):
                if not self.dry_run:
                    self.client.delete_run(run.info.run_id)
                continue
            found[run.data.tags[ORIGIN_RUN_TAG]] = run
        return found

    def _restored_models(self, experiment_id: str) -> dict[str, Any]:
        found = {}
        for model in _pages(
            self.client.search_logged_models, [experiment_id], max_results=100
        ):
            origin = (model.tags or {}).get(ORIGIN_MODEL_TAG)
            if origin:
                found[origin] = model
        return found

    def _name_taken(
        self, kind: str, name: str, reserved: set[str], details: str
    ) -> Action:
        """Skip or rename (per --on-conflict) an entity whose name the target has."""
        if self.on_conflict == "skip":
            article = "an" if kind[0] in "aeiou" else "a"
            return Action(
                kind,
                name,
                "skip",
                reason=f"{article} {kind} of that name exists in the target "
                "(--on-conflict rename restores it under a new name)",
                details=details,
            )
        return Action(
            kind,
            name,
            "rename",
            _free_name(reserved, name),
            reason="the name is taken in the target",
            details=details,
        )

    def plan(self, dry_run: bool) -> RestoreReport:
        self.dry_run = dry_run
        report = RestoreReport(self.source, public_uri(self.uri), dry_run)
        self.report = report
        targets = self._target_experiments()
        taken = {e.name for e in targets}  # deleted ones too: MLflow keeps the name
        reserved = taken | {e["name"] for e in self.backup.data["experiments"]}
        by_origin = {
            (e.tags or {}).get(ORIGIN_TAG): e
            for e in targets
            if e.lifecycle_stage == "active" and (e.tags or {}).get(ORIGIN_TAG)
        }
        self.experiment_plan: list[tuple[dict, Action, Any]] = []
        for exp in self.backup.data["experiments"]:
            details = (
                f"{len(exp['runs'])} runs, {len(exp['logged_models'])} logged models"
            )
            existing = by_origin.get(self._origin("experiment", exp["id"]))
            if existing is not None:
                runs = self._restored_runs(existing.experiment_id)
                models = self._restored_models(existing.experiment_id)
                for old, run in runs.items():
                    report.run_ids[old] = run.info.run_id
                for old, model in models.items():
                    self.model_ids[old] = model.model_id
                missing_runs = [r for r in exp["runs"] if r["id"] not in runs]
                missing_models = [
                    m for m in exp["logged_models"] if m["id"] not in models
                ]
                if missing_runs or missing_models:
                    action = Action(
                        "experiment",
                        exp["name"],
                        "complete",
                        existing.name,
                        details=f"{len(missing_runs)} runs, "
                        f"{len(missing_models)} logged models missing",
                    )
                else:
                    action = Action("experiment", exp["name"], "present", existing.name)
                self.experiment_plan.append((exp, action, existing))
            elif exp["name"] not in taken:
                action = Action(
                    "experiment", exp["name"], "create", exp["name"], details=details
                )
                self.experiment_plan.append((exp, action, None))
            elif not exp["runs"] and not exp["logged_models"]:
                action = Action(
                    "experiment",
                    exp["name"],
                    "skip",
                    reason="exists in the target, and is empty in the backup",
                )
            else:
                action = self._name_taken("experiment", exp["name"], reserved, details)
                if action.action == "rename":
                    self.experiment_plan.append((exp, action, None))
            report.actions.append(action)
        self.restorable_runs = set(report.run_ids)
        self.restorable_models = set(self.model_ids)
        for exp, _, _ in self.experiment_plan:
            self.restorable_runs |= {r["id"] for r in exp["runs"]}
            self.restorable_models |= {m["id"] for m in exp["logged_models"]}
        self._plan_registry(report)
        return report

    def _plan_registry(self, report: RestoreReport) -> None:
        targets = list(_pages(self.client.search_registered_models, max_results=PAGE))
        names = {m.name for m in targets}
        reserved = names | {m["name"] for m in self.backup.data["registered_models"]}
        by_origin = {
            (m.tags or {}).get(ORIGIN_TAG): m
            for m in targets
            if (m.tags or {}).get(ORIGIN_TAG)
        }
        self.registry_plan: list[tuple[dict, Action, list[dict]]] = []
        for rm in self.backup.data["registered_models"]:
            # A version whose logged model or run stays behind (in a skipped
            # experiment) cannot be restored: nothing in the target could load it.
            versions = [v for v in rm["versions"] if self._source_state(v) != "lost"]
            lost = [v["version"] for v in rm["versions"] if v not in versions]
            aliases = ", ".join(sorted(rm["aliases"])) or "none"
            details = f"{len(versions)} versions, aliases: {aliases}"
            existing = by_origin.get(self._origin("model", rm["name"]))
            if existing is not None:
                done = {
                    v.tags.get(ORIGIN_VERSION_TAG)
                    for v in _pages(
                        self.client.search_model_versions,
                        _name_filter(existing.name),
                        PAGE,
                    )
                }
                missing = [v for v in versions if v["version"] not in done]
                if missing:
                    action = Action(
                        "registered model",
                        rm["name"],
                        "complete",
                        existing.name,
                        details=f"{len(missing)} versions missing",
                    )
                    self.registry_plan.append((rm, action, missing))
                else:
                    action = Action(
                        "registered model", rm["name"], "present", existing.name
                    )
            elif rm["name"] not in names:
                action = Action(
                    "registered model",
                    rm["name"],
                    "create",
                    rm["name"],
                    details=details,
                )
                self.registry_plan.append((rm, action, versions))
            else:
                action = self._name_taken(
                    "registered model", rm["name"], reserved, details
                )
                if action.action == "rename":
                    self.registry_plan.append((rm, action, versions))
            if lost and action.action in ("create", "rename", "complete"):
                report.warnings.append(
                    f"registered model {rm['name']!r}: version(s) {', '.join(lost)} "
                    "not restored: their model or run is not restored with this "
                    "backup (its experiment is skipped)"
                )
            report.actions.append(action)

    def _match_source(self, version: dict) -> tuple[str, str, str] | None:
        """The logged model or run of the backup a version's source points into.

        MLflow 3 writes a logged model as `models:/<model id>` or as its storage
        location (a tracking server resolves one into the other); older
        versions point at run artifacts, as `runs:/<run id>/...` or their URI.
        """
        source = version["source"]
        match = re.fullmatch(r"models:/([^/@]+)", source)
        if match:
            return "model", match.group(1), ""
        match = re.fullmatch(r"runs:/([^/]+)(/.*)?", source)
        if match:
            return "run", match.group(1), match.group(2) or ""
        for exp in self.backup.data["experiments"]:
            for model in exp["logged_models"]:
                # A model id (m-<uuid>) is a folder of its storage location.
                if version.get("model_id") == model["id"] or (
                    f"/{model['id']}/" in f"{source}/"
                ):
                    return "model", model["id"], ""
            for run in exp["runs"]:
                base = (run["artifact_uri"] or "").rstrip("/")
                if base and source.startswith(base + "/"):
                    return "run", run["id"], source[len(base) :]
        return None

    def _source_state(self, version: dict) -> str:
        """`restored` (it comes with the restore), `lost`, or `external`."""
        match = self._match_source(version)
        if match is not None:
            kind, old, _ = match
            pool = self.restorable_models if kind == "model" else self.restorable_runs
            return "restored" if old in pool else "lost"
        if version["source"].startswith(("models:/", "runs:/", "mlflow-artifacts:")):
            return "lost"  # tracker-relative, and not in this backup
        return "external"  # e.g. s3://...: kept as it is

    # carrying it out

    def execute(self) -> None:
        for exp, action, existing in self.experiment_plan:
            if action.action == "present":
                continue
            if existing is None:
                tags = {
                    **exp["tags"],
                    ORIGIN_TAG: self._origin("experiment", exp["id"]),
                }
                experiment_id = self.client.create_experiment(
                    action.target,
                    artifact_location=self.artifact_location,
                    tags=tags,
                )
                self.report.created["experiments"] += 1
            else:
                experiment_id = existing.experiment_id
            self.echo(f"  experiment {action.target!r}: restoring")
            for run in _parents_first(exp["runs"]):
                if run["id"] not in self.report.run_ids:
                    self._restore_run(experiment_id, run)
            for model in exp["logged_models"]:
                if model["id"] not in self.model_ids:
                    self._restore_logged_model(experiment_id, model)
            for run in exp["runs"]:
                if run["id"] in self.new_runs and run["outputs"]:
                    self._link_outputs(run)
        for rm, action, versions in self.registry_plan:
            self._restore_registered_model(rm, action, versions)

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
        for chunk in _chunks(others, MAX_TAGS):
            self.client.log_batch(run_id, tags=chunk)
        params = [Param(k, str(v)) for k, v in run["params"].items()]
        for chunk in _chunks(params, MAX_PARAMS):
            self.client.log_batch(run_id, params=chunk)
        metrics = [
            Metric(key, value, timestamp, step)
            for key, history in run["metrics"].items()
            for value, timestamp, step in history
        ]
        for chunk in _chunks(metrics, MAX_METRICS):
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
                    _rewrite_mlmodel(
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
        match = self._match_source(version)
        if match is not None:
            kind, old, rest = match
            if kind == "model" and old in self.model_ids:
                return f"models:/{self.model_ids[old]}", self.model_ids[old]
            if kind == "run" and old in self.report.run_ids:
                return f"runs:/{self.report.run_ids[old]}{rest}", None
        return source, None

    def _restore_registered_model(
        self, rm: dict, action: Action, versions: list[dict]
    ) -> None:
        name = action.target
        if action.action in ("create", "rename"):
            tags = {k: v for k, v in rm["tags"].items() if k not in ORIGIN_TAGS}
            tags[ORIGIN_TAG] = self._origin("model", rm["name"])
            self.client.create_registered_model(
                name, tags=tags, description=rm["description"] or None
            )
            self.report.created["registered_models"] += 1
        numbers: dict[str, str] = {}
        for version in versions:
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
        for alias, old in rm["aliases"].items():
            if old in numbers:
                self.client.set_registered_model_alias(name, alias, numbers[old])


def restore(
    path: Path,
    tracking_uri: str,
    on_conflict: str = "skip",
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    artifact_location: str | None = None,
) -> RestoreReport:
    """Restores a backup into the tracker at `tracking_uri`.

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
            ./mlruns, see `stack_artifact_location`).

    Returns:
        What was (or would be) done.

    Raises:
        BackupError: For a bad backup file, an unknown on_conflict, an unreachable
            tracker, or a tracker error during the restore (what was restored stays;
            running the same restore again completes it).
    """
    if on_conflict not in ON_CONFLICT:
        raise BackupError(
            f"on_conflict must be one of {ON_CONFLICT}, not {on_conflict!r}."
        )
    with open_backup(path) as opened:
        check_tracker(tracking_uri)
        restorer = _Restorer(opened, tracking_uri, on_conflict, echo, artifact_location)
        try:
            report = restorer.plan(dry_run)
            if not dry_run:
                with _quiet():
                    restorer.execute()
        except BackupError:
            raise
        except Exception as err:  # the tracker's, its artifact store's, the disk's
            raise BackupError(
                f"Restore into {public_uri(tracking_uri)} stopped: {_describe(err)}\n"
                "What was restored stays; run the same restore again to complete it."
            ) from None
    return report
