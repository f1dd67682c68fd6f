"""The one entry point: run pipelines and report the project's status."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from visionops.config import ConfigError, load_parameters  # noqa: E402

PIPELINES = ("ingestion", "training")
PLANNED = ("deployment",)

EXAMPLES = """examples:
  python run.py --pipeline ingestion                       # bundled sample data
  python run.py --pipeline ingestion --source ../shared/datasets/roboflow-boards
  python run.py --pipeline ingestion --source export.zip --set anonymize.enabled=false
  python run.py --pipeline ingestion --source picsellia://<dataset version id>
  python run.py --pipeline ingestion --config overlay.yaml --set split.seed=7 --no-cache
  python run.py --pipeline training                        # train, evaluate, promote
  python run.py --pipeline training --set train.epochs=1   # a worse model: not promoted
  python run.py --pipeline training --set "grid={lr0: [0.01, 0.002]}"
  python run.py --pipeline training --config configs/training.gpu.yaml
  python run.py --pipeline training --resume               # continue killed runs
  python run.py --pipeline all                             # every pipeline, in order
  python run.py --stack local                              # apply stacks/local.yaml
  python run.py --status --json
  python run.py --mlflow-ui                                # MLflow UI of the stack
"""


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Run the VisionOps ZenML pipelines or show the project's status.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pipeline", choices=(*PIPELINES, *PLANNED, "all"), help="pipeline to run"
    )
    parser.add_argument(
        "--config",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="YAML overlay merged over configs/<pipeline>.yaml (repeatable)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override one parameter, e.g. split.seed=7 (repeatable)",
    )
    parser.add_argument(
        "--source",
        metavar="PATH_OR_URI",
        help="ingestion source: a folder, a .zip, or picsellia://<dataset version id>",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="run every step, ignoring ZenML's cache"
    )
    parser.add_argument(
        "--status", action="store_true", help="show stack, dataset and champion"
    )
    parser.add_argument(
        "--json", action="store_true", help="with --status: machine-readable JSON"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="training: resume interrupted candidates from their last checkpoint",
    )
    parser.add_argument(
        "--stack",
        metavar="NAME",
        help="apply stacks/NAME.yaml (idempotent), make it active",
    )
    parser.add_argument(
        "--mlflow-ui",
        action="store_true",
        help="serve the MLflow UI of the active stack's tracker on 127.0.0.1:5000",
    )
    return parser


def _pipeline_params(name: str, args: argparse.Namespace):
    overrides = list(args.overrides)
    if name == "ingestion" and args.source:
        source = args.source
        if "://" not in source:
            source = str(Path(source).expanduser().resolve())
        overrides.append(f"source={json.dumps(source)}")
    if name == "training" and args.resume:
        overrides.append("resume=true")
    params = load_parameters(name, overlays=args.config, overrides=overrides)
    if name == "ingestion":
        _check_source(params.source)
    if name == "training":
        _check_training(params, dataset_from_this_run="ingestion" in args.plan)
    return params


def _check_training(params, dataset_from_this_run: bool) -> None:
    """Fails before any work without a tracker, a dataset, or required weights."""
    from visionops.training.tracking import TrackingError, configure_tracking
    from visionops.training.yolo import PretrainedWeightsError, resolve_weights

    try:
        configure_tracking()
    except TrackingError as err:
        raise ConfigError(str(err)) from None
    if not dataset_from_this_run:
        from visionops.lookup import find_dataset

        try:
            find_dataset(params.dataset)
        except LookupError as err:
            raise ConfigError(f"dataset: {err}") from None
    models = {v for p in params.grid_points() for k, v in p.items() if k == "model"}
    for model in models or set(params.models):
        try:
            resolve_weights(model, params.pretrained)
        except (PretrainedWeightsError, FileNotFoundError) as err:
            raise ConfigError(f"models: {err}") from None


def _check_source(source: str) -> None:
    """Fails before any work when a local source is missing or of no known layout."""
    if source.startswith("picsellia://"):
        return  # checked against the platform by the first step
    from visionops.data.sources import SourceError, open_source
    from visionops.env import project_root

    path = Path(source) if Path(source).is_absolute() else project_root() / source
    try:
        open_source(path)
    except SourceError as err:
        raise ConfigError(f"source: {err}") from None


def run_pipeline(name: str, params, enable_cache: bool) -> None:
    """Runs one pipeline with validated parameters."""
    if name == "ingestion":
        from pipelines.ingestion import ingestion

        ingestion.with_options(enable_cache=enable_cache)(params=params)
    elif name == "training":
        from zenml import Model

        from pipelines.training import training

        model = Model(
            name=params.model.name,
            description=params.model.description or None,
            tags=params.model.tags or None,
        )
        training.with_options(enable_cache=enable_cache, model=model)(params=params)


def _status_model_name(args: argparse.Namespace) -> str:
    """The training config's model name, with the user's overlays and model.* sets."""
    model_sets = [
        o for o in args.overrides if o.removeprefix("parameters.").startswith("model.")
    ]
    try:
        params = load_parameters("training", overlays=args.config, overrides=model_sets)
    except ConfigError:
        params = load_parameters("training")
    return params.model.name


def _mlflow_ui() -> int:
    """Serves the MLflow UI on the active stack's tracking URI until interrupted."""
    import subprocess

    from visionops.training.tracking import TrackingError, configure_tracking

    try:
        uri = configure_tracking()
    except TrackingError as err:
        print(f"Stack error: {err}", file=sys.stderr)
        return 2
    print(f"MLflow UI for {uri} at http://127.0.0.1:5000 (Ctrl-C stops it)")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        "5000",
    ]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, validates every config first, then runs."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.pipeline or args.status or args.stack or args.mlflow_ui):
        parser.print_help()
        return 2
    if args.json and not args.status:
        parser.error("--json goes with --status")
    if args.source and args.pipeline not in ("ingestion", "all"):
        parser.error(
            "--source is an ingestion setting: use it with --pipeline ingestion or all"
        )

    if args.stack:
        from visionops.stacks import StackError, apply_stack, load_stack_spec

        try:
            name = apply_stack(load_stack_spec(args.stack))
        except StackError as err:
            print(f"Stack error: {err}", file=sys.stderr)
            return 2
        print(f"Active stack: {name}")

    args.plan = ()
    if args.pipeline:
        if args.pipeline in PLANNED:
            print(
                f"The {args.pipeline} pipeline is not part of this version yet; "
                f"available: {', '.join(PIPELINES)}.",
                file=sys.stderr,
            )
            return 2
        names = PIPELINES if args.pipeline == "all" else (args.pipeline,)
        args.plan = names
        try:  # every config is checked before any pipeline starts
            planned = [(name, _pipeline_params(name, args)) for name in names]
        except ConfigError as err:
            print(f"Configuration error: {err}", file=sys.stderr)
            return 2
        for name, params in planned:
            run_pipeline(name, params, enable_cache=not args.no_cache)

    if args.mlflow_ui:
        return _mlflow_ui()

    if args.status:
        from visionops.status import collect_status, format_status

        status = collect_status(_status_model_name(args))
        print(
            json.dumps(status, indent=2, sort_keys=True)
            if args.json
            else format_status(status)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
