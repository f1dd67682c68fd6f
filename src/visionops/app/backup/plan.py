"""Planning a restore: a pure function of the backup and the target's state.

`read_target` reads what the target tracker holds that a restore decides on (it only
searches); `plan_restore` decides, from that snapshot and the backup, what is created,
completed, renamed or skipped, without touching any tracker. A dry run prints the
plan; a restore applies it (`visionops.app.backup.restore`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from visionops.app.backup.archive import (
    INCOMPLETE_TAG,
    ORIGIN_MODEL_TAG,
    ORIGIN_RUN_TAG,
    ORIGIN_TAG,
    ORIGIN_VERSION_TAG,
    RESTORE_LOCK,
    BackupError,
)
from visionops.app.backup.tracker import PAGE, name_filter, pages

ON_CONFLICT = ("skip", "rename")


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


# --- the target's state -----------------------------------------------------------


@dataclass(frozen=True)
class TargetExperiment:
    """An experiment of the target, as planning sees it."""

    id: str
    name: str
    active: bool
    origin: str | None  # its ORIGIN_TAG, if a restore created it


@dataclass
class TargetState:
    """What the target holds that a restore decides on: a read-only snapshot.

    Runs and logged models are listed for restored experiments only (those with an
    origin tag), by the original id they came from.
    """

    uri: str
    experiments: list[TargetExperiment] = field(default_factory=list)
    runs: dict[str, dict[str, str]] = field(default_factory=dict)  # exp -> old: new
    incomplete_runs: dict[str, list[str]] = field(default_factory=dict)  # exp -> ids
    logged_models: dict[str, dict[str, str]] = field(default_factory=dict)
    registered_models: dict[str, str | None] = field(default_factory=dict)  # origin
    # Restored models only: name -> {origin version: its version here}, and their
    # aliases (alias -> version here).
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)


def read_target(client: Any, uri: str) -> TargetState:
    """Reads the target's state with searches only: nothing is written.

    Args:
        client: An MlflowClient on the target.
        uri: The target's URI as shown to people (without credentials).
    """
    from mlflow.entities import ViewType

    state = TargetState(uri)
    for exp in pages(
        client.search_experiments, view_type=ViewType.ALL, max_results=PAGE
    ):
        origin = (exp.tags or {}).get(ORIGIN_TAG)
        active = exp.lifecycle_stage == "active"
        state.experiments.append(
            TargetExperiment(exp.experiment_id, exp.name, active, origin)
        )
        if not (origin and active):
            continue
        runs, incomplete = {}, []
        for run in pages(
            client.search_runs,
            [exp.experiment_id],
            filter_string=f"tags.`{ORIGIN_RUN_TAG}` LIKE '%'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=PAGE,
        ):
            if run.data.tags.get(INCOMPLETE_TAG):
                incomplete.append(run.info.run_id)
            else:
                runs[run.data.tags[ORIGIN_RUN_TAG]] = run.info.run_id
        state.runs[exp.experiment_id] = runs
        state.incomplete_runs[exp.experiment_id] = incomplete
        state.logged_models[exp.experiment_id] = {
            model.tags[ORIGIN_MODEL_TAG]: model.model_id
            for model in pages(
                client.search_logged_models, [exp.experiment_id], max_results=100
            )
            if (model.tags or {}).get(ORIGIN_MODEL_TAG)
        }
    for rm in pages(client.search_registered_models, max_results=PAGE):
        if rm.name == RESTORE_LOCK:
            continue  # the restore running now (`restore.restore_lock`)
        origin = (rm.tags or {}).get(ORIGIN_TAG)
        state.registered_models[rm.name] = origin
        if origin:
            state.versions[rm.name] = {
                v.tags[ORIGIN_VERSION_TAG]: str(v.version)
                for v in pages(client.search_model_versions, name_filter(rm.name), PAGE)
                if (v.tags or {}).get(ORIGIN_VERSION_TAG)
            }
            state.aliases[rm.name] = {a: str(v) for a, v in (rm.aliases or {}).items()}
    return state


# --- the plan ---------------------------------------------------------------------


@dataclass
class ExperimentStep:
    """One experiment to create, rename or complete."""

    experiment: dict  # from the backup
    action: Action
    existing_id: str | None  # the target experiment to complete, if any


@dataclass
class ModelStep:
    """One registered model to create, rename or complete, with its versions."""

    model: dict  # from the backup
    action: Action
    versions: list[dict]  # to create
    # Versions an earlier restore made (origin version -> version here), and the
    # aliases to set (alias -> origin version).
    present: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    """What a restore will do; `apply_plan` carries it out."""

    source: str
    target: str
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    experiments: list[ExperimentStep] = field(default_factory=list)
    models: list[ModelStep] = field(default_factory=list)
    run_ids: dict[str, str] = field(default_factory=dict)  # restored before: old->new
    model_ids: dict[str, str] = field(default_factory=dict)
    redo_runs: list[str] = field(default_factory=list)  # incomplete: deleted, redone

    def report(self, dry_run: bool) -> RestoreReport:
        """A report holding the plan's decisions (nothing created yet)."""
        return RestoreReport(
            self.source,
            self.target,
            dry_run,
            actions=list(self.actions),
            warnings=list(self.warnings),
            run_ids=dict(self.run_ids),
        )


def origin(source: str, kind: str, key: str) -> str:
    """The origin tag value of an experiment or registered model of a backup."""
    return f"{source}#{kind}:{key}"


def free_name(taken: set[str], name: str) -> str:
    """`<name>-restored-<n>` with the smallest n >= 2 that is not taken (and takes it).

    `taken` holds the target's names and every name of the backup, so a new name
    never lands on one that another entity of the same restore keeps.
    """
    n = 2
    while f"{name}-restored-{n}" in taken:
        n += 1
    taken.add(f"{name}-restored-{n}")
    return f"{name}-restored-{n}"


def match_source(data: dict, version: dict) -> tuple[str, str, str] | None:
    """The logged model or run of the backup a version's source points into.

    MLflow 3 writes a logged model as `models:/<model id>` or as its storage
    location (a tracking server resolves one into the other); older versions point
    at run artifacts, as `runs:/<run id>/...` or their URI.
    """
    source = version["source"]
    match = re.fullmatch(r"models:/([^/@]+)", source)
    if match:
        return "model", match.group(1), ""
    match = re.fullmatch(r"runs:/([^/]+)(/.*)?", source)
    if match:
        return "run", match.group(1), match.group(2) or ""
    for exp in data["experiments"]:
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


def _name_taken(
    kind: str, name: str, on_conflict: str, reserved: set[str], details: str
) -> Action:
    """Skip or rename (per --on-conflict) an entity whose name the target has."""
    if on_conflict == "skip":
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
        free_name(reserved, name),
        reason="the name is taken in the target",
        details=details,
    )


def plan_restore(
    data: dict, source: str, target: TargetState, on_conflict: str = "skip"
) -> Plan:
    """Decides what a restore does; reads its arguments only, writes nothing.

    Args:
        data: The backup's `data.json` (experiments and registry).
        source: The backup's source URI (origin tags are made from it).
        target: The target's state, from `read_target`.
        on_conflict: `skip` or `rename` an entity whose name the target has.

    Raises:
        BackupError: For an unknown on_conflict.
    """
    if on_conflict not in ON_CONFLICT:
        raise BackupError(
            f"on_conflict must be one of {ON_CONFLICT}, not {on_conflict!r}."
        )
    plan = Plan(source, target.uri)
    taken = {e.name for e in target.experiments}  # deleted too: MLflow keeps names
    reserved = taken | {e["name"] for e in data["experiments"]}
    by_origin = {e.origin: e for e in target.experiments if e.active and e.origin}
    for exp in data["experiments"]:
        details = f"{len(exp['runs'])} runs, {len(exp['logged_models'])} logged models"
        existing = by_origin.get(origin(source, "experiment", exp["id"]))
        if existing is not None:
            runs = target.runs.get(existing.id, {})
            models = target.logged_models.get(existing.id, {})
            plan.run_ids.update(runs)
            plan.model_ids.update(models)
            missing_runs = [r for r in exp["runs"] if r["id"] not in runs]
            missing_models = [m for m in exp["logged_models"] if m["id"] not in models]
            redo = target.incomplete_runs.get(existing.id, [])
            plan.redo_runs += redo
            if missing_runs or missing_models:
                details = (
                    f"{len(missing_runs)} runs, "
                    f"{len(missing_models)} logged models missing"
                )
                if redo:
                    details += f"; {len(redo)} incomplete runs redone"
                action = Action(
                    "experiment",
                    exp["name"],
                    "complete",
                    existing.name,
                    details=details,
                )
            else:
                action = Action("experiment", exp["name"], "present", existing.name)
            plan.experiments.append(ExperimentStep(exp, action, existing.id))
        elif exp["name"] not in taken:
            action = Action(
                "experiment", exp["name"], "create", exp["name"], details=details
            )
            plan.experiments.append(ExperimentStep(exp, action, None))
        elif not exp["runs"] and not exp["logged_models"]:
            action = Action(
                "experiment",
                exp["name"],
                "skip",
                reason="exists in the target, and is empty in the backup",
            )
        else:
            action = _name_taken(
                "experiment", exp["name"], on_conflict, reserved, details
            )
            if action.action == "rename":
                plan.experiments.append(ExperimentStep(exp, action, None))
        plan.actions.append(action)
    _plan_registry(plan, data, source, target, on_conflict)
    return plan


def _plan_registry(
    plan: Plan, data: dict, source: str, target: TargetState, on_conflict: str
) -> None:
    restorable_runs = set(plan.run_ids)
    restorable_models = set(plan.model_ids)
    for step in plan.experiments:
        restorable_runs |= {r["id"] for r in step.experiment["runs"]}
        restorable_models |= {m["id"] for m in step.experiment["logged_models"]}

    def state(version: dict) -> str:
        """`restored` (it comes with the restore), `lost`, or `external`."""
        match = match_source(data, version)
        if match is not None:
            kind, old, _ = match
            pool = restorable_models if kind == "model" else restorable_runs
            return "restored" if old in pool else "lost"
        if version["source"].startswith(("models:/", "runs:/", "mlflow-artifacts:")):
            return "lost"  # tracker-relative, and not in this backup
        return "external"  # e.g. s3://...: kept as it is

    names = set(target.registered_models)
    reserved = names | {m["name"] for m in data["registered_models"]}
    by_origin = {o: name for name, o in target.registered_models.items() if o}
    for rm in data["registered_models"]:
        # A version whose logged model or run stays behind (in a skipped experiment)
        # cannot be restored: nothing in the target could load it.
        versions = [v for v in rm["versions"] if state(v) != "lost"]
        lost = [v["version"] for v in rm["versions"] if v not in versions]
        aliases = ", ".join(sorted(rm["aliases"])) or "none"
        details = f"{len(versions)} versions, aliases: {aliases}"
        existing = by_origin.get(origin(source, "model", rm["name"]))
        if existing is not None:
            done = target.versions.get(existing, {})
            missing = [v for v in versions if v["version"] not in done]
            aliases = _missing_aliases(
                plan, rm, existing, versions, done, target.aliases.get(existing, {})
            )
            if missing or aliases:
                gaps = [f"{len(missing)} versions missing"] if missing else []
                if aliases:
                    gaps.append(f"aliases missing: {', '.join(sorted(aliases))}")
                action = Action(
                    "registered model",
                    rm["name"],
                    "complete",
                    existing,
                    details="; ".join(gaps),
                )
                plan.models.append(ModelStep(rm, action, missing, done, aliases))
            else:
                action = Action("registered model", rm["name"], "present", existing)
        elif rm["name"] not in names:
            action = Action(
                "registered model", rm["name"], "create", rm["name"], details=details
            )
            plan.models.append(ModelStep(rm, action, versions, {}, rm["aliases"]))
        else:
            action = _name_taken(
                "registered model", rm["name"], on_conflict, reserved, details
            )
            if action.action == "rename":
                plan.models.append(ModelStep(rm, action, versions, {}, rm["aliases"]))
        if lost and action.action in ("create", "rename", "complete"):
            plan.warnings.append(
                f"registered model {rm['name']!r}: version(s) {', '.join(lost)} "
                "not restored: their model or run is not restored with this "
                "backup (its experiment is skipped)"
            )
        plan.actions.append(action)


def _missing_aliases(
    plan: Plan,
    rm: dict,
    name: str,
    versions: list[dict],
    done: dict[str, str],
    current: dict[str, str],
) -> dict[str, str]:
    """The backup's aliases that the restored model `name` lacks (alias -> origin
    version): a restore stopped before it set them, or they were deleted since.

    An alias the target moved to another version since is kept there (whoever
    moved it decided), and said in a warning.
    """
    restorable = {v["version"] for v in versions} | set(done)
    missing = {}
    for alias, old in rm["aliases"].items():
        if old not in restorable:
            continue
        if alias not in current:
            missing[alias] = old
        elif current[alias] != done.get(old):
            plan.warnings.append(
                f"registered model {name!r}: alias {alias!r} is on version "
                f"{current[alias]} here, not on the restored version {old}: kept"
            )
    return missing
