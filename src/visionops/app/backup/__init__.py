"""Back up an MLflow tracker into a zip, and restore it into any other tracker.

A backup holds every active experiment with its runs (params, tags, full metric
histories, dataset inputs, artifact files), MLflow 3 logged models with their files,
and the model registry (registered models, versions with tags, descriptions and
stages, aliases). It goes through the MlflowClient API only, so SQLite stores and
tracking servers are alike on either side.

- `archive`: the zip's format, and the checks made on opening one.
- `export`: `backup`, the tracker into a zip.
- `plan`: what a restore would do, decided from the backup and a read-only snapshot
  of the target (a dry run prints it).
- `restore`: `restore` plans, then applies the plan.

docs/backup.md describes the archive and the restore rules.
"""

from visionops.app.backup.archive import (
    FORMAT,
    FORMAT_VERSION,
    ORIGIN_TAGS,
    Backup,
    BackupError,
    open_backup,
)
from visionops.app.backup.export import BackupSummary, backup, format_backup
from visionops.app.backup.plan import (
    Action,
    Plan,
    RestoreReport,
    TargetState,
    plan_restore,
    read_target,
)
from visionops.app.backup.restore import apply_plan, restore
from visionops.app.backup.tracker import check_tracker, public_uri

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ORIGIN_TAGS",
    "Action",
    "Backup",
    "BackupError",
    "BackupSummary",
    "Plan",
    "RestoreReport",
    "TargetState",
    "apply_plan",
    "backup",
    "check_tracker",
    "format_backup",
    "open_backup",
    "plan_restore",
    "public_uri",
    "read_target",
    "restore",
]
