"""The service's app under test, `VisionService.to_asgi()` serving a tiny test model.

A pytest plugin (`pytest_plugins = ["tests.serving_app"]`): one app per session,
shared by the modules that test it (BentoML registers its Prometheus metrics
once per process, so a second app in the same process would fail).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

MODEL = "test-serving-detector"
IMGSZ = 128  # the size `tiny_weights` was trained at
LINEAGE = {
    "model_name": MODEL,
    "mlflow_version": "7",
    "mlflow_run_id": "0123456789abcdef",
    "zenml_model_version": "3",
    "dataset_hash": "feedc0ffee",
    "serving_imgsz": IMGSZ,
    "precision": "int8",
    "test_metrics": {"map50": 0.5, "map50_95": 0.25},
}


@pytest.fixture(scope="session")
def onnx_path(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from visionops.engine.onnx import export_onnx

    return export_onnx(tiny_weights, IMGSZ, tmp_path_factory.mktemp("serving-onnx"))


@pytest.fixture(scope="session")
def service(onnx_path: Path, tiny_weights: Path):
    """The service module, imported to serve the test model from the store."""
    from bentoml._internal.utils.args import set_arguments

    from visionops.serving.bento import save_model

    tag = save_model(MODEL, onnx_path, tiny_weights, LINEAGE)
    patch = pytest.MonkeyPatch()
    patch.setenv("VISIONOPS_BENTO_MODEL", MODEL)  # read when the module is imported
    set_arguments({})  # a Bento built earlier in this process leaves its arguments
    # Imported twice, as when a Bento is built in this process: what it sets up
    # at import (its log filter) must not stack.
    for _ in range(2):
        sys.modules.pop("visionops.serving.service", None)
        module = importlib.import_module("visionops.serving.service")
    patch.undo()
    served_tag = module.MODEL_TAG
    assert served_tag == f"{MODEL}:latest"
    return module, tag


def fresh_metrics() -> None:
    """Unregisters BentoML's Prometheus collectors, so that one more app in this
    process (another model's service) can register its own on its first request."""
    from prometheus_client import REGISTRY

    owned = REGISTRY._collector_to_names  # prometheus_client has no public listing
    for collector, names in list(owned.items()):
        if any(name.startswith("bentoml_") for name in names):
            REGISTRY.unregister(collector)


def import_service(model: str, arguments: dict | None = None):
    """The service module, imported anew to serve the store's latest `model`, with
    the Bento arguments a built Bento would give it (besides `model_tag`)."""
    from bentoml._internal.utils.args import set_arguments

    patch = pytest.MonkeyPatch()
    patch.setenv("VISIONOPS_BENTO_MODEL", model)  # read when the module is imported
    # A Bento built earlier in this process leaves its arguments: replaced.
    set_arguments(arguments or {})
    sys.modules.pop("visionops.serving.service", None)
    module = importlib.import_module("visionops.serving.service")
    patch.undo()
    set_arguments({})
    assert f"{model}:latest" == module.MODEL_TAG
    return module


@contextmanager
def serving(model: str, onnx: Path, weights: Path, lineage: dict) -> Iterator[Any]:
    """A test client of the service serving `onnx` stored as `model`, through
    `to_asgi()` (BentoML's metrics taken over from any app before it)."""
    from starlette.testclient import TestClient

    from visionops.serving.bento import save_model

    save_model(model, onnx, weights, lineage)
    module = import_service(model)
    fresh_metrics()  # another module's app may hold BentoML's metrics
    with TestClient(module.VisionService.to_asgi(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def client(service):
    from starlette.testclient import TestClient

    module, _ = service
    fresh_metrics()
    with TestClient(module.VisionService.to_asgi(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def counter(onnx_path: Path, tiny_weights: Path):
    """The service serving a model of the toy `count` task (`tests/plugins`),
    through `to_asgi()`."""
    from tests.plugin_tasks import registered

    lineage = {"model_name": "test-counter", "task": "count", "mlflow_version": "1"}
    with (
        registered("count"),
        serving("test-counter", onnx_path, tiny_weights, lineage) as client,
    ):
        yield client
