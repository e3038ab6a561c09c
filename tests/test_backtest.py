"""`rlscale backtest` (rlscale.backtest: add_arguments + main) on a small real run (the
demo's 400 steps, tests/data/demo_run) and on synthetic runs with known answers."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_fitting_cli import TRUE, synthetic_frame, write_run

from rlscale import backtest
from rlscale.scaling import sigmoid
from rlscale.telemetry import load_metrics

DEMO = Path(__file__).parent / "data" / "demo_run"  # builtin:tiny, arithmetic, 400 steps, eval every 100
KEYS = {
    "run",
    "fraction",
    "law",
    "metric",
    "predicted_final",
    "observed_final",
    "abs_error",
    "persistence_abs_error",
}


def cli(*argv) -> int:
    parser = argparse.ArgumentParser()
    backtest.add_arguments(parser)
    return backtest.main(parser.parse_args([str(a) for a in argv]))


def test_backtest_on_a_small_real_run(tmp_path, capsys):
    out_json, fig = tmp_path / "bt.json", tmp_path / "bt.png"
    assert cli(DEMO, "--json", out_json, "--out", fig, "--bootstrap", "50") == 0
    text = capsys.readouterr().out
    # four evaluations are too few to fit: the training reward, with the reason printed
    assert "eval/pass@1 has 4 evaluations (< 6): fitting reward/mean instead" in text
    assert "median |error|" in text and fig.stat().st_size > 20_000
    # the collapse warning replayed every 100 steps: entropy ends at 0.40, far above 10% of its start
    assert re.search(r"demo_run\s*│\s*0/4\s*│.*0\.115\s*│\s*0\.403\s*│\s*no", text)

    rows = json.loads(out_json.read_text())
    assert all(KEYS <= set(r) for r in rows) and {r["metric"] for r in rows} == {"reward/mean"}
    by = {(r["law"], r["fraction"]): r for r in rows}
    assert set(by) == {(law, f) for law in ("sigmoid", "power") for f in (0.25, 0.5, 0.75)} | {
        ("entropy", f) for f in (0.15, 0.25, 0.5)
    }
    # the truth: mean reward over the last 10% of compute; persistence: the prefix's last
    # stretch of the same length carried forward
    frame = load_metrics(DEMO)
    x, y = frame["compute/flops"], frame["reward/mean"]
    observed = y[x >= 0.9 * x.max()].mean()
    half = by[("sigmoid", 0.5)]
    assert half["observed_final"] == pytest.approx(observed)
    assert half["abs_error"] == pytest.approx(abs(half["predicted_final"] - observed))
    persist = y[(x <= 0.5 * x.max()) & (x >= 0.4 * x.max())].mean()
    assert half["persistence_abs_error"] == pytest.approx(abs(persist - observed), abs=1e-9)
    # measured on this run: from half the compute on, the sigmoid beats persistence, and its
    # band holds the truth; the 400-step run never bends enough to identify A, so A is a
    # lower bound (null A, a number in A_lower), never A = 1 with a zero-width interval
    for f in (0.5, 0.75):
        r = by[("sigmoid", f)]
        assert r["abs_error"] < r["persistence_abs_error"] and r["abs_error"] < 0.07
        assert r["predicted_lo"] <= r["observed_final"] <= r["predicted_hi"] + 0.01
        assert r["identified"] is False and r["A"] is None and 0.3 < r["A_lower"] < 1.0
        assert r["rmse_heldout"] < 0.06
    # the entropy law from the first 15% of steps extrapolates far outside the entropy it saw
    ent = by[("entropy", 0.15)]
    assert "outside: an extrapolation" in ent["note"] and ent["abs_error"] > 0.1


def test_backtest_runs_as_a_module(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rlscale.backtest", str(DEMO), "--at", "0.5", "--bootstrap", "0",
         "--out", str(tmp_path / "f.png"), "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {
        r["fraction"] for r in json.loads((tmp_path / "r.json").read_text()) if r["law"] == "sigmoid"
    } == {0.5}


def test_backtest_known_answers_and_pooled_seeds(tmp_path, capsys):
    """Three seeds of one config on a known sigmoid (A = 0.7, C_mid = 1e11, noise 0.03 a
    step), a fourth run of another config: each run fitted alone, the three also pooled."""
    runs = [write_run(tmp_path / f"seed{i}", synthetic_frame(seed=i)) for i in range(3)]
    other = write_run(tmp_path / "other", synthetic_frame(seed=9, A=0.55), config={"algo": {"name": "dapo"}})
    out_json = tmp_path / "bt.json"
    assert cli(*runs, other, "--at", "0.5,0.75", "--metric", "reward/mean", "--json", out_json,
               "--bootstrap", "50", "--out", tmp_path / "f.png") == 0  # fmt: skip
    rows = json.loads(out_json.read_text())
    pooled = [r for r in rows if r["law"] == "sigmoid_pooled"]
    assert {r["run"] for r in pooled} == {"pooled(seed0, seed1, seed2)"}  # not "other"
    x_end = synthetic_frame(seed=0)["compute/flops"]
    truth = float(
        np.mean(sigmoid(x_end[x_end >= 0.9 * x_end.max()], TRUE["A"], TRUE["B"], TRUE["C_mid"], TRUE["R0"]))
    )
    for r in rows:
        if r["law"] in ("sigmoid", "sigmoid_pooled") and r["run"] != "other":
            assert abs(r["predicted_final"] - truth) < 0.03, r
            assert abs(r["observed_final"] - truth) < 0.02
    p75 = next(r for r in pooled if r["fraction"] == 0.75)
    assert p75["identified"] and p75["A_lo"] < TRUE["A"] < p75["A_hi"]
    assert "t-interval over 3 seeds" in json.dumps(rows) or p75["A_hi"] - p75["A_lo"] < 0.1
    # a curve still rising at the cut: the sigmoid beats persistence
    half = [r for r in rows if r["law"] == "sigmoid" and r["fraction"] == 0.5]
    assert all(r["abs_error"] < r["persistence_abs_error"] for r in half)


def test_backtest_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(DEMO, "--at", "1.5")
    assert cli(tmp_path / "nothing") == 1
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_runs_of_one_config_are_pooled_whatever_defaults_their_files_spell_out(tmp_path):
    """A config saved by an older rlscale lacks keys a newer one writes with their defaults;
    the recipe is the same, and a different value is a different recipe."""
    base = {"rollout": {"workers": 1}, "trainer": {"seed": 0}}
    old = write_run(tmp_path / "old", synthetic_frame(seed=0), config=base)
    new = write_run(tmp_path / "new", synthetic_frame(seed=1), config={**base, "scaling": {"metric": None}})
    lr = write_run(tmp_path / "lr", synthetic_frame(seed=2), config={**base, "learner": {"lr": 1e-2}})
    assert backtest.recipe_key(old) == backtest.recipe_key(new) != backtest.recipe_key(lr)
    # a seed resumed by a later sweep invocation attached to another Ray cluster: same recipe
    resumed = write_run(
        tmp_path / "resumed", synthetic_frame(seed=3), config={**base, "ray": {"address": "10.0.0.1:6379"}}
    )
    assert backtest.recipe_key(resumed) == backtest.recipe_key(old)


def test_planned_steps_reads_the_saved_config_and_falls_back_to_the_last_step(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"step": [1, 2, 37]})
    assert backtest.planned_steps(tmp_path, frame) == 37  # no config.yaml
    (tmp_path / "config.yaml").write_text("trainer: {steps: 2000}\n")
    assert backtest.planned_steps(tmp_path, frame) == 2000
    (tmp_path / "config.yaml").write_text("- not a mapping\n")  # a damaged file: still replays
    assert backtest.planned_steps(tmp_path, frame) == 37
