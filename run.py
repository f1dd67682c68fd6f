"""The one entry point: run pipelines and report the project's status."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from visionops.app import registry  # noqa: E402
from visionops.config import ConfigError, load_parameters  # noqa: E402

EXAMPLES = """examples:
  python run.py --pipeline ingestion                       # bundled sample data
  python run.py --pipeline ingestion --source data/sample/chest-xray
  python run.py --pipeline ingestion --source export.zip --set anonymize.enabled=false
  python run.py --pipeline ingestion --source picsellia://<dataset version id>
  python run.py --pipeline ingestion --source outputs/review/T --set merge_with=latest
  python run.py --pipeline ingestion --config overlay.yaml --set split.seed=7 --no-cache
  python run.py --pipeline training                        # train, evaluate, promote
  python run.py --pipeline training --set train.epochs=1   # a worse model: not promoted
  python run.py --pipeline training --set "grid={lr0: [0.01, 0.002]}"
  python run.py --pipeline training --config configs/training.gpu.yaml
  python run.py --pipeline training --resume               # continue killed runs
  python run.py --pipeline training --set dataset=4        # or v4, or a hash prefix
  python run.py --pipeline training --set 'models=[champion]'  # or champion@v3
  python run.py --pipeline batch --source photos/          # champion over a folder
  python run.py --pipeline batch --source dataset:test     # a split of the dataset
  python run.py --pipeline batch --source photos/ --set conf=0.5 --set output_dir=out
  python run.py --pipeline review --set target=picsellia://<dataset>/<version>
  python run.py --pipeline batch --source clip.mp4 --set video.fps=5   # a video
  python run.py --pipeline all                             # {all}
  python run.py --pipeline loop                            # the feedback loop
  python run.py --pipeline loop --set min_reviewed=20 --set training.train.epochs=30
  python run.py --stack local                              # apply stacks/local.yaml
  python run.py --status --set dataset=4                   # what training would use
  python run.py --status --json
  python run.py --mlflow-ui                                # MLflow UI of the stack
  python run.py --stack docker-cuda                        # steps in CUDA containers
  python run.py --dashboard                                # ZenML + MLflow, background
  python run.py --dashboard stop
  python run.py --backup mlflow-backup.zip                 # the stack's MLflow tracker
  python run.py --stack server --restore mlflow-backup.zip --dry-run
  python run.py --restore mlflow-backup.zip --on-conflict rename
  python run.py --airflow                                  # local Airflow, background
  python run.py --stack airflow                            # steps as Airflow tasks
  python run.py --pipeline training --schedule "0 3 * * *" # every day at 03:00 UTC
  python run.py --pipeline loop --schedule "0 4 * * *"     # the loop, nightly
  python run.py --unschedule training-0_3_x_x_x            # names: --status
  python run.py --airflow stop

pipelines:
{pipelines}

paths:
  {rule}.
"""


def _epilog() -> str:
    """The examples, the registered pipelines and the path rule, for `--help`."""
    pipelines = "\n".join(
        f"  {spec.name:<12} {spec.help}"
        for spec in (*registry.PIPELINES.values(), *registry.PLANS.values())
    )
    return (
        EXAMPLES.replace("{all}", ", ".join(registry.all_names()))
        .replace("{pipelines}", pipelines)
        .replace(
            "{rule}", textwrap.fill(registry.SOURCE_RULE, 72, subsequent_indent="  ")
        )
    )


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="run.py",
        description="Run the VisionOps ZenML pipelines or show the project's status.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pipeline",
        choices=registry.choices(),
        help=f"pipeline to run; {registry.ALL}: {', '.join(registry.all_names())}; "
        "loop: drift, review, then training when enough labels were reviewed",
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
        help="ingestion: a folder, a .zip, or picsellia://<dataset version id>; "
        "batch: a folder of images and videos, one such file, or "
        "dataset:train|val|test; a relative path is "
        "relative to the project root (the folder of run.py)",
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
        "--serve",
        action="store_true",
        help="deployment: start `bentoml serve` on the new Bento and wait until ready",
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
    parser.add_argument(
        "--dashboard",
        nargs="?",
        const="start",
        choices=("start", "stop"),
        help="start the ZenML dashboard and the MLflow UI of the active stack in the "
        "background (ports: VISIONOPS_ZENML_PORT=8237, VISIONOPS_MLFLOW_PORT=5000), "
        "or stop them",
    )
    parser.add_argument(
        "--airflow",
        nargs="?",
        const="start",
        choices=("start", "stop", "install"),
        help="start the local Airflow (`airflow standalone` on 127.0.0.1, port "
        "VISIONOPS_AIRFLOW_PORT=8080, installed on first use) in the background, "
        "stop it, or only install it into its own venv",
    )
    parser.add_argument(
        "--schedule",
        metavar="CRON",
        help="with --pipeline: schedule it on the active stack (e.g. airflow) with "
        "a cron expression in UTC instead of running it now",
    )
    parser.add_argument(
        "--unschedule",
        metavar="NAME",
        help="remove a schedule (its name as --status lists it)",
    )
    parser.add_argument(
        "--backup",
        type=Path,
        metavar="FILE.zip",
        help="back up the active stack's MLflow tracker (runs, models, registry)",
    )
    parser.add_argument(
        "--restore",
        type=Path,
        metavar="FILE.zip",
        help="restore a backup into the active stack's MLflow tracker",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --restore: print what would be created, skipped or renamed",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print the full traceback of a failure (it always goes to a log file)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars or per-epoch lines; ZenML logs warnings only",
    )
    parser.add_argument(
        "--on-conflict",
        choices=("skip", "rename"),
        help="with --restore: an experiment or registered model whose name exists "
        "is skipped (default) or restored as <name>-restored-<n>",
    )
    return parser


def _load_params(spec: registry.PipelineSpec, args: argparse.Namespace):
    """The spec's validated parameters; in a plan with parameters of its own, from
    the plan's settings of it instead of the command line."""
    plan = registry.PLANS.get(args.pipeline)
    if plan is None or not plan.own:
        options = {flag: getattr(args, _dest(flag)) for flag in spec.options}
        return spec.load(args.config, args.overrides, options)
    try:
        return spec.load(overrides=plan.members(args.plan_params, spec.name))
    except ConfigError as err:
        raise ConfigError(
            f"{err}\n  (the {plan.name}'s `{spec.name}:` settings over "
            f"configs/{spec.name}.yaml)"
        ) from None


def _check_params(spec: registry.PipelineSpec, params, args: argparse.Namespace):
    """The parameters checked against the stack and the stores (`spec.check`)."""
    if spec.check is not None:
        upstream = (
            spec.needs is not None
            and spec.needs in args.plan[: args.plan.index(spec.name)]
        )
        params = spec.check(params, upstream)
    return params


def _dest(flag: str) -> str:
    """The argparse attribute of a flag: `--no-cache` is `no_cache`."""
    return flag.removeprefix("--").replace("-", "_")


def _schedule_plan(plan: str, args: argparse.Namespace) -> int:
    """Schedules `run.py --pipeline <plan>` with this command's settings on the
    local Airflow (its configs were checked)."""
    from visionops.app.schedules import schedule_plan

    arguments = [x for path in args.config for x in ("--config", str(path.resolve()))]
    arguments += [x for override in args.overrides for x in ("--set", override)]
    for flag in registry.option_flags():
        value = getattr(args, _dest(flag))
        if isinstance(value, str):
            arguments += [flag, value]
        elif value:
            arguments.append(flag)
    arguments += ["--quiet"] + (["--no-cache"] if args.no_cache else [])
    name = schedule_plan(plan, args.schedule, arguments, ROOT)
    print(
        f"Scheduled {plan} as {name} ({' '.join(args.schedule.split())}, UTC): the "
        f"local Airflow runs python run.py --pipeline {plan} on this machine with "
        "these settings, each pipeline compiled when it runs (a dataset: latest is "
        f"the latest then); remove it with: python run.py --unschedule {name}"
    )
    return 0


def _stack_settings(folders: list) -> dict:
    """Docker settings when the active stack runs steps in containers, else none;
    containers on this machine's engine mount the pipeline's `folders`."""
    from zenml.client import Client

    from visionops.app.docker import pipeline_settings

    return pipeline_settings(Client().active_stack_model.name, folders)


def run_pipeline(name: str, params, enable_cache: bool, schedule=None):
    """Runs one registered pipeline with validated parameters, then its report;
    returns the run (None when scheduled).

    On Airflow the run is a DAG of its own, waited for; with a ZenML `schedule`,
    the pipeline is scheduled (not run, no report).
    """
    spec = registry.PIPELINES[name]
    if spec.prepare is not None:  # `all`: what depends on the previous pipeline
        params = spec.prepare(params)
    settings = _stack_settings(spec.folders(params) if spec.folders else [])
    options: dict = {"enable_cache": enable_cache, "settings": settings}
    if spec.model is not None:
        options["model"] = spec.model(params)
    dag = None
    if "orchestrator.airflow" in settings:
        from visionops.app import airflow

        settings["orchestrator.airflow"], dag = airflow.with_dag(
            settings["orchestrator.airflow"], name, schedule.name if schedule else None
        )
    if schedule is not None:
        options["schedule"] = schedule
    run = spec.function().with_options(**options)(params=params)
    if schedule is not None:
        print(
            f"Scheduled {name} as {schedule.name} ({schedule.cron_expression}, UTC); "
            "every run takes the parameters as resolved above, now (a dataset: "
            "latest stays this version; schedule again after an ingestion); "
            f"remove it with: python run.py --unschedule {schedule.name}"
        )
        return None
    if dag is not None and airflow.writes_here(settings["orchestrator.airflow"]):
        run = airflow.wait_for_pipeline_run(dag, run)
    if spec.report is not None:
        spec.report(run, params)
    return run


def _status_training(args: argparse.Namespace):
    """The training config with the user's overlays and model.* / dataset sets
    (`model.name` None: the default of the training dataset's task)."""
    sets = [
        o
        for o in args.overrides
        if o.removeprefix("parameters.").startswith(("model.", "dataset="))
    ]
    try:
        return load_parameters("training", overlays=args.config, overrides=sets)
    except ConfigError as err:  # say so: the status then shows the defaults
        print(f"Status uses configs/training.yaml as is: {err}", file=sys.stderr)
        return load_parameters("training")


def _mlflow_ui() -> int:
    """Serves the MLflow UI on the active stack's tracking URI until interrupted."""
    import subprocess

    from visionops.training.tracking import TrackingError, configure_tracking

    try:
        uri = configure_tracking()
    except TrackingError as err:
        print(f"Stack error: {err}", file=sys.stderr)
        return 2
    from visionops.app.dashboards import DEFAULT_MLFLOW_PORT, HOST, mlflow_ui_command

    url = f"http://{HOST}:{DEFAULT_MLFLOW_PORT}"
    print(f"MLflow UI for {uri} at {url} (Ctrl-C stops it)")
    command, env = mlflow_ui_command(uri, DEFAULT_MLFLOW_PORT)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0


def _backup_or_restore(args: argparse.Namespace) -> int:
    """Backs up the active stack's MLflow tracker, or restores a backup into it."""
    from visionops.app.backup import BackupError, backup, format_backup, restore
    from visionops.training.tracking import (
        TrackingError,
        configure_tracking,
        stack_artifact_location,
    )

    try:
        uri = configure_tracking()
        if args.backup:
            print(format_backup(backup(args.backup, uri)))
        else:
            report = restore(
                args.restore,
                uri,
                on_conflict=args.on_conflict or "skip",
                dry_run=args.dry_run,
                artifact_location=stack_artifact_location(),
            )
            print(report.text())
    except (TrackingError, BackupError) as err:
        print(f"Backup error: {err}", file=sys.stderr)
        return 2
    return 0


def _dashboard(action: str) -> int:
    """Starts the dashboards in the background and prints their URLs, or stops them."""
    from visionops.app import dashboards

    if action == "stop":
        stopped = dashboards.stop()
        print(
            ", ".join(stopped) + " stopped." if stopped else "No dashboard was running."
        )
        return 0
    training = load_parameters("training")
    try:
        urls = dashboards.start()
        links = dashboards.deep_links(urls, training.model.name)
    except dashboards.DashboardError as err:
        print(f"Dashboard error: {err}", file=sys.stderr)
        return 2
    print(f"ZenML dashboard: {urls.zenml_url}")
    print(f"MLflow UI:       {urls.mlflow_url}")
    for what, url in links.items():
        print(f"  {what + ':':<25} {url}")
    print("Stop both with: python run.py --dashboard stop")
    from visionops.app import airflow

    server = airflow.running()
    if server is not None:
        print(
            f"Airflow UI:      {server.url} (login {server.user}, password in "
            f"{airflow.password_file()})"
        )
    return 0


def _airflow(action: str) -> int:
    """Starts the local Airflow in the background and prints its login, stops it,
    or installs it."""
    from visionops.app import airflow

    if action == "stop":
        url = airflow.stop()
        print(f"Airflow ({url}) stopped." if url else "Airflow was not running.")
        return 0
    if not airflow.installed():
        print(f"Installing Airflow into {airflow.venv_dir()} (minutes, once)...")
    try:
        if action == "install":
            print(f"Airflow is installed in {airflow.install()}")
            return 0
        server = airflow.start()
    except airflow.AirflowError as err:
        print(f"Airflow error: {err}", file=sys.stderr)
        return 2
    print(f"Airflow UI: {server.url}")
    print(f"  login: {server.user} / {server.password}  ({airflow.password_file()})")
    print(f"  DAGs folder: {airflow.dags_folder()}")
    print("Run pipelines on it: python run.py --stack airflow --pipeline ingestion")
    print("Stop it with: python run.py --airflow stop")
    return 0


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of options, or None."""
    if args.json and not args.status:
        return "--json goes with --status"
    if args.schedule and not args.pipeline:
        return "--schedule goes with --pipeline NAME"
    if (args.dry_run or args.on_conflict) and not args.restore:
        return "--dry-run and --on-conflict go with --restore"
    if (args.backup or args.restore) and (
        (args.backup and args.restore) or args.pipeline or args.mlflow_ui or args.status
    ):
        return "--backup and --restore run alone (after --stack, if given)"
    options = registry.option_flags()
    if not args.pipeline:
        pipeline_only = {
            "--set": args.overrides,
            "--config": args.config,
            "--no-cache": args.no_cache,
            **{flag: getattr(args, _dest(flag)) for flag in options},
        }
        given = [flag for flag, value in pipeline_only.items() if value]
        if given and not (args.status and set(given) <= {"--set", "--config"}):
            return f"{', '.join(given)} goes with --pipeline NAME"
        return None
    for flag in options:
        names = registry.taking(flag)
        if getattr(args, _dest(flag)) and args.pipeline not in names:
            choices = (
                f"{', '.join(names[:-1])} or {names[-1]}" if names[1:] else names[0]
            )
            return f"{flag} goes with --pipeline {choices}"
    return None


class _NoTraceback(logging.Formatter):
    """Formats a record as `inner` does, without its traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self._inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _quiet_console_tracebacks() -> None:
    """ZenML logs a failed step's traceback on the console; it goes to the log."""
    from zenml.logger import ZenMLConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, ZenMLConsoleHandler) and not isinstance(
            handler.formatter, _NoTraceback
        ):
            handler.setFormatter(_NoTraceback(handler.formatter))


def _failed_steps(pipeline: str | None) -> list[tuple[str, str, str]]:
    """(pipeline/step, last traceback line, traceback) of each failed step."""
    if not pipeline:
        return []
    try:
        from zenml.client import Client
        from zenml.enums import ExecutionStatus

        failed = []
        run = Client().get_pipeline(pipeline).last_run
        for step, info in run.steps.items():
            if info.status != ExecutionStatus.FAILED:
                continue
            trace = info.exception_info.traceback if info.exception_info else ""
            lines = [x for x in trace.strip().splitlines() if x.strip()]
            failed.append((f"{pipeline}/{step}", lines[-1] if lines else "", trace))
        return failed
    except Exception:  # noqa: BLE001 - only an extra hint in an error message
        return []


def _report_failure(err: Exception, args: argparse.Namespace) -> int:
    """One line on what failed and what to do; the traceback goes to a log file."""
    import traceback

    from visionops.app.stacks import redact
    from visionops.core.env import state_dir

    steps = _failed_steps(args.running)
    text = "".join(traceback.format_exception(err))
    text = redact("".join(f"Step {s}:\n{trace}\n" for s, _, trace in steps) + text)
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"run-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    log.write_text(f"run.py {' '.join(args.argv)}\n\n{text}")
    if args.verbose:
        print(text, file=sys.stderr, end="")
    what = f"The {args.running} pipeline" if args.running else "run.py"
    if steps:
        where = f" at step {', '.join(s for s, _, _ in steps)}"
        reason = "; ".join(line for _, line, _ in steps if line)
    else:
        where = ""
        message = str(err).strip().splitlines()
        reason = f"{type(err).__name__}: {message[0] if message else ''}"
    print(
        redact(f"{what} failed{where}: {reason}\n")
        + f"Full traceback: {log}{'' if args.verbose else ' (or add --verbose)'}. "
        "Fix the cause and run the same command again (finished steps are cached).",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    """Parses arguments, validates every config first, then runs."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.plan, args.plan_params, args.running = (), None, None
    what = (
        args.pipeline,
        args.status,
        args.stack,
        args.mlflow_ui,
        args.dashboard,
        args.airflow,
        args.unschedule,
    )
    problem = _usage_problem(args)
    if problem:
        print(f"run.py: error: {problem}", file=sys.stderr)
        parser.print_usage(sys.stderr)
        return 2
    if not any((*what, args.backup, args.restore)):
        parser.print_help()
        return 2
    from visionops.core import console

    console.set_quiet(args.quiet)
    if not args.verbose:
        _quiet_console_tracebacks()
    console.replace_zenml_hints()
    try:
        return _run(args)
    except Exception as err:  # noqa: BLE001 - one line and a log, never a traceback
        return _report_failure(err, args)


def _run(args: argparse.Namespace) -> int:
    """Runs what the (valid) arguments ask for, in order."""
    from visionops.app.stacks import redact

    if args.stack:
        from visionops.app.stacks import StackError, apply_stack, load_stack_spec

        try:
            name = apply_stack(load_stack_spec(args.stack))
        except StackError as err:
            print(f"Stack error: {redact(str(err))}", file=sys.stderr)
            return 2
        print(f"Active stack: {name}")

    if args.airflow:
        code = _airflow(args.airflow)
        if code:
            return code

    if args.unschedule:
        from visionops.app.schedules import ScheduleError, unschedule

        try:
            removed = unschedule(args.unschedule)
        except ScheduleError as err:
            print(f"Schedule error: {err}", file=sys.stderr)
            return 2
        print("Removed: " + ", ".join(removed))

    if args.backup or args.restore:
        return _backup_or_restore(args)

    if args.pipeline:
        from visionops.app.stacks import StackError, check_active_stack

        try:  # the servers the stack needs answer, before any work
            check_active_stack()
        except StackError as err:
            print(f"Stack error: {redact(str(err))}", file=sys.stderr)
            return 2
        specs = registry.plan(args.pipeline)
        args.plan = tuple(spec.name for spec in specs)
        schedule = None
        plan = registry.PLANS.get(args.pipeline)
        if args.schedule:
            from visionops.app import schedules

            try:
                if plan is None:
                    schedule = schedules.make_schedule(args.pipeline, args.schedule)
                else:
                    schedules.check_plan_schedule(plan.name, args.schedule)
            except schedules.ScheduleError as err:
                print(f"Schedule error: {err}", file=sys.stderr)
                return 2
        try:  # every config is checked before any pipeline starts
            if plan is not None:
                args.plan_params = plan.load(args.config, args.overrides)
            loaded = [(spec, _load_params(spec, args)) for spec in specs]
            planned = [(s.name, _check_params(s, p, args)) for s, p in loaded]
        except ConfigError as err:
            print(f"Configuration error: {redact(str(err))}", file=sys.stderr)
            return 2
        if plan is not None and args.schedule:
            return _schedule_plan(plan.name, args)
        runs: dict = {}
        for name, params in planned:
            args.running = name  # the pipeline a failure is reported for
            try:  # `all`: what depends on the previous pipeline is checked here
                gate = plan.gates.get(name) if plan is not None else None
                if gate is not None:
                    due, why = gate(args.plan_params, params, runs)
                    print(why)
                    if not due:
                        break
                runs[name] = run_pipeline(
                    name, params, enable_cache=not args.no_cache, schedule=schedule
                )
            except ConfigError as err:
                print(f"Configuration error: {redact(str(err))}", file=sys.stderr)
                return 2
        args.running = None

    if args.dashboard:
        code = _dashboard(args.dashboard)
        if code:
            return code

    if args.mlflow_ui:
        return _mlflow_ui()

    if args.status:
        from visionops.app.status import StatusError, collect_status, format_status

        training = _status_training(args)
        try:
            status = collect_status(training.model.name, training.dataset)
        except StatusError as err:
            print(f"Status error: {redact(str(err))}", file=sys.stderr)
            return 1
        print(
            json.dumps(status, indent=2, sort_keys=True)
            if args.json
            else format_status(status)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
