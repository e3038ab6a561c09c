"""`rlscale fit`, `rlscale plot`, `rlscale sweep` and pass@k on synthetic run directories:
rewards drawn from a known sigmoid plus noise, entropy from a known entropy law, written
with the real MetricsWriter. No RL runs here."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from rlscale import evaluation, fitting, sweep, sweep_run
from rlscale.cli import main
from rlscale.config import ConfigError
from rlscale.live_refit import live_refit
from rlscale.metric_names import X_AXES
from rlscale.run_fits import fit_frame
from rlscale.scaling import sigmoid
from rlscale.telemetry import MetricsWriter, load_metrics

TRUE = {"A": 0.7, "B": 1.5, "C_mid": 1e11, "R0": 0.1, "a": 0.5, "b": 1.2}  # ceiling b - a = 0.7
FLOPS_PER_STEP = 1e9
WALL_PER_STEP = 0.5
DEVICES = 2  # the run's device count, as its compute/device_hours column counts them


def synthetic_frame(n=400, seed=0, sd=0.03, **kw) -> pd.DataFrame:
    """Reward on the sigmoid (in compute) plus noise; entropy such that the clean reward
    lies exactly on the entropy law R = -a exp(H) + b."""
    p = {**TRUE, **kw}
    rng = np.random.default_rng(seed)
    step = np.arange(1, n + 1)
    flops = np.cumsum(FLOPS_PER_STEP * (1 + 0.05 * rng.standard_normal(n)))
    clean = sigmoid(flops, p["A"], p["B"], p["C_mid"], p["R0"])
    return pd.DataFrame(
        {
            "step": step,
            "time/wall_s": step * WALL_PER_STEP,
            "compute/device_hours": step * WALL_PER_STEP / 3600 * DEVICES,
            "compute/flops": flops,
            "samples": step * 256,
            "tokens/generated": step * 1000,
            "reward/mean": clean + sd * rng.standard_normal(n),
            "entropy/mean": np.log((p["b"] - clean) / p["a"]) + 0.01 * rng.standard_normal(n),
        }
    )


def write_run(run_dir, frame, *, evals=False, finished=True, config=None):
    """A run directory as the orchestrator leaves it (metrics.jsonl, config.yaml, summary.json)."""
    writer = MetricsWriter(run_dir)
    rng = np.random.default_rng(0)
    for rec in frame.to_dict("records"):
        rec["step"] = int(rec["step"])
        if evals and (rec["step"] == 1 or rec["step"] % 50 == 0):
            p = float(np.clip(rec["reward/mean"], 0.05, 0.95))
            rec.update(evaluation.pass_at_k_metrics(rng.binomial(8, p, size=32), 8))
        writer.write(rec)
    writer.close()
    cfg = config or {"rollout": {"workers": 1}, "ray": {"worker_cpus": 1.0, "learner_cpus": 1.0}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    if finished:
        (run_dir / "summary.json").write_text("{}")
    return run_dir


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    hi = write_run(root / "recipe_hi", synthetic_frame(seed=0), evals=True)
    lo = write_run(root / "recipe_lo", synthetic_frame(seed=1, A=0.55), evals=True)
    return hi, lo


# ----------------------------------------------------------------------------- rlscale fit


def test_fit_prints_table_and_writes_fits_json(two_runs, capsys):
    hi, lo = two_runs
    assert main(["fit", str(hi), str(lo), "--bootstrap", "60"]) == 0
    out = capsys.readouterr().out
    fits = json.loads((hi / "fits.json").read_text())
    sig, ent = fits["laws"]["sigmoid"], fits["laws"]["entropy"]

    # the table shows every law with its fitted parameters and intervals
    for text in ("sigmoid", "entropy", "power", "C_mid", "ceiling", "first 50% of x", "first 15% of steps"):
        assert text in out
    assert f"A = {sig['A']:.4g}" in out and f"ceiling = {ent['ceiling']:.4g}" in out
    lo_a, hi_a = sig["intervals"]["A"]
    assert f"[{lo_a:.4g}, {hi_a:.4g}]" in out

    # the fits recover the laws the data were drawn from
    assert fits["x"] == "flops" and fits["steps"] == 400 and fits["points_fitted"] == 100
    assert abs(sig["A"] - TRUE["A"]) < 0.04
    assert lo_a <= sig["A"] <= hi_a and hi_a - lo_a < 0.15
    assert abs(sig["C_mid"] / TRUE["C_mid"] - 1) < 0.2
    assert abs(ent["ceiling"] - (TRUE["b"] - TRUE["a"])) < 0.02
    assert abs(ent["a"] - TRUE["a"]) < 0.03

    # backtests: held-out error near the noise of a 4-step bin mean (0.03 / 2), not blown up
    bt_sig, bt_ent = fits["backtests"]["sigmoid"], fits["backtests"]["entropy"]
    assert bt_sig["n_fit"] + bt_sig["n_test"] == 100 and 40 < bt_sig["n_fit"] < 60
    assert 0.005 < bt_sig["rmse"] < 0.05 and abs(bt_sig["final_error"]) < 0.08
    assert bt_sig["delta"]["A"] < 0.1
    assert (bt_ent["n_fit"], bt_ent["n_test"]) == (15, 85)
    assert bt_ent["rmse"] < 0.08 and bt_ent["delta"]["ceiling"] < 0.1

    # the protocol (the CLI's --y: training reward): A identified, its interval by a block
    # bootstrap; the early window is 10% of the run's compute
    assert fits["y"] == "reward/mean" and fits["protocol"]["early_window_frac"] == 0.1
    assert sig["identified"] and sig["A_lower"] is None and "block" in sig["interval_method"]
    assert sig["early_cut"] == pytest.approx(0.1 * load_metrics(hi)["compute/flops"].max(), rel=0.02)

    # two runs, one seed each: the seed-to-seed spread is unmeasured, so no winner is named
    # (tests/test_protocol.py decides between recipes with seeds)
    assert "no decision: one run of recipe_hi, recipe_lo" in out
    lo_fits = json.loads((lo / "fits.json").read_text())
    assert abs(lo_fits["laws"]["sigmoid"]["A"] - 0.55) < 0.04
    assert lo_fits["comparisons"][0]["winner"] is None is fits["comparisons"][0]["winner"]


def test_fit_x_axes_and_device_hours():
    frame = synthetic_frame(n=50)
    steps, label = fitting.x_axis(frame, "steps")
    assert steps.tolist() == list(range(1, 51)) and label == "step"
    # device-hours are the run's own accounting (compute/device_hours), not recomputed here
    hours, label = fitting.x_axis(frame, "hours")
    assert hours.iloc[-1] == pytest.approx(50 * WALL_PER_STEP / 3600 * DEVICES) and label == "device-hours"
    # --devices: wall-clock hours times the given count instead
    assert fitting.x_axis(frame, "hours", devices=8)[0].iloc[-1] == pytest.approx(
        50 * WALL_PER_STEP / 3600 * 8
    )
    with pytest.raises(ValueError, match="compute/device_hours"):
        fitting.x_axis(frame.drop(columns="compute/device_hours"), "hours")
    with pytest.raises(ValueError, match="x must be one of"):
        fitting.x_axis(frame, "parsecs")
    assert set(X_AXES) == {"flops", "hours", "steps", "tokens", "samples", "wall"}


def test_fit_on_steps_axis_and_clean_errors(two_runs, tmp_path, capsys):
    hi, _ = two_runs
    frame = load_metrics(hi)
    fit = fit_frame(frame, x="steps", y="reward/mean", bootstrap=0)
    # compute grows ~1e9 per step, so C_mid in steps is C_mid in FLOPs / 1e9
    assert abs(fit.sigmoid.C_mid / (TRUE["C_mid"] / FLOPS_PER_STEP) - 1) < 0.2
    assert main(["fit", str(tmp_path / "nothing")]) == 1
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_binning_keeps_means():
    raw = pd.DataFrame({"step": np.arange(1, 1001), "x": np.arange(1, 1001) * 2.0, "y": np.arange(1000) % 2})
    pts = fitting.bin_steps(raw, 100)
    assert len(pts) == 100 and pts["y"].tolist() == [0.5] * 100
    assert pts["x"].iloc[0] == pytest.approx(np.mean(np.arange(1, 11) * 2.0))
    assert len(fitting.bin_steps(raw, 0)) == 1000


# ----------------------------------------------------------------------------- rlscale plot


PNGS = {
    "reward_vs_step.png",
    "entropy_vs_step.png",
    "reward_vs_entropy.png",
    "reward_vs_compute.png",
    "sigmoid_linearized.png",
    "pass_at_k.png",
}


def test_plot_two_runs_writes_every_png(two_runs, tmp_path, capsys):
    import matplotlib.image

    out = tmp_path / "plots"
    assert main(["plot", *map(str, two_runs), "--out", str(out), "--bootstrap", "20"]) == 0
    assert {p.name for p in out.glob("*.png")} == PNGS
    assert set(capsys.readouterr().out.split()) == {str(out / name) for name in PNGS}
    for name in PNGS:
        assert matplotlib.image.imread(out / name).shape[0] > 300


def test_plot_run_at_the_end_of_a_tiny_run(tmp_path):
    """The orchestrator's call: a 3-step run cannot be fitted, and still gets its plots."""
    from rlscale.plots import plot_run

    run = write_run(tmp_path / "tiny", synthetic_frame(n=3))
    names = {p.name for p in plot_run(run)}
    assert {"reward_vs_step.png", "entropy_vs_step.png", "reward_vs_entropy.png"} <= names


# ----------------------------------------------------------------------------- pass@k, live refit


def test_pass_at_k_table():
    table = evaluation.pass_at_k_table([0, 4, 2], n=4, ks=[1, 2, 4])
    assert table[1] == pytest.approx((0 + 1 + 0.5) / 3)
    assert table[2] == pytest.approx((0 + 1 + (1 - 1 / 6)) / 3)  # c=2 of 4: 1 - C(2,2)/C(4,2)
    assert table[4] == pytest.approx(2 / 3)
    assert evaluation.default_ks(16) == [1, 2, 4, 8, 16] and evaluation.default_ks(6) == [1, 2, 4, 6]
    metrics = evaluation.pass_at_k_metrics([1, 3], n=6)
    assert list(metrics) == ["eval/pass@1", "eval/pass@2", "eval/pass@4", "eval/pass@6"]
    assert metrics["eval/pass@6"] == 1.0
    assert evaluation.pass_at_k_columns(["step", "eval/pass@8", "eval/pass@1", "eval/x"]) == {
        1: "eval/pass@1",
        8: "eval/pass@8",
    }
    with pytest.raises(ValueError):
        evaluation.pass_at_k_table([], n=4)


def test_live_refit_predicts_the_rest_of_the_run():
    full = synthetic_frame(n=400)
    half = full.iloc[:200]
    # halfway (2x C_mid), 0.03 noise per step: A's 95% interval is ~0.16 wide, wider than the
    # default protocol's 0.1, so A is reported as a lower bound, not a number
    default = live_refit(half, planned_steps=400, bootstrap=30)
    assert default["fit/ok"] == 1.0 and default["fit/identified"] == 0.0
    assert math.isnan(default["fit/predicted_A"]) and 0.5 < default["fit/A_lower"] < TRUE["A"]
    wide = fitting.FitProtocol(max_interval_width=0.25, n_boot=30)
    out = live_refit(half, planned_steps=400, protocol=wide)
    assert out["fit/ok"] == 1.0 and out["fit/identified"] == 1.0
    assert abs(out["fit/predicted_A"] - TRUE["A"]) < 0.1
    assert out["fit/predicted_A_lo"] <= out["fit/predicted_A"] <= out["fit/predicted_A_hi"]
    true_final = sigmoid(full["compute/flops"].iloc[-1], TRUE["A"], TRUE["B"], TRUE["C_mid"], TRUE["R0"])
    assert abs(out["fit/predicted_final_reward"] - true_final) < 0.05
    assert out["fit/predicted_gain"] > 0.03
    assert abs(out["fit/entropy_ceiling"] - 0.7) < 0.05
    # given the planned total in x units rather than extrapolated from steps: about the same
    given = live_refit(half, full["compute/flops"].iloc[-1], bootstrap=0)
    assert given["fit/predicted_final_reward"] == pytest.approx(out["fit/predicted_final_reward"], abs=0.005)
    assert math.isnan(live_refit(half, bootstrap=0)["fit/predicted_final_reward"])  # no plan given

    # entropy decaying as exp(-step/100) crosses 10% of its start near step 100 * ln(10) = 230
    decaying = full.iloc[:150].assign(**{"entropy/mean": np.exp(-full["step"].iloc[:150] / 100)})
    live = live_refit(decaying, planned_steps=400, bootstrap=0)
    assert 225 <= live["fit/entropy_collapse_step"] <= 240
    # the warning comes while entropy is still above the threshold (e^-1.5 = 0.22 > 0.1)
    assert live["fit/entropy_collapse_warning"] == 1.0 and live["fit/entropy_collapsed"] == 0.0
    fast = full.iloc[:150].assign(**{"entropy/mean": np.exp(-full["step"].iloc[:150] / 20)})
    late = live_refit(fast, planned_steps=400, bootstrap=0)
    assert late["fit/entropy_collapsed"] == 1.0 and late["fit/entropy_collapse_warning"] == 0.0


def test_live_refit_early_stop_on_the_gain_from_doubling():
    """Stop only when A is identified and even the top of the interval of the gain from
    doubling the compute so far is below the threshold."""
    full = synthetic_frame(n=400)
    wide = fitting.FitProtocol(max_interval_width=0.25, n_boot=30)
    # at 4x C_mid doubling buys 0.6 * (0.958 - 0.889) = 0.041; at 2x C_mid it buys 0.09
    true_gain = {
        n: float(np.diff(sigmoid(np.array([1, 2]) * n * 1e9, 0.7, 1.5, 1e11, 0.1))[0]) for n in (200, 400)
    }
    end = live_refit(full, planned_steps=400, protocol=wide, early_stop_min_gain=0.1)
    assert end["fit/gain_2x_lo"] <= end["fit/gain_2x"] <= end["fit/gain_2x_hi"] < 0.1
    assert abs(end["fit/gain_2x"] - true_gain[400]) < 0.03 and end["fit/early_stop"] == 1.0
    mid = live_refit(full.iloc[:200], planned_steps=400, protocol=wide, early_stop_min_gain=0.1)
    assert abs(mid["fit/gain_2x"] - true_gain[200]) < 0.03 and mid["fit/early_stop"] == 0.0
    # the same threshold without an identified A (default width 0.1 at half the run): no stop
    loose = live_refit(full.iloc[:200], planned_steps=400, bootstrap=30, early_stop_min_gain=1.0)
    assert loose["fit/identified"] == 0.0 and loose["fit/early_stop"] == 0.0


def test_live_refit_never_raises():
    out = live_refit(synthetic_frame(n=3), planned_steps=10)
    assert out["fit/ok"] == 0.0 and math.isnan(out["fit/predicted_A"])
    assert live_refit(pd.DataFrame(), 1e9)["fit/ok"] == 0.0
    assert live_refit(synthetic_frame(n=30).drop(columns="compute/flops"), 1e9)["fit/ok"] == 0.0


# ----------------------------------------------------------------------------- sweeps


def write_spec(tmp_path, **spec) -> str:
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"model": "builtin:tiny", "algo": {"name": "grpo"}}))
    spec = {"name": "t", "base": "base.yaml", "output_dir": str(tmp_path / "out" / "t"), **spec}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def test_sweep_expansion_grid_zip_fixed(tmp_path):
    spec = sweep.load_spec(
        write_spec(
            tmp_path,
            grid={"model": ["builtin:tiny", "builtin:small"], "trainer.seed": [0, 1]},
            zip={"rollout.group_size": [4, 8], "rollout.prompts_per_step": [16, 8]},
            fixed={"trainer.steps": 5, "learner.lr": 1e-05},
        )
    )
    points = sweep.expand(spec)
    assert [p.name for p in points] == [
        f"model=builtin-{m},group_size={g},prompts_per_step={n},seed={s}"
        for m in ("tiny", "small")
        for s in (0, 1)
        for g, n in ((4, 16), (8, 8))
    ]
    assert points[0].overrides == [
        "trainer.steps=5",
        "learner.lr=1.0e-05",
        "model=builtin:tiny",
        "trainer.seed=0",
        "rollout.group_size=4",
        "rollout.prompts_per_step=16",
    ]
    assert len({p.group for p in points}) == 4 and points[0].group == points[2].group
    assert points[0].group == "model=builtin-tiny,group_size=4,prompts_per_step=16"

    configs = sweep.validate(spec, points)
    last = configs[-1]
    assert last.run_dir == tmp_path / "out" / "t" / points[-1].name
    assert last.name == f"t/{points[-1].name}" and last.model == "builtin:small"
    assert (last.rollout.group_size, last.rollout.prompts_per_step, last.trainer.seed) == (8, 8, 1)
    assert last.trainer.steps == 5 and last.learner.lr == 1e-05


def test_sweep_zip_labels_and_dry_run(tmp_path, capsys):
    path = write_spec(
        tmp_path,
        grid={"algo.name": ["grpo", "dapo"]},
        zip={"_ctl": ["none", "cov"], "algo.policy_loss": ["ppo_clip", "clip_cov"]},
    )
    points = sweep.expand(sweep.load_spec(path))
    assert [p.name for p in points] == [
        "algo=grpo,ctl=none",
        "algo=grpo,ctl=cov",
        "algo=dapo,ctl=none",
        "algo=dapo,ctl=cov",
    ]
    assert points[1].overrides == ["algo.name=grpo", "algo.policy_loss=clip_cov"]  # no label override
    assert main(["sweep", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out and "algo=dapo,ctl=cov" in out
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_sweep_bad_override_fails_before_anything_runs(tmp_path, capsys, monkeypatch):
    def must_not_run(*a, **k):
        raise AssertionError("a run started")

    monkeypatch.setattr(sweep_run, "run_points", must_not_run)
    path = write_spec(tmp_path, grid={"trainer.stepz": [1, 2]})
    assert main(["sweep", path]) == 2
    err = capsys.readouterr().err
    assert "trainer.stepz: unknown key" in err and "all 2 points" in err

    # one bad value among good ones: the error names that point only
    path = write_spec(tmp_path, grid={"rollout.group_size": [1, 8]})
    assert main(["sweep", path]) == 2
    err = capsys.readouterr().err
    assert "1 of 2 points" in err and "[group_size=1]" in err and "group_size=8" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"zip": {"rollout.group_size": [4, 8], "rollout.prompts_per_step": [16]}}, "same length"),
        ({"grid": {"trainer.seed": [0]}, "fixed": {"trainer.seed": 1}}, "also set in grid"),
        ({"grid": {"name": ["a"]}}, "set by the sweep"),
        ({"grid": {"trainer.seed": []}}, "empty list"),
        ({"paralel": 2}, "paralel: unknown key"),
    ],
)
def test_sweep_spec_errors(tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        sweep.load_spec(write_spec(tmp_path, **bad))


def test_sweep_report_from_finished_runs(tmp_path, capsys):
    path = write_spec(
        tmp_path, grid={"algo.name": ["grpo", "dapo"], "trainer.seed": [0, 1, 2, 3]}, bootstrap=30
    )
    spec = sweep.load_spec(path)
    points = sweep.expand(spec)
    truth = {"grpo": 0.7, "dapo": 0.55}
    for i, p in enumerate(points):
        group = p.values["algo.name"]
        frame = synthetic_frame(seed=i, A=truth[group])
        write_run(p.run_dir(spec), frame, finished=p.name != "algo=dapo,seed=1")  # one failed run

    assert main(["sweep", path, "--report-only"]) == 0
    assert "report:" in capsys.readouterr().out
    out = tmp_path / "out" / "t"
    table = pd.read_csv(out / "report.csv").set_index("group")
    # 3+ seeds: the t-interval over seeds is narrow enough to identify A (2 seeds rarely are)
    assert table.loc["algo=grpo", "seeds"] == "4/4" and table.loc["algo=dapo", "seeds"] == "3/4"
    for group, a in truth.items():
        row = table.loc[f"algo={group}"]
        # A pooled over seeds; its interval a t-interval over the seeds' fits
        assert abs(row["A"] - a) < 0.04 and row["A_lo"] <= row["A"] <= row["A_hi"] and row["identified"]
        # final reward: the sigmoid at the end of the run (last 10% of steps), within noise
        assert row["metric"] == "reward/mean"
        assert abs(row["final_mean"] - sigmoid(3.8e11, a, 1.5, 1e11, 0.1)) < 0.03
    assert not math.isnan(table.loc["algo=grpo", "final_std"])
    md = (out / "report.md").read_text()
    assert "algo=grpo scales higher" in md and "algo=dapo,seed=1" in md and "report.png" in md
    fits = json.loads((out / "fits.json").read_text())
    assert fits["groups"]["algo=grpo"]["runs"] == [f"algo=grpo,seed={i}" for i in range(4)]
    assert fits["missing"] == [{"point": "algo=dapo,seed=1", "status": "not finished"}]
    assert (out / "report.png").stat().st_size > 10_000


def test_sweep_point_subprocess_outcomes(tmp_path):
    """The Ray task body: exit status, log file, timeout."""
    ok = sweep_run._run_point(
        [sys.executable, "-c", "print('hello')"], str(tmp_path / "ok.log"), str(tmp_path), {}, None
    )
    assert ok["status"] == "ok" and (tmp_path / "ok.log").read_text().strip() == "hello"
    bad = sweep_run._run_point(
        [sys.executable, "-c", "raise SystemExit(3)"], str(tmp_path / "b.log"), ".", {}, None
    )
    assert bad["status"] == "exit code 3"
    slow = sweep_run._run_point(
        [sys.executable, "-c", "import time; time.sleep(30)"], str(tmp_path / "s.log"), ".", {}, 1
    )
    assert slow["status"].startswith("timed out") and slow["wall_s"] < 10


def test_sweep_resumes_unfinished_points(tmp_path):
    spec = sweep.load_spec(write_spec(tmp_path, grid={"trainer.seed": [0, 1]}))
    fresh, unfinished = sweep.expand(spec)
    write_run(unfinished.run_dir(spec), synthetic_frame(n=5), finished=False)
    assert sweep_run._command(spec, fresh, "addr")[-3:] == [
        "run",
        str((tmp_path / "out" / "t" / "configs" / "seed=0.yaml").resolve()),
        "ray.address=addr",
    ]
    assert sweep_run._command(spec, unfinished, "addr")[-3:] == [
        "--resume",
        str(unfinished.run_dir(spec).resolve()),
        "ray.address=addr",
    ]


def test_sweep_runs_points_as_ray_tasks(ray_session, tmp_path, monkeypatch, capsys):
    """The whole `rlscale sweep` path through real Ray tasks (on the session's Ray), with each
    point's `rlscale run` replaced by a stand-in that finishes the run (or fails, for one)."""
    path = write_spec(tmp_path, grid={"trainer.seed": [0, 1, 2]}, parallel=2, num_cpus=0.5, bootstrap=10)
    spec = sweep.load_spec(path)
    for i, point in enumerate(sweep.expand(spec)):
        write_run(point.run_dir(spec), synthetic_frame(n=100, seed=i), finished=False)

    def stand_in(spec, point, address):
        summary = point.run_dir(spec).resolve() / "summary.json"
        code = (
            "raise SystemExit(1)" if point.name == "seed=1" else f"open({str(summary)!r}, 'w').write('{{}}')"
        )
        return [sys.executable, "-c", f"print({address!r}); {code}"]

    monkeypatch.setattr(sweep_run, "_command", stand_in)
    assert main(["sweep", path]) == 1  # one point failed: reported, not fatal
    out = capsys.readouterr().out
    assert "finished seed=0: ok" in out and "finished seed=1: exit code 1" in out and "FAILED seed=1" in out
    root = tmp_path / "out" / "t"
    assert (root / "logs" / "seed=0.log").read_text().strip()  # the task got the cluster address
    assert sorted(p.name for p in (root / "configs").iterdir()) == [
        "seed=0.yaml",
        "seed=1.yaml",
        "seed=2.yaml",
    ]
    table = pd.read_csv(root / "report.csv")
    assert table["seeds"].tolist() == ["2/3"]
    assert "exit code 1" in (root / "report.md").read_text()

    # run again: finished points are skipped, only the failed one runs
    assert main(["sweep", path]) == 1
    out = capsys.readouterr().out
    assert "started  seed=1" in out and "started  seed=0" not in out
