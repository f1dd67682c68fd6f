"""The server stack for real: ZenML server, MLflow on PostgreSQL + S3, all on loopback.

One tiny ingestion and one tiny training run go through `run.main` on
`stacks/server.yaml`; the tests then look where a user would: the MLflow tables in
PostgreSQL, the objects in both buckets, the champion alias, and the ZenML server's
API. The ZenML client is logged out again afterwards, back on its earlier stack.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import TINY_TRAINING

if TYPE_CHECKING:  # imported by pytest_plugins, so that pytest rewrites its asserts
    from tests.servers import MlflowServer, Postgres, S3Server

pytest_plugins = ["tests.servers"]

MODEL = "server-detector"
ZENML_BUCKET = "zenml"
TINY = [*TINY_TRAINING, f"model.name={MODEL}"]


@pytest.fixture(scope="module")
def deployed(s3: S3Server, mlflow_server: MlflowServer, sample_dir: Path):
    """Applies the server stack on a local ZenML server, then ingests and trains."""
    import os

    import mlflow

    import run
    from tests.conftest import OUTBOUND
    from tests.servers import free_port, server_stack_env, zenml_local_server

    s3.create_bucket(ZENML_BUCKET)
    previous_uri = os.environ.get("MLFLOW_TRACKING_URI")
    ingestion = ["--pipeline", "ingestion", "--source", str(sample_dir)]
    ingestion += ["--set", "anonymize.enabled=false", "--no-cache"]
    training = ["--pipeline", "training", "--no-cache"]
    for override in TINY:
        training += ["--set", override]
    try:
        with (
            pytest.MonkeyPatch.context() as env,
            zenml_local_server(free_port()) as zenml_url,
        ):
            for key, value in server_stack_env(s3, mlflow_server, ZENML_BUCKET).items():
                env.setenv(key, value)
            OUTBOUND.clear()
            assert run.main(["--stack", "server"]) == 0
            assert run.main(ingestion) == 0
            assert run.main(training) == 0
            yield {"zenml_url": zenml_url, "outbound": list(OUTBOUND)}
    finally:  # later tests find MLflow pointed where it was
        mlflow.set_tracking_uri(previous_uri)  # type: ignore[arg-type]


def _mlflow_rows(postgres: Postgres, server: MlflowServer, sql: str, *params) -> list:
    return postgres.query(server.database, sql, params)


def test_stack_keeps_credentials_in_secrets(deployed: dict, mlflow_server) -> None:
    from zenml.client import Client

    stack = Client().active_stack_model
    assert stack.name == "server"
    store = stack.components["artifact_store"][0]
    tracker = stack.components["experiment_tracker"][0]
    assert store.flavor_name == "s3"
    assert store.configuration["path"] == f"s3://{ZENML_BUCKET}"
    assert store.configuration["key"] == "{{server-s3.aws_access_key_id}}"
    assert tracker.configuration["tracking_uri"] == mlflow_server.url
    assert tracker.configuration["tracking_password"] == "{{server-mlflow.password}}"
    assert deployed["outbound"] == []


def test_pipeline_runs_are_on_the_zenml_server(deployed: dict) -> None:
    from zenml.client import Client

    client = Client()
    assert client.zen_store.url.rstrip("/") == deployed["zenml_url"]
    runs = client.list_pipeline_runs(stack_id=client.active_stack_model.id, size=50)
    by_pipeline = {r.pipeline.name: r for r in runs.items if r.pipeline}
    assert set(by_pipeline) == {"ingestion", "training"}
    assert all(str(r.status) == "completed" for r in runs.items)
    # The server's own REST API lists them too (the local server has no auth).
    url = f"{deployed['zenml_url']}/api/v1/runs?size=200"
    with urllib.request.urlopen(url, timeout=30) as response:
        listed = {item["id"] for item in json.load(response)["items"]}
    assert {str(r.id) for r in runs.items} <= listed


def test_zenml_artifacts_are_in_the_bucket(deployed: dict, s3: S3Server) -> None:
    from zenml.client import Client

    dataset = Client().get_artifact_version("dataset")
    assert dataset.uri.startswith(f"s3://{ZENML_BUCKET}/")
    prefix = dataset.uri.removeprefix(f"s3://{ZENML_BUCKET}/")
    keys = s3.keys(ZENML_BUCKET)
    mine = [k for k in keys if k.startswith(prefix + "/")]
    assert f"{prefix}/data/data.yaml" in mine
    assert f"{prefix}/data/dataset_card.json" in mine
    assert any(k.startswith(f"{prefix}/data/images/train/") for k in mine)
    assert any(k.endswith("/best.pt") for k in keys)  # the selected `model` artifact


def test_mlflow_runs_and_registry_are_in_postgres(
    deployed: dict, postgres: Postgres, mlflow_server: MlflowServer
) -> None:
    rows = _mlflow_rows(
        postgres,
        mlflow_server,
        "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e "
        "ON r.experiment_id = e.experiment_id WHERE e.name = 'training'",
    )
    assert len(rows) == 2 and {s for _, s in rows} == {"FINISHED"}  # parent + 1
    candidate = _mlflow_rows(
        postgres,
        mlflow_server,
        "SELECT run_uuid FROM tags WHERE key = 'candidate'",
    )
    assert len(candidate) == 1
    run_id = candidate[0][0]
    params = dict(
        _mlflow_rows(
            postgres,
            mlflow_server,
            "SELECT key, value FROM params WHERE run_uuid = %s",
            run_id,
        )
    )
    assert params["imgsz"] == "64" and params["epochs"] == "1"
    points = _mlflow_rows(
        postgres,
        mlflow_server,
        "SELECT step FROM metrics WHERE run_uuid = %s AND key = 'metrics/mAP50-95B'",
        run_id,
    )
    assert len(points) >= 1
    assert _mlflow_rows(
        postgres,
        mlflow_server,
        "SELECT name FROM registered_models WHERE name = %s",
        MODEL,
    ) == [(MODEL,)]
    versions = _mlflow_rows(
        postgres,
        mlflow_server,
        "SELECT version, run_id, source FROM model_versions WHERE name = %s",
        MODEL,
    )
    assert len(versions) == 1
    version, version_run, source = versions[0]
    assert version == 1 and version_run == run_id and source.startswith("models:/")
    aliases = dict(
        _mlflow_rows(
            postgres,
            mlflow_server,
            "SELECT alias, version FROM registered_model_aliases WHERE name = %s",
            MODEL,
        )
    )
    assert aliases == {"champion": 1, "challenger": 1}


def test_mlflow_artifacts_are_in_the_bucket(
    deployed: dict, s3: S3Server, mlflow_server: MlflowServer
) -> None:
    import mlflow

    client = mlflow.MlflowClient(mlflow_server.url)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    run_id = champion.run_id
    keys = s3.keys(mlflow_server.bucket)
    weights = [k for k in keys if k.endswith(f"{run_id}/artifacts/weights/best.pt")]
    assert len(weights) == 1
    assert any(f"{run_id}/artifacts/onnx/" in k and k.endswith(".onnx") for k in keys)
    model_id = champion.source.removeprefix("models:/")
    assert any(k.endswith(f"models/{model_id}/artifacts/MLmodel") for k in keys)
    # The object in the bucket is what MLflow hands back for the run's artifact.
    local = client.download_artifacts(run_id, "weights/best.pt", str(Path.cwd()))
    try:
        assert Path(local).read_bytes() == s3.read(mlflow_server.bucket, weights[0])
    finally:
        Path(local).unlink()


def test_champion_loads_from_the_server_and_predicts(
    deployed: dict, mlflow_server: MlflowServer, tiny_dataset
) -> None:
    import mlflow
    import pandas as pd

    assert mlflow.get_tracking_uri() == mlflow_server.url
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    images = sorted((tiny_dataset.root / "images" / "test").glob("*"))[:2]
    frame = pd.DataFrame(
        {"image": [base64.b64encode(p.read_bytes()).decode() for p in images]}
    )
    boxes = model.predict(frame, params={"conf": 0.0001})
    assert len(boxes) > 0 and set(boxes["class_name"]) == {"board"}


def test_status_reports_the_server_stack(
    deployed: dict, mlflow_server: MlflowServer, capsys: pytest.CaptureFixture
) -> None:
    import run

    assert run.main(["--status", "--json", "--set", f"model.name={MODEL}"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["stack"]["name"] == "server"
    assert status["stack"]["tracking_uri"] == mlflow_server.url
    assert status["champion"]["version"] == "1"
    assert status["champion"]["onnx"].startswith("mlflow-artifacts:/")
    assert status["dataset"]["hash"]
