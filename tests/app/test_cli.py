"""run.py dispatches through the pipeline registry; one rule resolves source paths."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from visionops.app import registry
from visionops.config import PARAMETER_MODELS
from visionops.core.env import project_path, project_root

RUN_PY = Path(__file__).resolve().parents[2] / "run.py"


def test_run_py_compares_no_pipeline_name() -> None:
    """Dispatch goes through the registry: no `name == "ingestion"` in run.py."""
    names = set(registry.choices())
    tree = ast.parse(RUN_PY.read_text())
    compared = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        for const in ast.walk(node)
        if isinstance(const, ast.Constant) and const.value in names
    ]
    assert not compared
    text = RUN_PY.read_text()
    assert not [f'== "{n}"' for n in names if f'== "{n}"' in text]


def test_every_pipeline_has_one_entry_with_its_parameters_and_wiring() -> None:
    assert list(registry.PIPELINES) == [
        "ingestion",
        "training",
        "deployment",
        "batch",
        "review",
        "drift",
    ]
    own = {name for name, plan in registry.PLANS.items() if plan.own}
    assert (
        set(PARAMETER_MODELS)
        == set(registry.PIPELINES) | own
        == {
            *registry.PIPELINES,
            "loop",
        }
    )
    for name, spec in registry.PIPELINES.items():
        assert spec.parameters is PARAMETER_MODELS[name]
        assert spec.function().name == name  # the ZenML pipeline of that name
        assert spec.needs is None or spec.needs in registry.PIPELINES
        for flag, key in spec.options.items():
            assert key in spec.parameters.model_fields, (name, flag)
    assert registry.all_names() == ["ingestion", "training", "deployment"]
    for plan in registry.PLANS.values():
        assert set(plan.pipelines) <= set(registry.PIPELINES)
        assert set(plan.gates) <= set(plan.pipelines)
        assert plan.own == (plan.members is not None)
    assert registry.PLANS["loop"].pipelines == ("drift", "review", "training")
    assert list(registry.PLANS["loop"].gates) == ["training"]


def test_help_says_what_all_runs_and_the_path_rule(capsys) -> None:
    import run

    with pytest.raises(SystemExit):
        run.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--pipeline all # ingestion, training, deployment" in out
    assert "all: ingestion, training, deployment" in out  # the --pipeline help
    assert "relative to the project root (the folder of run.py)" in out
    for spec in registry.PIPELINES.values():
        assert f"{spec.name} {spec.help}" in out


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--pipeline", "ingestion", "--resume"], "--resume goes with --pipeline "),
        (["--pipeline", "batch", "--serve"], "--serve goes with --pipeline "),
        (["--pipeline", "training", "--source", "x"], "--source goes with --pipeline "),
    ],
)
def test_a_flag_of_another_pipeline_is_a_usage_error(args, line, capsys) -> None:
    import run

    assert run.main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"run.py: error: {line}")
    flag = line.split()[0]
    *first, last = registry.taking(flag)
    expected = f"{', '.join(first)} or {last}"
    assert err[0] == f"run.py: error: {line}{expected}"
    assert err[1].startswith("usage: run.py")


@pytest.mark.parametrize("pipeline", ["ingestion", "batch"])
def test_source_flag_and_config_name_the_same_path_from_any_directory(
    pipeline: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--source x` and `source: x` in an overlay resolve against the project root."""
    spec = registry.PIPELINES[pipeline]
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("parameters:\n  source: data/sample/boards\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory plays no part
    from_flag = spec.load(options={"--source": "data/sample/boards"})
    from_yaml = spec.load(overlays=[overlay])
    from_set = spec.load(overrides=["source=data/sample/boards"])
    paths = {project_path(p.source) for p in (from_flag, from_yaml, from_set)}
    assert paths == {project_root() / "data" / "sample" / "boards"}
    assert (project_root() / "data/sample/boards").is_dir()


def test_project_path_keeps_absolute_paths_and_expands_home(tmp_path: Path) -> None:
    assert project_path(tmp_path) == tmp_path.resolve()
    assert project_path("~") == Path.home().resolve()
    assert project_path("a/../b") == project_root() / "b"


def test_ingestion_precheck_reads_a_relative_source_from_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pre-check finds the bundled sample from another working directory."""
    from visionops.config import ConfigError

    monkeypatch.chdir(tmp_path)
    spec = registry.PIPELINES["ingestion"]
    params = spec.load(options={"--source": "data/sample/boards"})
    assert spec.check(params, False) is params
    missing = spec.load(options={"--source": "no/such/folder"})
    with pytest.raises(ConfigError, match=str(project_root() / "no/such/folder")):
        spec.check(missing, False)


def test_a_bad_setting_of_a_loop_pipeline_names_the_block_before_any_check(
    capsys,
) -> None:
    """Every pipeline of the loop is validated before any is checked against the
    stores (the drift check would otherwise speak first, of a missing champion)."""
    import run

    code = run.main(["--pipeline", "loop", "--set", "training.train.epochs=abc"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Invalid training configuration:" in err
    assert "train.epochs: Input should be a valid integer" in err
    assert "(the loop's `training:` settings over configs/training.yaml)" in err
    assert run.main(["--pipeline", "loop", "--resume"]) == 2
    assert "--resume goes with --pipeline training or all" in capsys.readouterr().err
