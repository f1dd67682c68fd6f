"""The directory materializers' download of a remote artifact into the local cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REMOTE = "s3://bucket/artifacts/dataset/42"
REMOTE_PREFIX = "s3://"


class _Store:
    """A remote artifact store on a local folder; `fail_after` files, it breaks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fail_after: int | None = None
        self.copied = 0

    def local(self, uri: str) -> Path:
        return self.root / uri.removeprefix("s3://")

    def walk(self, top: str):
        for dirpath, dirs, files in os.walk(self.local(top)):
            yield REMOTE_PREFIX + os.path.relpath(dirpath, self.root), dirs, files

    def copy(self, src: str, dst: str, overwrite: bool = False) -> None:
        if self.fail_after is not None and self.copied >= self.fail_after:
            raise OSError("connection reset by peer")
        shutil.copyfile(self.local(src), dst)
        self.copied += 1


def test_a_download_cut_short_is_never_taken_for_a_complete_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from visionops.app import materializers

    store = _Store(tmp_path / "remote")
    data = store.local(REMOTE) / materializers.DATA_DIR
    for name in ("a.txt", "b.txt", "sub/c.txt"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(name * 100)
    monkeypatch.setattr(materializers, "fileio", store)
    monkeypatch.setattr(materializers, "state_dir", lambda: tmp_path / "state")
    cache = tmp_path / "state" / "artifact-cache"

    store.fail_after = 2  # the third file never arrives
    with pytest.raises(OSError, match="connection reset"):
        materializers.DatasetVersionMaterializer(uri=REMOTE)._fetch()
    assert list(cache.iterdir()) == []  # no half copy, marked or not

    store.fail_after = None
    local = materializers.DatasetVersionMaterializer(uri=REMOTE)._fetch()
    got = sorted(p.relative_to(local).as_posix() for p in local.rglob("*.txt"))
    assert got == ["a.txt", "b.txt", "sub/c.txt"]
    assert (local / "sub/c.txt").read_text() == "sub/c.txt" * 100
    assert (local / materializers.COMPLETE).is_file()
    assert [p.name for p in cache.iterdir()] == [local.name]
    # Complete: read from the cache, not downloaded again.
    store.copied, store.fail_after = 0, 0
    assert materializers.DatasetVersionMaterializer(uri=REMOTE)._fetch() == local
