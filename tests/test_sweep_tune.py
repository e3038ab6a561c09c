"""A sweep's tune stage: the spec, its points, the pick (a pure function, on fake run
frames), the main points it feeds, dry run and report. No Ray, no runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from rlscale import sweep, sweep_run, sweep_tune
from rlscale.cli import main
from rlscale.config import ConfigError
from rlscale.sweep import TuneSpec

TUNE = {
    "grid": {"learner.lr": [1.0e-4, 3.0e-4, 1.0e-3]},
    "per": ["model"],
    "fixed": {"trainer.steps": 20},
    "seeds": 2,
}


def write_spec(tmp_path, **fields) -> str:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"model": "builtin:tiny", "algo": {"name": "grpo"}}))
    spec = {
        "name": "t",
        "base": "base.yaml",
        "output_dir": str(tmp_path / "out" / "t"),
        "grid": {"model": ["builtin:tiny", "builtin:small"], "trainer.seed": [0, 1, 2]},
        "fixed": {"trainer.steps": 50},
        "tune": TUNE,
        **fields,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def frame(final: float, *, n=50, start=0.1) -> pd.DataFrame:
    """A run whose reward climbs linearly from `start` to `final` (its last 10% at `final`)."""
    reward = np.r_[np.linspace(start, final, n - n // 10), np.full(n // 10, final)]
    return pd.DataFrame({"step": np.arange(1, n + 1), "reward/mean": reward})


def test_tune_stage_points_run_under_tune_with_their_own_fixed(tmp_path):
    spec = sweep.load_spec(write_spec(tmp_path))
    sub = sweep_tune.tune_spec(spec)
    points = sweep.expand(sub)
    assert len(points) == 2 * 3 * 2  # models x candidates x seeds
    assert points[0].name == "model=builtin-tiny,lr=0.0001,seed=0"
    assert points[0].group == "model=builtin-tiny,lr=0.0001"
    configs = sweep.validate(sub, points)
    assert configs[0].run_dir == tmp_path / "out" / "t" / "tune" / points[0].name
    assert configs[0].name == f"tune/{points[0].name}"
    assert configs[0].trainer.steps == 20 and configs[0].learner.lr == 1e-4  # tune.fixed wins
    assert {c.trainer.seed for c in configs} == {0, 1}


@pytest.mark.parametrize(
    "tune, message",
    [
        ({**TUNE, "per": ["algo.name"]}, "tune.per: 'algo.name' is not a key of grid"),
        ({**TUNE, "grid": {}}, "no candidates"),
        ({**TUNE, "grid": {"learner.lr": []}}, "grid.learner.lr: empty list"),
        ({**TUNE, "rule": "best"}, "tune.rule"),
        ({**TUNE, "seedz": 2}, "tune.seedz"),
        ({**TUNE, "grid": {"trainer.steps": [1, 2]}}, "tune: grid.trainer.steps: also set in tune.fixed"),
        (
            {**TUNE, "grid": {"trainer.steps": [1, 2]}, "fixed": {}},
            "tune.grid.trainer.steps: also set in fixed",
        ),
        ({**TUNE, "per": ["trainer.seed"]}, "seed key"),
    ],
)
def test_tune_spec_errors_name_the_file_and_key(tmp_path, tune, message):
    path = write_spec(tmp_path, tune=tune)
    with pytest.raises(ConfigError, match=message) as err:
        sweep.load_spec(path)
    assert "spec.yaml" in str(err.value)


def _points(spec):
    return sweep.expand(sweep_tune.tune_spec(spec))


def test_pick_highest_final_per_group_failed_never_wins_ties_go_smaller(tmp_path):
    spec = sweep.load_spec(write_spec(tmp_path))
    points = _points(spec)
    finals = {  # (model, lr) -> the two seeds' finals
        ("builtin:tiny", 1e-4): (0.30, 0.32),
        ("builtin:tiny", 3e-4): (0.50, 0.54),  # best
        ("builtin:tiny", 1e-3): (0.40, 0.44),
        ("builtin:small", 1e-4): (0.60, 0.60),  # ties with 3e-4 -> the smaller wins
        ("builtin:small", 3e-4): (0.60, 0.60),
        ("builtin:small", 1e-3): (0.95, None),  # higher, but one seed failed: never wins
    }
    frames = {}
    for p in points:
        value = finals[(p.values["model"], p.values["learner.lr"])][p.values["trainer.seed"]]
        frames[p.name] = None if value is None else frame(value)
    choices = sweep_tune.pick(spec.tune, points, frames)
    by_model = {c["per"]["model"]: c for c in choices}
    tiny, small = by_model["builtin:tiny"], by_model["builtin:small"]
    assert tiny["chosen"] == {"learner.lr": 3e-4} and tiny["score"] == pytest.approx(0.52)
    assert tiny["note"] == ""  # inside the grid
    assert small["chosen"] == {"learner.lr": 1e-4} and "tie" in small["note"]
    assert "learner.lr=0.0001 is the smallest candidate: the best may lie beyond the grid" in small["note"]
    failed = [c for c in small["candidates"] if c["values"]["learner.lr"] == 1e-3][0]
    assert math.isnan(failed["score"]) and failed["failed"] == ["model=builtin-small,lr=0.001,seed=1"]
    assert [c["values"]["learner.lr"] for c in tiny["candidates"]] == [1e-4, 3e-4, 1e-3]

    # a tolerance widens the tie: tiny's 0.31, 0.42 and 0.52 all within 0.25 -> the smallest
    loose = TuneSpec(**{**TUNE, "tolerance": 0.25})
    assert {c["per"]["model"]: c["chosen"] for c in sweep_tune.pick(loose, points, frames)}[
        "builtin:tiny"
    ] == {"learner.lr": 1e-4}

    # every candidate failed: no pick, and the main stage refuses to start for that group
    none = sweep_tune.pick(spec.tune, points, {p.name: None for p in points})
    assert all(c["chosen"] is None and "every candidate failed" in c["note"] for c in none)
    with pytest.raises(ConfigError, match="no pick for point model=builtin-tiny,seed=0"):
        sweep_tune.apply_choices(spec, sweep.expand(spec), none)


def test_pick_rule_final_versus_mean():
    """`final` rewards where a run ends; `mean` the whole curve (area under it)."""
    spec = TuneSpec(grid={"learner.lr": [1e-4, 1e-3]}, rule="final")
    fast_then_flat = frame(0.6, start=0.55)  # high all along, ends at 0.6
    slow_but_higher = frame(0.7, start=0.0)  # ends higher
    from rlscale.sweep import Point

    points = [Point("a", {"learner.lr": 1e-4}, "a"), Point("b", {"learner.lr": 1e-3}, "b")]
    frames = {"a": fast_then_flat, "b": slow_but_higher}
    assert sweep_tune.pick(spec, points, frames)[0]["chosen"] == {"learner.lr": 1e-3}
    mean_rule = TuneSpec(grid={"learner.lr": [1e-4, 1e-3]}, rule="mean")
    assert sweep_tune.pick(mean_rule, points, frames)[0]["chosen"] == {"learner.lr": 1e-4}
    no_column = {"a": frame(0.5).drop(columns="reward/mean"), "b": frame(0.1)}
    assert sweep_tune.pick(spec, points, no_column)[0]["chosen"] == {"learner.lr": 1e-3}


def test_pick_at_the_top_of_the_grid_says_so_two_candidates_do_not():
    from rlscale.sweep import Point

    lrs = [1e-4, 3e-4, 1e-3]
    points = [Point(f"p{i}", {"learner.lr": lr}, "g") for i, lr in enumerate(lrs)]
    frames = {"p0": frame(0.2), "p1": frame(0.3), "p2": frame(0.4)}
    (choice,) = sweep_tune.pick(TuneSpec(grid={"learner.lr": lrs}), points, frames)
    assert choice["chosen"] == {"learner.lr": 1e-3}
    assert choice["note"] == "learner.lr=0.001 is the largest candidate: the best may lie beyond the grid"
    two = sweep_tune.pick(TuneSpec(grid={"learner.lr": lrs[1:]}), points[1:], frames)
    assert two[0]["chosen"] == {"learner.lr": 1e-3} and two[0]["note"] == ""


def test_choices_feed_the_main_points_and_tune_json_round_trips(tmp_path):
    spec = sweep.load_spec(write_spec(tmp_path))
    points = _points(spec)
    frames = {p.name: frame(0.9 if p.values["learner.lr"] == 1e-3 else 0.3) for p in points}
    choices = sweep_tune.pick(spec.tune, points, frames)
    path = sweep_tune.write_choices(spec, choices)
    assert path == tmp_path / "out" / "t" / "tune.json"
    saved = json.loads(path.read_text())
    assert (
        saved["rule"] == "final"
        and saved["keys"] == ["learner.lr"]
        and "failed run never wins" in saved["rule_text"]
    )
    assert sweep_tune.read_choices(spec) == saved["choices"]
    main_points = sweep_tune.apply_choices(spec, sweep.expand(spec), sweep_tune.read_choices(spec))
    assert main_points[0].overrides[-1] == "learner.lr=0.001"
    configs = sweep.validate(spec, main_points)
    assert all(c.learner.lr == 1e-3 and c.trainer.steps == 50 for c in configs)
    assert configs[0].run_dir == tmp_path / "out" / "t" / main_points[0].name  # names unchanged
    text = sweep_tune.choices_text(choices)
    assert text[0].startswith("tune model=builtin:tiny: learner.lr=0.001 (score 0.9")


def test_dry_run_shows_both_stages_and_writes_nothing(tmp_path, capsys, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError("a run started")

    monkeypatch.setattr(sweep_run, "run_points", must_not_run)
    path = write_spec(tmp_path)
    assert main(["sweep", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sweep t/tune: 12 runs" in out and "model=builtin-small,lr=0.001,seed=1" in out
    assert "sweep t: 6 runs" in out and "chosen per ['model'] by the tune stage" in out
    assert "failed run never wins" in out
    assert not (tmp_path / "out").exists()


def _finish(run_dir, reward: float, n=40):
    """A finished run (metrics.jsonl with reward, entropy and compute; summary.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "step": s,
            "reward/mean": reward * s / n,
            "entropy/mean": 1.0 - 0.5 * s / n,
            "compute/flops": 1e9 * s,
        }
        for s in range(1, n + 1)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text("{}")


def test_tune_then_main_through_the_command(tmp_path, capsys, monkeypatch):
    seen = []

    def fake_run_points(spec, points, configs, *, parallel=None, log=print):
        seen.append((spec.name, [(p.name, c.learner.lr) for p, c in zip(points, configs)]))
        for p, c in zip(points, configs):
            _finish(p.run_dir(spec), 0.8 if c.learner.lr == 3e-4 else 0.4)
        return {p.name: {"status": "ok", "returncode": 0, "wall_s": 0.0} for p in points}

    monkeypatch.setattr(sweep_run, "run_points", fake_run_points)
    path = write_spec(tmp_path, bootstrap=0)
    assert main(["sweep", path]) == 0
    out = capsys.readouterr().out
    assert [name for name, _ in seen] == ["t/tune", "t"]  # the tune stage first
    assert all(lr == 3e-4 for _, lr in seen[1][1])  # the main points got the pick
    assert "tune model=builtin:tiny: learner.lr=0.0003" in out
    root = tmp_path / "out" / "t"
    assert (root / "tune" / "model=builtin-tiny,lr=0.0003,seed=1" / "summary.json").is_file()
    assert json.loads((root / "tune.json").read_text())["choices"][0]["chosen"] == {"learner.lr": 3e-4}
    md = (root / "report.md").read_text()
    assert "\n\n## Tune stage" in md and "learner.lr=0.0003" in md
    table = pd.read_csv(root / "report.csv")
    assert table["learner.lr (tuned)"].tolist() == [3e-4, 3e-4]
    # two sizes only: the ladder section says so, without an exception
    assert "not enough sizes" in md

    # --report-only reuses tune.json and runs nothing
    monkeypatch.setattr(sweep_run, "run_points", lambda *a, **k: pytest.fail("a run started"))
    assert main(["sweep", path, "--report-only"]) == 0
    assert "## Tune stage" in (root / "report.md").read_text()
