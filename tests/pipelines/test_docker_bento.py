"""`bentoml containerize` of a deployment's Bento, run with `docker run`.

The Bento is built as the deployment pipeline builds it, on a base image built here
(VISIONOPS_BENTO_BASE_IMAGE), containerized offline by BentoML with the Debian
docker CLI's BuildKit, and started with `docker run`. Its `/detect` answers the same
boxes as the in-process service for the same images. Needs a Docker engine: started
when root, else skipped with the command that prepares it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests import docker_env

# The in-process app of tests/serving/test_serving.py, one per session, and its model
# (its helpers are imported where used, after pytest has loaded the plugin).
pytest_plugins = ["tests.serving_app"]


@pytest.fixture(scope="module")
def bento_image(service) -> dict:
    """Builds the Bento of the served test model on the local base, containerized."""
    from tests.serving_app import LINEAGE
    from visionops.serving.bento import build_bento
    from visionops.serving.service import BASE_IMAGE_ENV

    _, model_tag = service
    with docker_env.engine_or_skip():
        base = docker_env.build_bento_base_image()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(BASE_IMAGE_ENV, base)
            bento = build_bento(model_tag, LINEAGE)
        image = f"visionops-bento-test:{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            # Debian's docker CLI: BuildKit without the buildx plugin.
            "PATH": f"{Path(docker_env.docker_cli()).parent}:{os.environ['PATH']}",
            "DOCKER_BUILDKIT": "1",
        }
        bentoml = Path(sys.executable).parent / "bentoml"
        with docker_env.bento_wheelhouse():
            result = subprocess.run(
                # The build reaches the wheelhouse on the host's loopback.
                [str(bentoml), "containerize", str(bento.tag), "-t", image]
                + ["--opt", "network=host"],
                capture_output=True,
                text=True,
                env=env,
                timeout=1800,
            )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield {"image": image, "model_tag": model_tag, "bento": bento}


@pytest.fixture(scope="module")
def container_url(bento_image: dict):
    """`docker run` of the Bento image on a loopback port, until it is ready."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cid = docker_env.docker(
        "run",
        "-d",
        "-p",
        f"127.0.0.1:{port}:3000",
        bento_image["image"],
    ).stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            state = json.loads(docker_env.docker("inspect", cid).stdout)[0]["State"]
            if not state["Running"] or time.monotonic() > deadline:
                logs = docker_env.docker("logs", cid, check=False)
                raise AssertionError(
                    f"not ready:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}"
                )
            time.sleep(2)
        yield url, cid
    finally:
        docker_env.docker("rm", "-f", cid, check=False)


def test_bento_image_is_built_from_the_local_base(bento_image: dict) -> None:
    info = json.loads(
        docker_env.docker("image", "inspect", bento_image["image"]).stdout
    )
    # The Bento's model and code are inside; nothing of this machine's trust store.
    history = docker_env.docker(
        "history", "--no-trunc", "--format", "{{.CreatedBy}}", bento_image["image"]
    ).stdout
    assert "ca-certificates.crt" not in history
    assert info[0]["Config"]["Entrypoint"]
    assert info[0]["Config"]["User"] not in ("", "root", "0")


def test_container_detects_the_same_boxes_as_the_in_process_service(
    container_url, client, tiny_dataset
) -> None:
    import cv2
    import httpx

    from tests.serving.test_serving import LOW_CONF, _detect, _png

    url, cid = container_url
    with urllib.request.urlopen(f"{url}/readyz", timeout=10) as answer:
        assert answer.status == 200
    # The server runs as an unprivileged user, not root.
    server = docker_env.docker("exec", cid, "sh", "-c", "id -u; id -un").stdout.split()
    assert server[0] != "0" and server[1] == "bentoml", server

    paths = sorted((tiny_dataset.root / "images" / "test").iterdir())[:3]
    boxes = 0
    with httpx.Client(base_url=url, timeout=60) as remote:
        for path in paths:
            data = _png(cv2.imread(str(path)))
            want = _detect(client, data, conf=LOW_CONF)
            got = _detect(remote, data, conf=LOW_CONF)
            assert [d["class_name"] for d in got["detections"]] == [
                d["class_name"] for d in want["detections"]
            ]
            np.testing.assert_allclose(
                [_box(d) for d in got["detections"]],
                [_box(d) for d in want["detections"]],
                atol=0.5,
            )
            assert got["model"] == want["model"]
            boxes += len(got["detections"])
    assert boxes > 0


def _box(detection: dict) -> list[float]:
    return [detection["box"][k] for k in ("x1", "y1", "x2", "y2")]
