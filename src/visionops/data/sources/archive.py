"""Safe, capped, cached extraction of zipped dataset exports."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field

from visionops.data.manifest import safe_id
from visionops.data.sources.base import SourceError

# Finder metadata that macOS zips carry beside the real files.
_IGNORED_TOP = ("__MACOSX",)
_GIB = 1 << 30


class ArchiveLimits(BaseModel):
    """What a zipped export may expand to; past any of these it is refused.

    Attributes:
        max_bytes: Total uncompressed size of the members.
        max_members: Number of members (files and folders).
        max_ratio: Uncompressed / compressed size of the whole archive; images
            barely compress, so a far higher ratio is a zip bomb.
    """

    model_config = ConfigDict(extra="forbid")

    max_bytes: int = Field(default=20 * _GIB, gt=0)
    max_members: int = Field(default=500_000, gt=0)
    max_ratio: float = Field(default=100.0, gt=1)


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def _open(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise SourceError(
            f"{archive} is not a readable zip file ({exc}). Download it again."
        ) from exc


def _checked_members(
    archive: Path, zf: zipfile.ZipFile, limits: ArchiveLimits
) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise SourceError(
            f"{archive} holds {len(infos):,} members, more than the limit of "
            f"{limits.max_members:,}; raise archive.max_members if it is genuine."
        )
    total = sum(info.file_size for info in infos)
    packed = max(1, archive.stat().st_size)
    if total > limits.max_bytes:
        raise SourceError(
            f"{archive} expands to {total / _GIB:.2f} GiB, more than the limit of "
            f"{limits.max_bytes / _GIB:.2f} GiB; raise archive.max_bytes if it "
            "is genuine."
        )
    if total / packed > limits.max_ratio:
        raise SourceError(
            f"{archive} expands {total / packed:.0f}-fold ({packed:,} bytes to "
            f"{total:,}), more than archive.max_ratio={limits.max_ratio:g}: refused "
            "as a probable zip bomb."
        )
    members = []
    for info in infos:
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


def check_zip(archive: Path, limits: ArchiveLimits | None = None) -> None:
    """Checks a zip's directory (readable, within limits, no zip-slip) unextracted.

    Raises:
        SourceError: Naming the archive and what is wrong with it.
    """
    with _open(archive) as zf:
        _checked_members(archive, zf, limits or ArchiveLimits())


def extract_zip(
    archive: Path, cache_dir: Path, limits: ArchiveLimits | None = None
) -> Path:
    """Extracts a zip once into `cache_dir`, keyed by its content.

    Extraction goes to a temporary sibling that is renamed into place, so an
    interrupted run never leaves a half-extracted folder to be reused. The
    limits are checked on the zip's directory before anything is written, and
    no member is written past its declared size.

    Args:
        archive: The zip file.
        cache_dir: Folder holding extracted archives.
        limits: Caps on size, member count and ratio; defaults apply when None.

    Returns:
        The folder the archive was extracted into.

    Raises:
        SourceError: When the file is not a zip, a member escapes the folder or
            is corrupt, or the archive is past a limit.
    """
    zf = _open(archive)
    target = cache_dir / f"{safe_id(archive.stem)}-{_digest(archive)}"
    with zf:
        members = _checked_members(archive, zf, limits or ArchiveLimits())
        if target.is_dir():
            return target
        cache_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache_dir))
        try:
            for info in members:
                try:
                    zf.extract(info, scratch)
                except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                    raise SourceError(
                        f"{archive}: member {info.filename!r} is corrupt ({exc}). "
                        "Download or re-create the archive."
                    ) from None
                except (NotImplementedError, RuntimeError) as exc:
                    raise SourceError(
                        f"{archive}: member {info.filename!r} cannot be extracted "
                        f"({exc}). Re-create the archive without encryption, "
                        "using deflate."
                    ) from None
            os.rename(scratch, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another process finished the same archive first; use its copy.
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target
