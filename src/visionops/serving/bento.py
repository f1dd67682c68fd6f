"""The promoted model in the BentoML model store, and the Bento built around it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from visionops.core.env import project_root
from visionops.feedback.store import STORE_ENV, default_root
from visionops.serving.keys import API_KEY_ENV
from visionops.tasks import get_task

ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "model.pt"
LINEAGE_FILE = "lineage.json"
SERVICE = "visionops.serving.service:VisionService"


def save_model(name: str, onnx: Path, weights: Path, lineage: dict[str, Any]) -> str:
    """Stores the ONNX export, the .pt and the lineage as one BentoML model.

    Returns:
        The model's store tag.
    """
    import bentoml

    labels = {
        k: str(lineage[k]) for k in ("mlflow_version", "dataset_hash") if k in lineage
    }
    with bentoml.models.create(name, labels=labels, metadata=lineage) as model:
        root = Path(model.path)
        shutil.copyfile(onnx, root / ONNX_FILE)
        shutil.copyfile(weights, root / WEIGHTS_FILE)
        (root / LINEAGE_FILE).write_text(json.dumps(lineage, indent=1, sort_keys=True))
    return str(model.tag)


def build_bento(
    model_tag: str, lineage: dict[str, Any], feedback: dict[str, Any] | None = None
) -> Any:
    """Builds the Bento of the service around `model_tag`; returns the `bentoml.Bento`.

    The Bento carries what its service records and keeps (`feedback`, the
    deployment config's `FeedbackSettings` as a dict; None: the defaults) as its
    argument `feedback`.

    Package locking is off (`lock_python_packages=False` in the service image): it
    would resolve against the public index, which is unreachable offline and pinned
    a newer torch than these machines allow. Versions are pinned in the image instead.
    """
    import bentoml

    name = model_tag.split(":")[0]
    task = get_task(lineage.get("task")).name
    previous = os.environ.get("VISIONOPS_BENTO_MODEL")
    os.environ["VISIONOPS_BENTO_MODEL"] = name  # the service resolves `<name>:latest`
    # The service reads its model tag at import: a module cached by an earlier build
    # (or import) in this process would describe another model.
    sys.modules.pop(SERVICE.split(":")[0], None)
    try:
        return bentoml.bentos.build(
            service=SERVICE,
            name=name,
            build_ctx=str(project_root() / "src"),
            # The tasks' web-page views (`Serving.view`) too.
            include=[
                "visionops/**/*.py",
                "visionops/**/*.js",
                "visionops/serving/static/*",
            ],
            labels={
                k: str(v)
                for k, v in lineage.items()
                if isinstance(v, str | int | float)
            },
            description=f"YOLO {task} model `{name}` ({model_tag}), ONNX Runtime.",
            # The service serves this exact model, and records as configured.
            args={"model_tag": model_tag, "feedback": feedback or {}},
        )
    finally:
        if previous is None:
            os.environ.pop("VISIONOPS_BENTO_MODEL", None)
        else:
            os.environ["VISIONOPS_BENTO_MODEL"] = previous


def server_command(bento_tag: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The `bentoml serve` command line for a Bento."""
    import sys

    bentoml_cli = Path(sys.executable).with_name("bentoml")
    return [str(bentoml_cli), "serve", bento_tag, "--host", host, "--port", str(port)]


def pid_file(port: int) -> Path:
    """Where `start_server` records its server on `port` (read by `make serve-stop`)."""
    from visionops.core.env import state_dir

    return state_dir() / "bentoml" / f"serve-{port}.pid"


def start_server(
    bento_tag: str, port: int = 3000, timeout: float = 120.0, api_key: str = ""
) -> str:
    """Starts `bentoml serve` detached, waits for `/readyz`, returns the URL.

    Its pid (and process group) goes into `pid_file(port)`. Its prediction
    records go to this machine's feedback store (`VISIONOPS_FEEDBACK_DIR` if set,
    else the state folder's `feedback/`, the active stack's on a local stack).

    Args:
        bento_tag: The Bento to serve.
        port: The loopback port.
        timeout: Seconds to wait for `/readyz`.
        api_key: The service's keys (`VISIONOPS_API_KEY`, comma-separated) when
            given; else the server inherits this environment's.

    Raises:
        BackgroundError: the server exited or did not get ready in time (the
            message names its log and shows its tail); it is stopped then.
    """
    from visionops.core import background

    log = pid_file(port).with_suffix(".log")
    log.unlink(missing_ok=True)  # this server's output only
    env = {**os.environ, STORE_ENV: str(default_root().resolve())}
    if api_key:
        env[API_KEY_ENV] = api_key
    process = background.start(server_command(bento_tag, port), log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        background.wait_ready(f"{url}/readyz", process, log, "bentoml serve", timeout)
    except BaseException:
        background.stop(process)
        raise
    background.write_pid(pid_file(port), process.pid)
    return url
