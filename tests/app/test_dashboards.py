"""`run.py --dashboard`: the ZenML dashboard and the MLflow UI, started for real."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.servers import free_port
from visionops.app.dashboards import port_open


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


def _links(out: str) -> dict[str, str]:
    """The deep links `--dashboard` prints, indented under the servers' roots."""
    links = {}
    for line in out.splitlines():
        if line.startswith("  ") and ": " in line:
            label, url = line.strip().split(":", 1)
            links[label] = url.strip()
    return links


def _zenml_config() -> dict:
    """The ZenML client configuration as the next process will read it."""
    path = Path(os.environ["ZENML_CONFIG_PATH"]) / "config.yaml"
    return yaml.safe_load(path.read_text())


def test_dashboard_starts_both_uis_and_stops_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from zenml.client import Client

    import run
    from visionops.app import dashboards

    zenml_port, mlflow_port = free_port(), free_port()
    monkeypatch.setenv(dashboards.ZENML_PORT_ENV, str(zenml_port))
    monkeypatch.setenv(dashboards.MLFLOW_PORT_ENV, str(mlflow_port))
    assert run.main(["--stack", "local"]) == 0
    stack_id = str(Client().active_stack_model.id)
    assert _zenml_config()["store"]["type"] == "sql"
    capsys.readouterr()
    # A registered model, as training leaves one: its page is linked.
    from mlflow.tracking import MlflowClient

    from visionops.config import load_parameters
    from visionops.training.tracking import configure_tracking

    configure_tracking()
    # `model.name: null` means the task's default name: detect's, for the sample.
    assert load_parameters("training").model.name is None
    model_name = "board-detector"
    client = MlflowClient()
    if not client.search_registered_models(f"name='{model_name}'"):
        client.create_registered_model(model_name)
    # Other tests in the session may have registered other tasks' default models:
    # each registered default name is linked.
    from visionops.tasks import available_tasks, get_task

    defaults = [get_task(t).default_model_name for t in available_tasks()]
    registered = [n for n in defaults if client.search_registered_models(f"name='{n}'")]

    try:
        assert run.main(["--dashboard"]) == 0
        out = capsys.readouterr().out
        zenml_url = f"http://127.0.0.1:{zenml_port}"
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        assert f"ZenML dashboard: {zenml_url}" in out
        assert f"MLflow UI:       {mlflow_url}" in out
        links = _links(out)
        experiment = MlflowClient().get_experiment_by_name("training")
        ml = "?workflowType=machine_learning"
        assert links == {
            "ZenML pipeline runs": f"{zenml_url}/projects/default/runs",
            "MLflow training runs": (
                f"{mlflow_url}/#/experiments/{experiment.experiment_id}/runs{ml}"
                "&viewStateShareKey=visionops"
            ),
            **(
                {"MLflow registered model": f"{mlflow_url}/#/models/{model_name}{ml}"}
                if registered == [model_name]
                else {
                    f"MLflow model {n}": f"{mlflow_url}/#/models/{n}{ml}"
                    for n in registered
                }
            ),
        }
        # Its artifacts go where the stack's tracker keeps them, never to ./mlruns
        # of the working directory (MLflow's default for a SQLite store).
        from visionops.training.tracking import stack_artifact_location

        assert experiment.artifact_location == stack_artifact_location()
        assert experiment.artifact_location.startswith("file:/")
        # The experiment opens as a machine-learning one, not on a GenAI overview.
        assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
        view = json.loads(experiment.tags["mlflow.sharedViewState.visionops"])
        assert "metrics.`val_map50_95`" in view["selectedColumns"]
        for url in links.values():
            assert _status(url) == 200, url
        with urllib.request.urlopen(links["ZenML pipeline runs"]) as response:
            assert '<div id="root">' in response.read().decode()
        # The first-visit survey is answered: the dashboard opens on the link.
        user = Client().zen_store.get_user(Client().active_user.id)
        assert user.email_opted_in is False
        assert user.user_metadata["finished_onboarding_survey"] is True
        # A model not registered yet: the list of registered models instead.
        urls = dashboards.Dashboards(zenml_url=zenml_url, mlflow_url=mlflow_url)
        unregistered = dashboards.deep_links(urls, "nobody-yet")
        assert "MLflow registered model" not in unregistered
        models = unregistered["MLflow registered models"]
        assert models == f"{mlflow_url}/#/models?workflowType=machine_learning"
        assert _status(models) == 200

        assert _status(f"{zenml_url}/health") == 200
        assert _status(f"{zenml_url}/") == 200
        assert _status(f"{mlflow_url}/") == 200
        search = f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=10"
        with urllib.request.urlopen(search, timeout=10) as response:
            experiments = json.load(response)["experiments"]
        assert "Default" in {e["name"] for e in experiments}
        # The client now goes through the local server, on the same store.
        assert _zenml_config()["store"]["url"] == zenml_url

        # A second start finds both running and changes nothing.
        assert run.main(["--dashboard"]) == 0
        assert f"MLflow UI:       {mlflow_url}" in capsys.readouterr().out
    finally:
        assert run.main(["--dashboard", "stop"]) == 0

    out = capsys.readouterr().out
    assert "MLflow UI" in out and "ZenML dashboard" in out
    assert not port_open(zenml_port)
    assert not port_open(mlflow_port)
    # Later processes (and tests) use the local store and the same active stack.
    config = _zenml_config()
    assert config["store"]["type"] == "sql"
    assert config["active_stack_id"] == stack_id
    assert run.main(["--dashboard", "stop"]) == 0
    assert "No dashboard was running." in capsys.readouterr().out


def test_dashboard_refuses_a_taken_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import run
    from visionops.app import dashboards

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv(dashboards.MLFLOW_PORT_ENV, str(port))
        assert run.main(["--stack", "local", "--dashboard"]) == 2
    err = capsys.readouterr().err
    assert f"Port {port} is taken" in err and dashboards.MLFLOW_PORT_ENV in err
