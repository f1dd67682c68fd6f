"""One place that pins the environment: offline, no telemetry, state in the repo.

Every entry point (run.py, the tests, the steps, the Bento service) imports `visionops`,
whose `__init__` calls `configure()` before any of ZenML, MLflow, BentoML or Ultralytics
is imported. Values already set in the environment win, so a user can still opt in.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT_ENV = "VISIONOPS_ROOT"
STATE_ENV = "VISIONOPS_STATE_DIR"
STATE_DIRNAME = ".visionops"


def project_root() -> Path:
    """Returns the project directory that holds all local state.

    `VISIONOPS_ROOT` wins; otherwise the checkout this package is installed from
    (editable install), falling back to the working directory.
    """
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "pyproject.toml").is_file() and (checkout / "run.py").is_file():
        return checkout
    return Path.cwd().resolve()


def pinned(*packages: str) -> list[str]:
    """`package==version` for each, at the version installed here."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in packages]


def project_path(path: str | Path) -> Path:
    """Resolves a path a user gave, on the command line or in a config file.

    The one rule: a relative path is relative to the project root (the folder of
    `run.py`), never to the working directory, so `--source x` and `source: x`
    in YAML name the same folder wherever the command runs; `~` is expanded.
    """
    path = Path(path).expanduser()
    return (path if path.is_absolute() else project_root() / path).resolve()


def state_dir() -> Path:
    """Returns the git-ignored folder where ZenML, MLflow, BentoML and YOLO keep state.

    `VISIONOPS_STATE_DIR` moves it (the tests point it at a temporary folder).
    """
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]).resolve()
    return project_root() / STATE_DIRNAME


def _offline_defaults(state: Path) -> dict[str, str]:
    return {
        # Ultralytics: no DNS probe at import, no pip installs at run time, and
        # settings (plus the font it would otherwise download) inside the repo.
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "0",
        "YOLO_VERBOSE": "False",
        "YOLO_CONFIG_DIR": str(state / "ultralytics"),
        # ZenML: analytics off, global config and local store inside the repo.
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_CONFIG_PATH": str(state / "zenml"),
        "ZENML_AUTO_OPEN_DASHBOARD": "false",
        "ZENML_ENABLE_RICH_TRACEBACK": "false",
        # MLflow, BentoML and anything honouring the DO_NOT_TRACK convention.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(state / "bentoml"),
        "DO_NOT_TRACK": "true",
        # Evidently reads DO_NOT_TRACK; the iterative-telemetry logger it ships
        # with reads its own variable.
        "ITERATIVE_DO_NOT_TRACK": "true",
        "HF_HUB_OFFLINE": "1",
        "MPLCONFIGDIR": str(state / "matplotlib"),
        # ONNX Runtime: no telemetry, hence no device id or event database under
        # ~/.cache/Microsoft (read once, when the runtime initialises).
        "ORT_DISABLE_TELEMETRY": "1",
        # Every other cache (uv, torch hub, Hugging Face, pip) inside the repo too.
        "XDG_CACHE_HOME": str(state / "cache"),
        "UV_CACHE_DIR": str(state / "cache" / "uv"),
    }


def _install_font(config_dir: Path) -> None:
    """Puts a font where Ultralytics looks, so it never downloads Arial.ttf."""
    target_dir = config_dir / "Ultralytics"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = target_dir / name
        if target.is_file():
            continue
        try:
            import matplotlib
        except ImportError:  # pragma: no cover - matplotlib ships with ultralytics
            return
        font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if font.is_file():
            target_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(font, target)


def configure() -> None:
    """Sets offline, telemetry-free defaults and creates the state folders."""
    state = state_dir()
    for key, value in _offline_defaults(state).items():
        os.environ.setdefault(key, value)
    for key in ("YOLO_CONFIG_DIR", "ZENML_CONFIG_PATH", "BENTOML_HOME", "MPLCONFIGDIR"):
        Path(os.environ[key]).mkdir(parents=True, exist_ok=True)
    _install_font(Path(os.environ["YOLO_CONFIG_DIR"]))
