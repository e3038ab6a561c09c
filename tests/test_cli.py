"""The command line's discoverability: config show, presets, run --dry-run, help with examples."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from rlscale.cli import main


def _sub_parsers(parser: argparse.ArgumentParser, prefix="rlscale"):
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _sub_parsers(sub, f"{prefix} {name}")


def _parser() -> argparse.ArgumentParser:
    captured = {}
    real = argparse.ArgumentParser.parse_args

    def grab(self, *args, **kwargs):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            main(["envs"])
    finally:
        argparse.ArgumentParser.parse_args = real
    return captured["parser"]


def test_every_argument_has_help_and_every_command_ends_with_examples():
    from rlscale.cli import backtest_parser

    parsers = [*_sub_parsers(_parser()), ("rlscale backtest", backtest_parser())]
    for name, parser in parsers:
        if parser.prog == "rlscale backtest" and not parser.add_help:
            continue  # the proxy that hands its arguments to backtest_parser()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name}: {action.dest} has no help text"
        assert parser.epilog and "examples:" in parser.epilog, f"{name}: no examples in --help"
        assert "rlscale " in parser.epilog.split("examples:")[1]


def test_plot_takes_y_like_fit(capsys):
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    assert "--y Y" in capsys.readouterr().out


def test_config_show_prints_value_default_and_meaning(capsys):
    assert main(["config", "show", "configs/demo.yaml", "rollout.group_size=16"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if " rollout.group_size " in ln)
    assert line.startswith("*") and "16" in line and "8" in line and "responses sampled per prompt" in line
    assert "algo.eps_high" in out and "learner.lr" in out


def test_config_show_without_a_file_shows_the_defaults(capsys):
    assert main(["config", "show", "trainer.steps=5"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if " trainer.steps " in ln)
    assert line.split()[1:3] == ["trainer.steps", "5"]


def test_config_show_refuses_a_bad_key(capsys):
    assert main(["config", "show", "configs/demo.yaml", "trainer.stepz=1"]) == 2
    assert "configs/demo.yaml: trainer.stepz: unknown key" in capsys.readouterr().err


def test_presets_lists_every_preset_and_its_settings(capsys):
    from rlscale.presets import ALGO_PRESETS

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ALGO_PRESETS:
        assert f"\n{name}\n" in out
    assert "eps_high=0.28" in out  # dapo's clip-higher


def test_dry_run_validates_prints_and_imports_nothing_heavy(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "metrics.jsonl").write_text("")
    code = (
        "import sys; from rlscale.cli import main; "
        "rc = main(['run', '--dry-run', 'configs/demo.yaml', 'algo.name=dapo', "
        f"'output_dir={tmp_path}', 'trainer.steps=7']); "
        "heavy = [m for m in ('ray', 'torch', 'vllm', 'transformers') if m in sys.modules]; "
        "print('heavy', heavy); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "heavy []" in out
    assert "builtin:tiny" in out and "arithmetic" in out and "dapo -> " in out and "eps_high=0.28" in out
    assert "steps:     7 x 32 prompts x 8 samples" in out
    assert f"{tmp_path / 'demo'}  (EXISTS" in out


def test_an_existing_run_dir_is_refused_before_ray_starts(tmp_path, capsys):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "metrics.jsonl").write_text("")
    assert main(["run", "configs/demo.yaml", f"output_dir={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "name=" in err


def test_backtest_runs_through_its_own_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["backtest", "--help"])
    assert "examples:" in capsys.readouterr().out
    assert (
        main(["backtest", "tests/data/demo_run", "--bootstrap", "10", "--out", str(tmp_path / "b.png")]) == 0
    )
    assert (tmp_path / "b.png").is_file()


def test_plot_says_what_it_does_before_the_fits(tmp_path, capsys):
    assert (
        main(["plot", "tests/data/demo_run", "--out", str(tmp_path), "--bootstrap", "5", "--bins", "20"]) == 0
    )
    captured = capsys.readouterr()  # what it does on stderr; stdout stays the list of files
    said = "fitting demo_run (1/1: 400 steps, 5 bootstrap resamples) ..."
    assert captured.err.splitlines()[0] == said and f"plotting into {tmp_path} ..." in captured.err
    assert all(line.endswith(".png") for line in captured.out.splitlines())


def test_run_notes_a_setting_that_cannot_act(capsys):
    assert main(["run", "--dry-run", "configs/demo.yaml", "algo.eps_high=0.28"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: algo.eps_high=0.28: no effect here") and "algo.mini_batches" in err
    assert main(["run", "--dry-run", "configs/demo.yaml", "algo.eps_high=0.28", "algo.mini_batches=4"]) == 0
    assert "note:" not in capsys.readouterr().err
