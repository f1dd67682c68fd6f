"""What ZenML and MLflow hold after a user's pipeline runs, as JSON on stdout.

`python -m tests.pipelines.stack_report MODEL PIPELINE...` reads the stores of the
environment it runs in (`VISIONOPS_STATE_DIR`, the active stack): the docker stack's
test runs it as the user who ran the pipelines, whose stores are not the test's.
"""

from __future__ import annotations

import json
import sys

# First: the offline environment of VISIONOPS_STATE_DIR, before ZenML reads it.
import visionops  # noqa: F401


def report(model: str, pipelines: list[str]) -> dict:
    """Each pipeline's last run (status, stack, steps) and the model's MLflow facts."""
    import mlflow
    from zenml.client import Client

    from visionops.training.tracking import configure_tracking

    client = Client()
    runs = {}
    for name in pipelines:
        run = client.get_pipeline(name).last_run
        runs[name] = {
            "id": str(run.id),
            "status": str(run.status.value),
            "stack": run.stack.name,
            "snapshot": str(run.snapshot.id),
            "steps": {step: str(r.status.value) for step, r in run.steps.items()},
        }
    configure_tracking()
    tracker = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("training")
    candidates = [
        {
            "metrics": sorted(r.data.metrics),
            "history": len(
                tracker.get_metric_history(r.info.run_id, "metrics/mAP50-95B")
            ),
            "pipeline_run": r.data.tags.get("zenml.pipeline_run_id"),
        }
        for r in mlflow.search_runs([experiment.experiment_id], output_format="list")
        if "candidate" in r.data.tags
    ]
    champion = tracker.get_model_version_by_alias(model, "champion")
    return {
        "runs": runs,
        "candidates": candidates,
        "champion_run": champion.tags.get("zenml.pipeline_run_id"),
    }


if __name__ == "__main__":
    print(json.dumps(report(sys.argv[1], sys.argv[2:])))
