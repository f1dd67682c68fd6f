"""The backup archive: its format, its manifest, and the checks made on opening it.

A backup is one zip: `manifest.json` (format, version, source, counts), `data.json`
(experiments with their runs and logged models, and the registry) and the files:
`runs/<run id>/...` and `models/<logged model id>/...`. See docs/backup.md.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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
# The registered model a restore into a tracking server holds while it runs: creating
# it is atomic on the server, so a second restore finds it and stops.
RESTORE_LOCK = "visionops-restore-lock"
ORIGIN_TAGS = (
    ORIGIN_RUN_TAG,
    ORIGIN_MODEL_TAG,
    ORIGIN_TAG,
    ORIGIN_VERSION_TAG,
    INCOMPLETE_TAG,
)


class BackupError(RuntimeError):
    """A backup or restore that cannot go on, with what to do about it."""


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


def check_member_names(path: Path, archive: zipfile.ZipFile) -> None:
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
        check_member_names(path, archive)
        members: dict[str, list[str]] = {}
        for name in archive.namelist():
            parts = name.split("/", 2)
            if len(parts) == 3 and parts[2] and not name.endswith("/"):
                members.setdefault(f"{parts[0]}/{parts[1]}", []).append(name)
        yield Backup(path, manifest, data, archive, members)
