"""The deployment pipeline on the local stack: Bento, lineage, and one real server."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAINING
from tests.servers import free_port
from visionops.app.dashboards import port_open
from visionops.config import load_parameters
from visionops.core.env import state_dir
from visionops.feedback.store import FeedbackStore

MODEL = "deploy-detector"
TINY = [*TINY_TRAINING, "grid={lr0: [0.01]}", f"model.name={MODEL}"]


def stop_server(port: int, timeout: float = 30.0) -> None:
    """Stops the `bentoml serve` started on `port` (its whole process group)."""
    from visionops.core.env import state_dir

    pid_file = state_dir() / "bentoml" / f"serve-{port}.pid"
    if not pid_file.is_file():
        return
    pid = int(pid_file.read_text())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and port_open(port):
            time.sleep(0.2)
        if not port_open(port):
            break
    with contextlib.suppress(ChildProcessError, ProcessLookupError):
        os.waitpid(pid, 0)  # started by this process: reap it
    pid_file.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def deployed(sample_dir: Path):
    """Local stack, sample ingested, one tiny model trained, deployed and served."""
    from zenml.client import Client

    import run
    from tests.conftest import OUTBOUND
    from visionops.core.names import BENTO

    assert run.main(["--stack", "local"]) == 0
    ingest = ["--source", str(sample_dir), "--set", "anonymize.enabled=false"]
    assert run.main(["--pipeline", "ingestion", *ingest]) == 0
    train = ["--pipeline", "training"]
    for override in TINY:
        train += ["--set", override]
    assert run.main(train) == 0
    OUTBOUND.clear()
    port = free_port()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            code = run.main(
                [
                    "--pipeline",
                    "deployment",
                    "--serve",
                    "--set",
                    f"model.name={MODEL}",
                    "--set",
                    f"port={port}",
                ]
            )
        assert code == 0, printed.getvalue()
        pipeline_run = Client().get_pipeline("deployment").last_run
        bento = pipeline_run.steps["build_bento"].outputs[BENTO][0].load()
        yield {
            "bento_tag": str(bento.tag),
            "port": port,
            "url": f"http://127.0.0.1:{port}",
            "printed": printed.getvalue(),
            "outbound": list(OUTBOUND),
        }
    finally:
        stop_server(port)


def test_bento_in_store_with_its_lineage(deployed: dict) -> None:
    import bentoml
    import mlflow

    from visionops.app.lookup import find_dataset
    from visionops.tasks.detect.onnx import OnnxDetector

    bento = bentoml.get(deployed["bento_tag"])
    assert bento.tag.name == MODEL
    assert f"Bento: {bento.tag}" in deployed["printed"]
    assert [m.tag.name for m in bento.info.all_models] == [MODEL]
    model = bentoml.models.get(bento.info.all_models[0].tag)
    assert bento.info.args["model_tag"] == str(model.tag)  # pinned, not `latest`
    # What the service records and keeps: the deployment config's, in the Bento.
    feedback = load_parameters("deployment").feedback  # type: ignore[attr-defined]
    assert bento.info.args["feedback"] == feedback.model_dump()

    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion")
    dataset_hash = find_dataset("latest").run_metadata["dataset_hash"]
    meta = model.info.metadata
    assert meta["mlflow_version"] == str(champion.version) == "1"
    assert meta["dataset_hash"] == champion.tags["dataset_hash"] == dataset_hash
    assert meta["zenml_model_version"] == "1"
    assert meta["mlflow_run_id"] == champion.run_id
    assert 0 <= meta["test_metrics"]["map50_95"] <= 1
    assert model.info.labels["dataset_hash"] == dataset_hash

    files = {p.name for p in Path(model.path).iterdir()}
    assert {"model.onnx", "model.pt", "lineage.json"} <= files
    detector = OnnxDetector(Path(model.path) / "model.onnx")
    assert detector.names == {0: "board"} and detector.imgsz == (64, 64)
    assert deployed["outbound"] == []


def test_bento_tag_recorded_in_zenml_and_mlflow(deployed: dict) -> None:
    import mlflow
    from zenml.client import Client

    production = Client().get_model_version(MODEL, "production")
    assert production.run_metadata["bento_tag"] == deployed["bento_tag"]
    assert production.run_metadata["mlflow_version"] == "1"
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["bento_tag"] == deployed["bento_tag"]


def test_no_champion_fails_before_any_work(capsys: pytest.CaptureFixture) -> None:
    import bentoml

    import run

    start = time.monotonic()
    code = run.main(["--pipeline", "deployment", "--set", "model.name=nobody"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nobody has no champion" in err and "--pipeline training" in err
    assert time.monotonic() - start < 30
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.bentos.list("nobody")


def test_served_detect_through_the_bentoml_client(deployed: dict, tiny_dataset) -> None:
    import bentoml
    import mlflow

    url = deployed["url"]
    assert f"Serving at {url}" in deployed["printed"]
    image = sorted((tiny_dataset.root / "images" / "test").iterdir())[0]
    with bentoml.SyncHTTPClient(url) as client:
        assert client.is_ready()
        body = client.detect(image=image, conf=0.0001)
        info = client.info()
    assert body["detections"], "a 1-epoch model still yields boxes at conf 0.0001"
    assert set(body["counts"]) == {"board"}
    assert sum(body["counts"].values()) == len(body["detections"])
    assert body["model"]["name"] == MODEL and body["model"]["mlflow_version"] == "1"
    assert info["bento_model"] == body["model"]["bento_model"]
    assert info["dataset_hash"] and info["zenml_model_version"] == "1"
    # The served Bento's own tag: the string MLflow and ZenML record as `bento_tag`.
    assert info["bento_tag"] == deployed["bento_tag"] and info["task"] == "detect"
    # The packed ONNX's precision, as the INT8 gate recorded it in the registry.
    champion = mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion")
    assert info["precision"] == champion.tags["precision"]
    assert info["precision"] in ("int8", "fp32")
    # The request is recorded in this machine's store (the state folder's, which
    # the deployment gave the server), naming the Bento.
    (record,) = [
        r
        for r in FeedbackStore(state_dir() / "feedback").records()
        if r["model"]["bento"] == deployed["bento_tag"]
    ]
    assert record["source"] == "service:/detect"
    assert record["image"]["name"] == image.name
    assert record["summary"]["count"] == len(body["detections"])


def test_served_bad_input_and_metrics(deployed: dict) -> None:
    import httpx

    url = deployed["url"]
    bad = httpx.post(
        f"{url}/detect",
        files={"image": ("notes.txt", b"not an image", "text/plain")},
        timeout=30,
    )
    assert bad.status_code == 415
    assert "not a readable image" in bad.text and "Traceback" not in bad.text
    metrics = httpx.get(f"{url}/metrics", timeout=30)
    assert metrics.status_code == 200
    assert "text/plain" in metrics.headers["content-type"]
    assert "bentoml_service_request_total" in metrics.text
    assert 'endpoint="/detect"' in metrics.text
    page = httpx.get(f"{url}/ui/", timeout=30)
    assert page.status_code == 200 and 'id="file"' in page.text


def _selected_in_time(store: FeedbackStore, name: str, seconds: float = 90.0):
    """The kept image named `name` once the server's background writer stored it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kept = [s for s in store.selected() if s.record["image"]["name"] == name]
        if kept:
            return kept[0]
        time.sleep(0.5)
    raise AssertionError(f"{name} was not kept within {seconds} s")


def test_the_loop_back_from_production(
    deployed: dict, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Issue 19 end to end: requests recorded, hard images kept face-blurred, a
    review batch, a labeller's correction merged with the same test split, and a
    training run that starts from the champion it names."""
    import cv2
    import httpx
    import mlflow
    from skimage import data as skdata
    from zenml.client import Client

    import run
    from tests.data.test_merge import split_files
    from visionops.core.names import DATASET
    from visionops.data.anonymize import AnonymizeSettings, detect_faces

    url, store = deployed["url"], FeedbackStore(state_dir() / "feedback")

    def champion_version() -> str:
        client = mlflow.MlflowClient()
        return client.get_model_version_by_alias(MODEL, "champion").version

    face = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    assert len(detect_faces(face, AnonymizeSettings())) >= 1
    sent = {"astronaut.png": cv2.imencode(".png", face)[1].tobytes()}
    for path in sorted((sample_dir / "images").rglob("*.jpg"))[:3]:
        sent[path.name] = path.read_bytes()
    for name, data in sent.items():
        answer = httpx.post(
            f"{url}/detect", files={"image": (name, data, "image/*")}, timeout=60
        )
        assert answer.status_code == 200, answer.text

    # One record per request, naming the Bento; the astronaut kept, faces blurred.
    records = [r for r in store.records() if r["image"]["name"] in sent]
    assert sorted(r["image"]["name"] for r in records) == sorted(sent)
    assert {r["model"]["bento"] for r in records} == {deployed["bento_tag"]}
    assert all(r["source"] == "service:/detect" for r in records)
    kept = _selected_in_time(store, "astronaut.png")
    assert kept.record["reasons"], kept.record
    stored = cv2.imread(str(kept.image))
    assert stored.shape == face.shape
    assert len(detect_faces(stored, AnonymizeSettings())) == 0

    # The review batch: pre-labels in the dataset's own format.
    target = tmp_path / "review"
    # Other modules' batch runs keep images in the session's store too.
    review = ["--pipeline", "review", "--set", f"target={target}"]
    assert run.main([*review, "--set", f"model.name={MODEL}"]) == 0
    (batch,) = target.iterdir()
    labels = batch / "train" / "labels" / f"{kept.id}.txt"
    assert labels.is_file() and (batch / "review.csv").is_file()
    assert kept.id in store.reviewed_ids()
    # A labeller draws the board the model missed on one image.
    labels.write_text("0 0.5 0.5 0.4 0.3\n")

    # Back into the dataset: a new version, the parent's test split unchanged.
    parent = Client().get_artifact_version(DATASET)
    merge = ["--source", str(batch), "--set", "merge_with=latest"]
    assert run.main(["--pipeline", "ingestion", *merge]) == 0
    child = Client().get_artifact_version(DATASET)
    assert child.version != parent.version
    child_data, parent_data = child.load(), parent.load()
    assert split_files(child_data.root, "test") == split_files(parent_data.root, "test")
    assert child_data.card["lineage"]["parent_version"] == str(parent.version)
    merged = {
        p.parent.name: p.read_text()
        for p in child_data.root.glob(f"labels/*/*{kept.id}*.txt")
    }
    found = sorted(p.name for p in child_data.root.rglob(f"*{kept.id[:8]}*"))
    assert list(merged.values()) == ["0 0.5 0.5 0.4 0.3\n"], found
    assert set(merged) <= {"train", "val"}
    capsys.readouterr()
    assert run.main(["--status"]) == 0
    status = capsys.readouterr().out
    assert f"{MODEL} v{champion_version()}: " in status  # its records, per model
    assert "image(s) at" in status and f"-> {batch}" in status  # the last review
    assert f"lineage: v{child.version} <- v{parent.version} + " in status

    # Retraining starts from the champion and says which version.
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(MODEL, "champion")
    train = ["--pipeline", "training", "--set", "models=[champion]"]
    for override in TINY:
        train += ["--set", override]
    assert run.main(train) == 0
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"params.started_from = '{MODEL} v{champion.version}'",
        output_format="list",
    )
    assert runs, "no training run names the champion it started from"
    assert runs[0].data.params["dataset_hash"] == child_data.hash
    capsys.readouterr()


def test_stopping_the_server_closes_the_port(deployed: dict) -> None:
    from visionops.core.env import state_dir

    port = deployed["port"]
    assert (state_dir() / "bentoml" / f"serve-{port}.pid").is_file()
    assert port_open(port)
    stop_server(port)
    assert not port_open(port)


def test_the_served_keys_come_from_the_zenml_secret() -> None:
    """`--serve` passes the keys of the secret `visionops-service` to the server."""
    import importlib

    from zenml.client import Client

    from visionops.serving.keys import API_KEY_SECRET

    step_module = importlib.import_module("steps.deployment.serve_bento")
    client = Client()
    assert step_module._secret_api_key() == ""  # none: the environment's, if any
    client.create_secret(API_KEY_SECRET, values={"api_key": "k1,k2"})
    try:
        assert step_module._secret_api_key() == "k1,k2"
    finally:
        client.delete_secret(API_KEY_SECRET)
