"""Small file helpers shared by the dataset stages."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def link_or_copy(src: Path, dst: Path) -> None:
    """Places `src` at `dst` as a hard link, or a copy across filesystems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def ensure_empty_dir(dest: Path) -> None:
    """Creates `dest`, refusing one that already holds files.

    Raises:
        ValueError: If `dest` exists and is not an empty directory.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(
            f"{dest} already exists and is not empty; pass a new or empty directory "
            "so earlier results are never mixed in or overwritten."
        )
    dest.mkdir(parents=True, exist_ok=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Returns the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def copy_tree(src: Path, dst: Path) -> None:
    """Copies a directory tree, hard-linking files where the filesystem allows."""
    for path in sorted(src.rglob("*")):
        if path.is_file():
            link_or_copy(path, dst / path.relative_to(src))


def try_lock(path: Path) -> IO[str] | None:
    """Takes an exclusive `flock` on `path` (created) without waiting.

    Returns:
        The open handle holding the lock (closing it releases the lock; so does
        the process ending), or None when another process or handle holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Holds an exclusive `flock` on `path` (created), waiting for it if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
