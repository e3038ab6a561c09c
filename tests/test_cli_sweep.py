"""Sweeps in the terminal: readable point names, a progress bar with an ETA over training
steps, each running point's live step and reward from its metrics.jsonl."""

from __future__ import annotations

import collections
import io
import json

from rich.console import Console

from rlscale import sweep, sweep_run


def _spec(tmp_path, **fields):
    data = {"name": "s", "base": "configs/demo.yaml", "output_dir": str(tmp_path / "out"), **fields}
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(data))
    return sweep.load_spec(path)


def _write(run_dir, records, partial=""):
    run_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records) + partial
    (run_dir / "metrics.jsonl").write_text(text)


def test_point_names_are_readable_and_safe(tmp_path):
    spec = _spec(
        tmp_path, grid={"algo.name": ["grpo", "dapo"], "env.name": ["arithmetic"], "trainer.seed": [0]}
    )
    names = [p.name for p in sweep.expand(spec)]
    assert names == ["algo=grpo,env=arithmetic,seed=0", "algo=dapo,env=arithmetic,seed=0"]
    for name in names:
        assert "/" not in name and " " not in name and "." not in name.split("=")[0]


def test_colliding_short_names_keep_the_section(tmp_path):
    spec = _spec(tmp_path, grid={"rollout.temperature": [1.0], "eval.temperature": [0.5]})
    (point,) = sweep.expand(spec)
    assert point.name == "rollout-temperature=1.0,eval-temperature=0.5"


def test_live_status_reads_the_last_whole_record(tmp_path):
    assert sweep_run.live_status(tmp_path / "absent") is None
    _write(
        tmp_path,
        [{"step": 1, "reward/mean": 0.1}, {"step": 2, "reward/mean": 0.25}],
        partial='{"step": 3, "rew',
    )
    assert sweep_run.live_status(tmp_path) == (2, 0.25)


def test_progress_in_a_log_shows_each_points_step_reward_and_an_eta(tmp_path):
    spec = _spec(tmp_path, grid={"trainer.seed": [0, 1]})
    a, b = sweep.expand(spec)
    lines = []
    progress = sweep_run.SweepProgress(spec, [a, b], {a.name: 10, b.name: 10}, log=lines.append)
    progress.quiet_s = 0
    progress.started(a)
    progress.started(b)
    _write(a.run_dir(spec), [{"step": 5, "reward/mean": 0.5}])
    progress.update()
    assert lines[-1].startswith("[0/2 points, ETA ")
    assert "seed=0 step 5/10 reward 0.500" in lines[-1] and "seed=1 starting" in lines[-1]
    _write(a.run_dir(spec), [{"step": 10, "reward/mean": 0.75}])
    progress.finished(a, {"status": "ok", "wall_s": 3.0})
    assert "finished seed=0: ok (3 s, reward 0.750 at step 10)  [1/2]" in lines
    progress.close()


def test_progress_on_a_terminal_draws_a_bar_and_the_running_points(tmp_path):
    spec = _spec(tmp_path, grid={"trainer.seed": [0, 1]})
    a, b = sweep.expand(spec)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    progress = sweep_run.SweepProgress(spec, [a, b], {a.name: 10, b.name: 10}, console=console)
    assert progress.live
    progress.started(a)
    _write(a.run_dir(spec), [{"step": 4, "reward/mean": 0.375}])
    progress.update()
    progress.close()
    text = out.getvalue()
    assert "sweep s" in text and "0/2 points, 1 running" in text and "ETA" in text
    assert "seed=0" in text and "4/10" in text and "0.375" in text


def test_shipped_specs_are_valid_and_every_point_tests_what_it_sets(capsys):
    """Every experiments/*.yaml validates point by point (tune stage too), runs >= 1,000 steps
    with >= 3 seeds per point, and no point sets a value that cannot act (entropy_control once
    compared clip-higher and KL-Cov with one on-policy step per batch: curves identical to
    plain GRPO)."""
    from pathlib import Path

    from rlscale import sweep_tune

    specs = sorted(Path("experiments").glob("*.yaml"))
    assert {p.stem for p in specs} >= {"allocation", "entropy_control", "ladder", "presets", "validate"}
    for path in specs:
        spec = sweep.load_spec(path)
        points = sweep.expand(spec)
        if spec.tune is not None:
            tune = sweep_tune.tune_spec(spec)
            sweep.validate(tune, sweep.expand(tune))
            points = sweep_tune.apply_choices(spec, points, None)
        configs = sweep.validate(spec, points)
        assert len(configs) == len(points) >= 3, path
        # long enough to mean something: >= 1,000 steps and >= 3 seeds per point
        assert min(c.trainer.steps for c in configs) >= 1000, path
        seeds_per_group = collections.Counter(p.group for p in points)
        assert min(seeds_per_group.values()) >= 3, (path, seeds_per_group)
        sweep.print_inert_settings(points, configs)
        assert "note:" not in capsys.readouterr().out, path


def test_a_run_dir_of_other_settings_stops_the_sweep_naming_what_changed(tmp_path, capsys):
    """Raising trainer.steps in a spec whose points already ran must not skip (or resume) the
    old runs and report them as the new ones; a run dir differing only in the Ray address it
    attached to is the same run."""
    import pytest

    from rlscale.cli import main
    from rlscale.config import ConfigError
    from rlscale.config_io import save_config

    def points_and_configs(steps):
        spec = _spec(tmp_path, grid={"trainer.seed": [0, 1]}, fixed={"trainer.steps": steps})
        points = sweep.expand(spec)
        return spec, points, sweep.validate(spec, points)

    spec, points, configs = points_and_configs(500)
    for point, cfg in zip(points, configs):
        point.run_dir(spec).mkdir(parents=True)
        ran_with = cfg.model_copy(update={"ray": cfg.ray.model_copy(update={"address": "10.0.0.1:6379"})})
        save_config(ran_with, point.run_dir(spec) / "config.yaml")
        (point.run_dir(spec) / "summary.json").write_text("{}")
    sweep_run.check_run_dirs_match(spec, points, configs)  # same settings: reused

    spec, points, configs = points_and_configs(1000)
    with pytest.raises(ConfigError) as err:
        sweep_run.check_run_dirs_match(spec, points, configs)
    message = str(err.value)
    assert "2 run dir(s)" in message and "trainer.steps 500 -> 1000" in message
    assert "seed=0" in message and "seed=1" in message and "ray.address" not in message
    # through the command: one clear error, and no report written over the old runs
    assert main(["sweep", str(tmp_path / "spec.yaml"), "--report-only"]) == 2
    assert "trainer.steps 500 -> 1000" in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.md").exists()
