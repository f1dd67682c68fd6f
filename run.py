"""The one entry point: run pipelines and report the project's status."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from visionops.config import ConfigError, load_parameters  # noqa: E402

PIPELINES = ("ingestion",)
PLANNED = ("training", "deployment")

EXAMPLES = """examples:
  python run.py --pipeline ingestion                       # bundled sample data
  python run.py --pipeline ingestion --source ../shared/datasets/roboflow-boards
  python run.py --pipeline ingestion --source export.zip --set anonymize.enabled=false
  python run.py --pipeline ingestion --source picsellia://<dataset version id>
  python run.py --pipeline ingestion --config overlay.yaml --set split.seed=7 --no-cache
  python run.py --pipeline all                             # every pipeline, in order
  python run.py --status --json
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
    return parser


def _pipeline_params(name: str, args: argparse.Namespace):
    overrides = list(args.overrides)
    if name == "ingestion" and args.source:
        source = args.source
        if "://" not in source:
            source = str(Path(source).expanduser().resolve())
        overrides.append(f"source={json.dumps(source)}")
    params = load_parameters(name, overlays=args.config, overrides=overrides)
    if name == "ingestion":
        _check_source(params.source)
    return params


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


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, validates every config first, then runs."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.pipeline and not args.status:
        parser.print_help()
        return 2
    if args.json and not args.status:
        parser.error("--json goes with --status")
    if args.source and args.pipeline not in ("ingestion", "all"):
        parser.error(
            "--source is an ingestion setting: use it with --pipeline ingestion or all"
        )

    if args.pipeline:
        if args.pipeline in PLANNED:
            print(
                f"The {args.pipeline} pipeline is not part of this version yet; "
                f"available: {', '.join(PIPELINES)}.",
                file=sys.stderr,
            )
            return 2
        names = PIPELINES if args.pipeline == "all" else (args.pipeline,)
        try:  # every config is checked before any pipeline starts
            planned = [(name, _pipeline_params(name, args)) for name in names]
        except ConfigError as err:
            print(f"Configuration error: {err}", file=sys.stderr)
            return 2
        for name, params in planned:
            run_pipeline(name, params, enable_cache=not args.no_cache)

    if args.status:
        from visionops.status import collect_status, format_status

        status = collect_status()
        print(
            json.dumps(status, indent=2, sort_keys=True)
            if args.json
            else format_status(status)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
