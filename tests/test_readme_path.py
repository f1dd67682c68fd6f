"""The README's path, replayed as a user walks it, in a throwaway clone.

A copy of the working tree (tracked and untracked-but-not-ignored files, never the
checkout's `.zen/`, `.visionops/` or `outputs/`), initialised as `make init` does,
then the documented commands in order, each its own `run.py` process with the
clone's library first on `sys.path` (as the editable install of that clone puts it)
and a throwaway $HOME. The other tests run in an isolated store; this one runs where
a user's state lives: the clone's own `.zen/` and `.visionops/`, which is where the
`src.visionops` import name and the reset active stack came from.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[1]
# The variables the test session points at its own throwaway state: the clone's
# processes must find their state the way a user's do.
SESSION_ONLY = (
    "VISIONOPS_STATE_DIR",
    "VISIONOPS_ROOT",
    "ZENML_REPOSITORY_PATH",
    "ZENML_CONFIG_PATH",
    "YOLO_CONFIG_DIR",
    "BENTOML_HOME",
    "MPLCONFIGDIR",
    "XDG_CACHE_HOME",
    "UV_CACHE_DIR",
    "ORT_DISABLE_TELEMETRY",
    "MLFLOW_TRACKING_URI",
)
# `make init`'s `zenml init`, through visionops (see the Makefile).
ZENML_INIT = 'import visionops; from zenml.cli.cli import cli; cli(["init"])'
TINY = [*TINY_TRAINING, "train.epochs=2"]


def _clone(dest: Path) -> Path:
    """Copies what `git clone` of this working tree would hold, plus new files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = Path(os.fsdecode(raw))
        source = REPO / rel
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, target)
    return dest


class User:
    """Runs commands in the clone as a user would, and keeps what they saw."""

    def __init__(self, clone: Path, home: Path) -> None:
        self.clone = clone
        self.env = {k: v for k, v in os.environ.items() if k not in SESSION_ONLY}
        self.env.update(
            HOME=str(home),
            # The clone's library, where its editable install would point.
            PYTHONPATH=str(clone / "src"),
        )

    def run(self, *args: str, code: str | None = None) -> str:
        command = [sys.executable, *(("-c", code) if code else ("run.py", *args))]
        result = subprocess.run(
            command,
            cwd=self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        seen = result.stdout + result.stderr
        assert result.returncode == 0, f"{' '.join(args) or code}\n{seen[-4000:]}"
        assert "Traceback (most recent call last)" not in seen
        return seen


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The clone after `make init` and the README's commands, with their outputs."""
    root = tmp_path_factory.mktemp("readme")
    home = root / "home"
    home.mkdir()
    clone = _clone(root / "visionops")
    user = User(clone, home)
    seen: dict[str, str] = {}
    # make init
    seen["init"] = user.run(code=ZENML_INIT)
    seen["stack"] = user.run("--stack", "local")
    # Running pipelines, in the README's order.
    sets = [arg for item in TINY for arg in ("--set", item)]
    seen["ingestion"] = user.run(
        "--pipeline", "ingestion", "--set", "anonymize.enabled=false"
    )
    seen["training"] = user.run("--pipeline", "training", *sets)
    seen["deployment"] = user.run("--pipeline", "deployment")
    # `make serve` (dry run: the command it would start), with this session's venv.
    venv = Path(sys.executable).parent.parent
    seen["make serve"] = subprocess.run(
        ["make", "-n", "serve", f"VENV={venv}"],
        cwd=clone,
        env=user.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    photos = clone / "data" / "sample" / "boards" / "test" / "images"
    seen["batch folder"] = user.run("--pipeline", "batch", "--source", str(photos))
    seen["batch dataset"] = user.run("--pipeline", "batch", "--source", "dataset:val")
    seen["status"] = user.run("--status")
    seen["backup"] = user.run("--backup", "mlflow-backup.zip")
    seen["restore"] = user.run("--restore", "mlflow-backup.zip", "--dry-run")
    return {"clone": clone, "home": home, "seen": seen, "photos": photos}


def test_every_step_of_the_readme_succeeds_for_a_user(walked: dict) -> None:
    seen, clone = walked["seen"], walked["clone"]
    assert "Active stack: local" in seen["stack"]
    assert "no longer available" not in seen["stack"]  # init and stack: one store
    assert "Bento: board-detector:" in seen["deployment"]
    built = re.search(r"Bento: (board-detector:\w+)", seen["deployment"])[1]
    assert f"bentoml serve {built} " in seen["make serve"]  # the Bento built last
    folder_runs = sorted((clone / "outputs" / "batch").iterdir())
    assert len(folder_runs) == 2  # the folder, then the split
    n_photos = len(list(walked["photos"].glob("*.jpg")))
    for run_dir in folder_runs:
        assert (run_dir / "predictions.csv").is_file()
        assert (run_dir / "summary.json").is_file()
        assert f"Predictions: {run_dir}" in seen["batch folder"] + seen["batch dataset"]
    assert f"Batch: {n_photos} images in = {n_photos} predicted" in seen["batch folder"]
    assert "model: board-detector v1" in seen["batch dataset"]
    assert "Champion: board-detector v1" in seen["status"]
    dataset = next(x for x in seen["status"].splitlines() if x.startswith("Dataset"))
    assert "version 1," in dataset
    assert (clone / "mlflow-backup.zip").is_file()
    assert "Dry run: restore" in seen["restore"]


def test_artifacts_carry_one_import_name(walked: dict) -> None:
    """The clone's `.zen/` made ZenML record `src.visionops...`; never again."""
    code = (
        "import visionops\n"
        "from zenml.client import Client\n"
        "for a in Client().list_artifact_versions(size=1000).items:\n"
        "    print(a.data_type.import_path, a.materializer.import_path)\n"
    )
    sources = User(walked["clone"], walked["home"]).run(code=code).split()
    ours = [s for s in sources if "visionops" in s]
    assert ours, sources
    assert all(s.startswith("visionops.") for s in ours), sorted(set(ours))


def test_nothing_is_written_outside_the_clone(walked: dict) -> None:
    home = walked["home"]
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
    assert (walked["clone"] / ".visionops" / "zenml").is_dir()
