"""Small file helpers: copies, links, hashes, durable replacement, CSV tables."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

# A spreadsheet reads a cell that starts with one of these as a formula (OWASP's
# CSV injection list); such a cell is written with a leading `'`.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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


def durable_replace(src: Path, dst: Path) -> None:
    """Moves the finished file `src` onto `dst`, its bytes on disk first.

    `src` is flushed to disk before the rename and the folder after it, so that a
    crash leaves either the old `dst` or the whole new one, never a renamed file
    whose data had not been written yet.
    """
    with open(src, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(src, dst)
    folder = os.open(Path(dst).parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def csv_cell(value: Any) -> Any:
    """`value`, with a `'` before a text that a spreadsheet would run as a formula
    (a class or file name like `=HYPERLINK(...)`); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return f"'{value}"
    return value


class CsvWriter:
    """`csv.writer` for tables people open in a spreadsheet: every cell through
    `csv_cell`."""

    def __init__(self, handle: IO[str]) -> None:
        self._writer = csv.writer(handle)

    def writerow(self, row: Iterable[Any]) -> None:
        """Writes one row."""
        self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Writes every row."""
        for row in rows:
            self.writerow(row)


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
