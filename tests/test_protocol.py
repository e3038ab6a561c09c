"""The fitting protocol (rlscale.fitting, rlscale.fit_estimates) on synthetic curves with known answers:
metric choice, R0 from the base model, an unidentifiable asymptote, block-bootstrap coverage
under autocorrelated (AR(1)) noise, an early transient left out by the early window, seeds
(t-intervals), and recipe comparisons that must not tell identical recipes apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rlscale import fitting
from rlscale.fit_estimates import compare_recipes, fit_seeds, fit_sigmoid_protocol
from rlscale.fitting import FitProtocol
from rlscale.live_refit import live_refit
from rlscale.scaling import sigmoid

TRUE = {"A": 0.7, "B": 1.5, "C_mid": 1e11, "R0": 0.1}
X = np.linspace(4e9, 4e11, 100)  # 100 bins of a 400-step run, 1e9 FLOPs a step: up to 4x C_mid


def ar1(rng, n, phi, sd):
    """Stationary AR(1) noise with marginal sd `sd`: neighbouring bins correlated by phi."""
    e = np.empty(n)
    e[0] = rng.normal(0, sd)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + rng.normal(0, sd * np.sqrt(1 - phi**2))
    return e


def curve(seed, *, x=X, phi=0.0, sd=0.01, **kw):
    p = {**TRUE, **kw}
    rng = np.random.default_rng(seed)
    return x, sigmoid(x, p["A"], p["B"], p["C_mid"], p["R0"]) + ar1(rng, x.size, phi, sd)


# ----------------------------------------------------------------------------- the target


def test_metric_choice_prefers_the_eval_mean_and_says_why_not():
    n = 400
    frame = pd.DataFrame({"step": np.arange(n), "reward/mean": 0.5, "eval/pass@1": np.nan})
    evals = frame["step"] % 40 == 0
    frame.loc[evals, "eval/pass@1"] = 0.4
    p = FitProtocol()
    assert fitting.select_metric(frame, p)[0] == "eval/pass@1"  # 10 evaluations
    frame.loc[evals, "eval/mean@8"] = 0.4
    assert fitting.select_metric(frame, p) == ("eval/mean@8", "")
    sparse = frame.assign(**{"eval/mean@8": np.where(frame["step"] % 100 == 0, 0.4, np.nan)})
    sparse["eval/pass@1"] = sparse["eval/mean@8"]
    metric, note = fitting.select_metric(sparse, p)
    assert metric == "reward/mean" and "has 4 evaluations (< 6)" in note
    assert fitting.select_metric(frame, FitProtocol(metric="reward/mean")) == ("reward/mean", "")
    with pytest.raises(ValueError, match="no 'eval/x' column"):
        fitting.select_metric(frame, FitProtocol(metric="eval/x"))
    with pytest.raises(ValueError, match="x must be one of"):
        FitProtocol(x="parsecs")


def test_sparse_eval_rows_and_the_base_model_set_R0():
    """Evals every 25 steps plus the base model at step 0, zero compute: R0 is the base
    model's value (not the mean of the first points, which starts above it), and the
    sparse rows are fitted as they are."""
    steps = np.arange(0, 401)
    flops = steps * 1e9
    clean = sigmoid(flops, 0.7, 1.5, 1e11, 0.1)
    ev = np.where(steps % 25 == 0, clean, np.nan)
    frame = pd.DataFrame({"step": steps, "compute/flops": flops, "eval/mean@8": ev, "reward/mean": clean})
    raw, pts, metric, note = fitting.run_curve(frame, FitProtocol())
    assert metric == "eval/mean@8" and not note and len(pts) == 17 and pts["x"].iloc[0] == 0
    est = fit_sigmoid_protocol(pts["x"], pts["y"], FitProtocol(n_boot=0))
    assert est.fit.R0 == pytest.approx(0.1) and est.fit.R0 < np.mean(clean[[0, 25, 50]])
    assert est.fit.A == pytest.approx(0.7, abs=0.005) and est.fit.C_mid == pytest.approx(1e11, rel=0.02)
    assert est.early_cut == pytest.approx(0.1 * 4e11)


def test_evaluations_sit_at_the_compute_of_the_weights_they_saw():
    """As the orchestrator logs them: the evaluation before step s's update is on step s's row
    (whose compute/flops is after the update), with eval/train_flops = the compute before it;
    the final evaluation is on the last row, after its update."""
    steps = np.arange(1, 201)
    flops = steps * 1e9  # after each step's update
    evals = (steps - 1) % 50 == 0
    final = steps == 200
    frame = pd.DataFrame(
        {
            "step": steps,
            "compute/flops": flops,
            "time/wall_s": steps * 2.0,
            "eval/mean@8": np.where(evals | final, 0.3, np.nan),
            "eval/train_flops": np.where(evals, (steps - 1) * 1e9, np.where(final, 200e9, np.nan)),
        }
    )
    p = FitProtocol(min_points=3)
    flops_x = fitting.run_curve(frame, p)[0]["x"].tolist()
    assert flops_x == [0.0, 50e9, 100e9, 150e9, 200e9]  # the base model at zero, not at 1e9
    assert fitting.run_curve(frame, FitProtocol(min_points=3, x="steps"))[0]["x"].tolist() == [
        0.0,
        50.0,
        100.0,
        150.0,
        200.0,
    ]
    assert fitting.run_curve(frame, FitProtocol(min_points=3, x="wall"))[0]["x"].tolist() == [
        0.0,
        100.0,
        200.0,
        300.0,
        400.0,
    ]
    # the training reward keeps each row's own x
    frame["reward/mean"] = 0.5
    assert fitting.run_curve(frame, FitProtocol(metric="reward/mean", bins=0))[0]["x"].iloc[0] == 1e9


# ----------------------------------------------------------------------------- identifiability


def test_unidentifiable_asymptote_is_a_lower_bound():
    # a run that stops at 0.4x C_mid: the curve has not bent yet, so A is anything above
    x = np.linspace(4e9, 4e10, 100)
    est = fit_sigmoid_protocol(*curve(0, x=x, A=0.9), FitProtocol(n_boot=100))
    assert est.fit.ok and not est.identified and est.reason
    assert est.fit.A_min <= est.A_lower < 0.9  # a true lower bound on the asymptote
    assert est.asymptote_text().startswith(f"A >= {est.A_lower:.3f} (not identified")
    # a curve still accelerating in log C pushes A to its bound: a zero-width interval at
    # the bound must not read as certainty
    x = np.geomspace(1e9, 1e12, 100)
    y = 0.1 + 0.5 * np.sqrt(x / 1e12) + np.random.default_rng(0).normal(0, 0.01, x.size)
    est = fit_sigmoid_protocol(x, y, FitProtocol(n_boot=50, early_window_frac=0))
    assert not est.identified and "upper bound" in est.reason
    assert est.fit.A_min <= est.A_lower < 1.0
    # the same law with the run carried to 4x C_mid: identified, interval around the truth
    est = fit_sigmoid_protocol(*curve(0), FitProtocol(n_boot=100))
    lo, hi = est.A_interval
    assert est.identified and lo < 0.7 < hi and hi - lo < 0.1 and np.isnan(est.A_lower)


# ----------------------------------------------------------------------------- intervals


def test_block_bootstrap_covers_the_truth_under_AR1_noise():
    """Bins correlated like the measured ones (lag-1 0.6): the moving-block bootstrap's 95%
    interval of A covers the truth about as often as it should; resampling bins one by one
    (block 1) covers less often."""
    hits = {"block": 0, "iid": 0}
    for s in range(12):
        x, y = curve(s, phi=0.6, sd=0.02)
        for name, block in (("block", None), ("iid", 1)):
            p = FitProtocol(n_boot=100, early_window_frac=0, block_len=block, seed=s, max_interval_width=1)
            lo, hi = fit_sigmoid_protocol(x, y, p).A_interval
            hits[name] += lo <= TRUE["A"] <= hi
    assert hits["block"] >= 10, hits
    assert hits["iid"] < hits["block"], hits


def test_seeds_give_a_t_interval_and_a_pooled_fit():
    rng = np.random.default_rng(5)
    A_seeds = 0.7 + rng.normal(0, 0.014, 3)  # seeds differ in A, as the demo's do (sd 0.014)
    runs = [curve(10 + i, A=a, phi=0.5, sd=0.01) for i, a in enumerate(A_seeds)]
    est = fit_seeds(runs, FitProtocol())
    per = np.array([f.A for f in est.seeds])
    half = stats.t.ppf(0.975, 2) * per.std(ddof=1) / np.sqrt(3)
    assert est.A_interval == pytest.approx((per.mean() - half, per.mean() + half))
    assert "t-interval over 3 seeds" in est.method and est.identified
    assert abs(est.fit.A - A_seeds.mean()) < 0.02  # the pooled fit: a shared A
    lo, hi = est.band([4e11])
    assert lo[0] < sigmoid(4e11, A_seeds.mean(), 1.5, 1e11, 0.1) < hi[0]


# ----------------------------------------------------------------------------- early window


def test_early_transient_is_left_out_by_the_early_window():
    """The first 8% of compute dips below the law (the policy relearning its output format):
    fitted with it, B and A are off; the default window (10% of the planned compute) leaves
    it out and recovers the law."""
    x, y = curve(3, sd=0.01)
    y = np.where(x < 0.08 * X.max(), y - 0.08, y)
    with_it = fit_sigmoid_protocol(x, y, FitProtocol(early_window_frac=0, n_boot=0), r0=0.1)
    without = fit_sigmoid_protocol(x, y, FitProtocol(n_boot=0), r0=0.1)
    assert abs(with_it.fit.B / 1.5 - 1) > 0.15 and abs(with_it.fit.A - 0.7) > 0.03
    assert abs(without.fit.B / 1.5 - 1) < 0.1 and abs(without.fit.A - 0.7) < 0.01
    assert without.early_cut == pytest.approx(0.1 * X.max()) and without.fit.n < with_it.fit.n


# ----------------------------------------------------------------------------- comparisons

# The comparison rule on its own: a width limit loose enough that 3 seeds identify A here
# (with the default 0.1, a t-interval over 3 seeds of these curves is often wider, and the
# verdict is then "no decision", which also names no winner).
COMPARE = FitProtocol(n_boot=0, max_interval_width=0.2)


def seeds(first, n=3, **kw):
    rng = np.random.default_rng(first)
    A = kw.pop("A", 0.7)
    return [curve(first + i, A=A + rng.normal(0, 0.014), phi=0.5, sd=0.01, **kw) for i in range(n)]


@pytest.mark.parametrize("trial", range(4))
def test_identical_recipes_are_not_told_apart(trial):
    """Two groups of three seeds of one config: "no difference", whatever the seeds."""
    p = COMPARE
    a, b = fit_seeds(seeds(100 * trial), p), fit_seeds(seeds(100 * trial + 50), p)
    v = compare_recipes(a, b, names=("x", "y"))
    assert v.winner is None and v.verdict.startswith("no difference"), v.verdict


def test_single_runs_are_never_ranked():
    """Pairs of single seeds of one config (where the old rule named a winner every time):
    one run measures no seed-to-seed spread, so there is no decision."""
    runs = seeds(7)
    ests = [fit_seeds([r], FitProtocol(n_boot=50)) for r in runs]
    for i in range(3):
        for j in range(i + 1, 3):
            v = compare_recipes(ests[i], ests[j])
            assert v.winner is None and "no decision: one run of a, b" in v.verdict


def test_recipes_that_differ_are_told_apart():
    p = COMPARE
    hi, lo = fit_seeds(seeds(1, A=0.8), p), fit_seeds(seeds(20, A=0.7), p)
    v = compare_recipes(hi, lo, names=("hi", "lo"))
    assert v.by == "A" and v.winner == "hi" and "hi scales higher" in v.verdict and v.margin < 0.1
    # same asymptote, steeper curve: decided on B at the shared A
    fast, slow = fit_seeds(seeds(30, B=2.5), p), fit_seeds(seeds(40, B=1.2), p)
    v = compare_recipes(slow, fast, names=("slow", "fast"))
    assert v.by == "B" and v.winner == "fast" and v.B_b > v.B_a and v.shared_A == pytest.approx(0.7, abs=0.02)


def test_no_decision_on_an_unidentified_or_failed_fit():
    p = COMPARE
    short = np.linspace(4e9, 4e10, 100)  # stops before the bend: A not identified
    early = fit_seeds(seeds(1, A=0.9, x=short), p)
    v = compare_recipes(fit_seeds(seeds(20), p), early, names=("full", "early"))
    assert v.winner is None and "not identified for early" in v.verdict
    flat = fit_sigmoid_protocol(X, np.full(X.size, 0.3), p)
    v = compare_recipes(fit_seeds(seeds(20), p), flat)
    assert v.winner is None and v.verdict.startswith("cannot compare: fit failed for b")


def test_live_refit_fits_the_sparse_eval_with_its_base_model_row():
    """The live refit takes the same protocol: with 20 evaluations and the base model at step 0
    (zero compute, no training columns) it fits the eval mean, not the training reward."""
    steps = np.arange(0, 401)
    flops = steps * 1e9
    clean = sigmoid(flops, 0.7, 1.5, 1e11, 0.1)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "step": steps,
            "compute/flops": flops,
            "reward/mean": np.where(steps > 0, clean + rng.normal(0, 0.05, steps.size), np.nan),
            "eval/mean@8": np.where(steps % 20 == 0, clean + rng.normal(0, 0.01, steps.size), np.nan),
        }
    )
    out = live_refit(frame.iloc[:201], planned_steps=400, bootstrap=50)
    assert out["fit/ok"] == 1.0 and out["fit/fits_eval"] == 1.0
    # nine evaluations up to 2x C_mid: A is not pinned down (said so), the near future is
    true_gain = float(np.diff(sigmoid(np.array([2e11, 4e11]), 0.7, 1.5, 1e11, 0.1))[0])  # 0.095
    assert out["fit/identified"] == 0.0 and np.isnan(out["fit/predicted_A"])
    assert out["fit/gain_2x_lo"] <= true_gain <= out["fit/gain_2x_hi"]
    assert abs(out["fit/predicted_final_reward"] - sigmoid(4e11, 0.7, 1.5, 1e11, 0.1)) < 0.05
