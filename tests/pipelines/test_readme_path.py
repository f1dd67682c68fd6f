"""The README's path, replayed as a user walks it, in a throwaway clone.

A copy of the working tree (tracked and untracked-but-not-ignored files, never the
checkout's `.zen/`, `.visionops/` or `outputs/`), initialised as `make init` does,
then the commands of the README's "Running pipelines" block, read from README.md
and run in its order, each its own `run.py` process with the clone's library first
on `sys.path` (as the editable install of that clone puts it) and a throwaway $HOME.
Only the training settings are shrunk (and face blurring, which finds no face in
the sample, is off). The other tests run in an isolated store; this one runs where
a user's state lives: the clone's own `.zen/` and `.visionops/`, which is where the
`src.visionops` import name and the reset active stack came from.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAINING

REPO = Path(__file__).resolve().parents[2]
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
# The README section whose first bash block is the walk this test replays.
WALK_HEADING = "## Running pipelines"
# What the walk adds to a pipeline's command, so that it takes minutes, not hours.
SHRUNK = {
    "ingestion": ["anonymize.enabled=false"],
    "training": [*TINY_TRAINING, "train.epochs=2"],
}
# The commands the assertions below need, each found in the walk by what it does.
Args = list[str]
EXPECTED: dict[str, tuple[str, Callable[[Args], bool]]] = {
    "stack": ("run.py --stack local", lambda a: a == ["--stack", "local"]),
    "ingestion": ("run.py --pipeline ingestion", lambda a: a == _pipeline("ingestion")),
    "training": ("run.py --pipeline training", lambda a: a == _pipeline("training")),
    "deployment": (
        "run.py --pipeline deployment",
        lambda a: a == _pipeline("deployment"),
    ),
    "batch folder": (
        "run.py --pipeline batch --source <a folder of images>",
        lambda a: (
            a[:3] == [*_pipeline("batch"), "--source"]
            and not a[3].startswith("dataset:")
        ),
    ),
    "batch dataset": (
        "run.py --pipeline batch --source dataset:<split>",
        lambda a: (
            a[:3] == [*_pipeline("batch"), "--source"] and a[3].startswith("dataset:")
        ),
    ),
    "status": ("run.py --status", lambda a: a == ["--status"]),
    "backup": ("run.py --backup <file>.zip", lambda a: a[:1] == ["--backup"]),
    "restore": (
        "run.py --restore <file>.zip --dry-run",
        lambda a: a[:1] == ["--restore"] and "--dry-run" in a,
    ),
}


def _pipeline(name: str) -> Args:
    return ["--pipeline", name]


def bash_blocks(text: str) -> list[tuple[str, list[str]]]:
    """The commands of each ```bash block, with the `##` heading above it.

    Continued lines (ending in a backslash) are joined; comments and blank lines
    are dropped.
    """
    blocks: list[tuple[str, list[str]]] = []
    heading, block, pending = "", None, ""
    for line in text.splitlines():
        if block is None:
            if line.startswith("## "):
                heading = line.strip()
            elif line.strip() == "```bash":
                block = []
            continue
        if line.strip() == "```":
            blocks.append((heading, block))
            block = None
            continue
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        words = shlex.split(pending, comments=True)
        pending = ""
        if words:
            block.append(shlex.join(words))
    return blocks


def run_py_args(command: str) -> Args | None:
    """The arguments of a `run.py` command (`python run.py ...`), else None."""
    words = shlex.split(command)
    if len(words) >= 2 and words[1] == "run.py" and words[0].endswith("python"):
        return words[2:]
    return None


def readme_walk(readme: Path = REPO / "README.md") -> list[tuple[str, Args]]:
    """The walk's `run.py` commands, in the README's order, each with its name.

    Raises:
        pytest.fail: When the walk's block is missing, or lacks a command that the
            assertions need; the message names the command and where it belongs.
    """
    walks = [
        commands
        for heading, commands in bash_blocks(readme.read_text())
        if heading == WALK_HEADING
    ]
    if not walks:
        pytest.fail(f"{readme.name} has no ```bash block under `{WALK_HEADING}`")
    walk: list[tuple[str, Args]] = []
    for command in walks[0]:
        args = run_py_args(command)
        if args is None:
            continue
        name = next((n for n, (_, is_it) in EXPECTED.items() if is_it(args)), command)
        walk.append((name, args))
    missing = [usage for n, (usage, _) in EXPECTED.items() if n not in dict(walk)]
    if missing:
        pytest.fail(
            f"The first ```bash block under `{WALK_HEADING}` in {readme.name} lacks "
            f"{', '.join(f'`{m}`' for m in missing)}: "
            "tests/pipelines/test_readme_path.py replays that block and checks what "
            "these commands leave behind."
        )
    return walk


def make_variable(name: str) -> str:
    """A `NAME := value` variable of the Makefile (`make init` runs them)."""
    found = re.search(rf"^{name} := (.+)$", (REPO / "Makefile").read_text(), re.M)
    assert found, f"Makefile has no `{name} :=` line"
    return found[1]


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
    walk = readme_walk()
    seen["init"] = user.run(code=make_variable("ZENML_INIT"))  # `make init`
    for name, args in walk:
        if args[:1] == ["--pipeline"]:
            args = [*args, *(w for s in SHRUNK.get(args[1], []) for w in ("--set", s))]
        seen[name] = user.run(*args)
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
    photos = clone / dict(walk)["batch folder"][3]  # relative to the project root
    backup = clone / dict(walk)["backup"][1]
    return {
        "clone": clone,
        "home": home,
        "seen": seen,
        "photos": photos,
        "backup": backup,
    }


def test_the_readme_holds_every_command_the_walk_replays() -> None:
    assert set(EXPECTED) <= {name for name, _ in readme_walk()}
    readme = (REPO / "README.md").read_text()
    commands = [command for _, block in bash_blocks(readme) for command in block]
    assert "make serve" in commands, "README.md: no `make serve` in a ```bash block"


def test_a_command_missing_from_the_readme_is_named(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    text = (REPO / "README.md").read_text()
    readme.write_text(
        re.sub(r"^.*run\.py --pipeline deployment\b.*\n", "", text, flags=re.M)
    )
    with pytest.raises(pytest.fail.Exception, match="`run.py --pipeline deployment`"):
        readme_walk(readme)


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
    assert walked["backup"].is_file()
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
