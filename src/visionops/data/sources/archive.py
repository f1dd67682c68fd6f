"""Safe, cached extraction of zipped dataset exports."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from visionops.data.manifest import safe_id
from visionops.data.sources.base import SourceError

# Finder metadata that macOS zips carry beside the real files.
_IGNORED_TOP = ("__MACOSX",)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def _checked_members(archive: Path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    members = []
    for info in zf.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise SourceError(
                f"{archive}: member {info.filename!r} would be written outside the "
                "extraction folder (zip-slip). Re-create the archive with relative "
                "paths only."
            )
        if parts and parts[0] in _IGNORED_TOP:
            continue
        members.append(info)
    return members


def extract_zip(archive: Path, cache_dir: Path) -> Path:
    """Extracts a zip once into `cache_dir`, keyed by its content.

    Extraction goes to a temporary sibling that is renamed into place, so an
    interrupted run never leaves a half-extracted folder to be reused.

    Args:
        archive: The zip file.
        cache_dir: Folder holding extracted archives.

    Returns:
        The folder the archive was extracted into.

    Raises:
        SourceError: When the file is not a zip or a member escapes the folder.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceError(
            f"{archive} is not a readable zip file ({exc}). Download it again."
        ) from exc
    target = cache_dir / f"{safe_id(archive.stem)}-{_digest(archive)}"
    with zf:
        members = _checked_members(archive, zf)
        if target.is_dir():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir))
        try:
            for info in members:
                zf.extract(info, scratch)
            os.rename(scratch, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another process finished the same archive first; use its copy.
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target
