"""rlscale.scaling: parameter recovery on noisy synthetic curves, intervals, degenerate
inputs, backtests, unbiased pass@k. The protocol (early window, identifiability, block
bootstrap coverage, seeds, the ScaleRL comparison rule) is tests/test_protocol.py."""

import itertools
import json
import math
from functools import partial

import numpy as np
import pytest

from rlscale.scaling import (
    entropy_law,
    fit_entropy_law,
    fit_power_law,
    fit_result_to_dict,
    fit_sigmoid,
    power_law,
    sigmoid,
)
from rlscale.scaling_stats import (
    backtest,
    bootstrap_over_runs,
    entropy_collapse_step,
    pass_at_k,
    predict_remaining_gain,
    resample_fits,
)

SIG = {"A": 0.8, "B": 1.5, "C_mid": 1e4, "R0": 0.1}
C = np.geomspace(1e2, 1e6, 200)  # two decades either side of C_mid


def sig_run(seed, c=C, sd=0.01, **kw):
    p = {**SIG, **kw}
    noise = np.random.default_rng(seed).normal(0, sd, c.size)
    return c, sigmoid(c, p["A"], p["B"], p["C_mid"], p["R0"]) + noise


def ent_run(seed, n=200, sd=0.01):
    h = np.linspace(0.05, 0.8, n)
    return h, entropy_law(h, 0.5, 1.2) + np.random.default_rng(seed).normal(0, sd, n)


def pow_run(seed, sd=0.005):
    return C, power_law(C, 0.9, 0.4, 2.0) + np.random.default_rng(seed).normal(0, sd, C.size)


# ----------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("seed", range(5))
def test_sigmoid_recovery(seed):
    f = fit_sigmoid(*sig_run(seed))
    assert f.ok, f.message
    assert abs(f.A - 0.8) < 0.02
    assert abs(f.B / 1.5 - 1) < 0.15
    assert abs(f.C_mid / 1e4 - 1) < 0.20
    assert abs(f.R0 - 0.1) < 0.03
    assert 0.007 < f.residual < 0.013  # the noise level, not more


def test_sigmoid_exact_on_clean_curve():
    c, r = sig_run(0, sd=0)
    f = fit_sigmoid(c, r, r0=0.1)
    assert f.residual < 1e-6
    assert f.A == pytest.approx(0.8, abs=1e-5)
    assert f.B == pytest.approx(1.5, rel=1e-4)
    assert f.C_mid == pytest.approx(1e4, rel=1e-4)


def test_sigmoid_small_run():
    # 20 points up to 10x C_mid, as a short CPU run would give.
    c, r = sig_run(1, c=np.geomspace(1e2, 1e5, 20))
    f = fit_sigmoid(c, r)
    assert f.ok, f.message
    assert abs(f.A - 0.8) < 0.03 and abs(f.B / 1.5 - 1) < 0.25 and abs(f.C_mid / 1e4 - 1) < 0.3


def test_sigmoid_step0_at_zero_compute_sets_R0():
    c, r = sig_run(0)
    f = fit_sigmoid(np.r_[0.0, c], np.r_[0.1, r])  # base-model eval before any compute
    assert f.ok and f.n == c.size and abs(f.A - 0.8) < 0.02


def test_sigmoid_rewards_outside_unit_interval():
    c, r = sig_run(2, A=4.0, R0=-1.0, sd=0.05)
    f = fit_sigmoid(c, r)
    assert f.ok and abs(f.A - 4.0) < 0.1 and abs(f.B / 1.5 - 1) < 0.15


def test_sigmoid_linearize_is_a_line():
    c, r = sig_run(0, sd=0)
    f = fit_sigmoid(c, r, r0=0.1)
    x, y = f.linearize(c, r)
    ok = np.isfinite(y)
    assert ok.sum() > 150
    np.testing.assert_allclose(y[ok], f.B * np.log(f.C_mid) - f.B * x[ok], atol=1e-3)
    _, y_out = f.linearize([1e4], [0.9])  # above A: undefined
    assert np.isnan(y_out).all()


def test_entropy_recovery():
    f = fit_entropy_law(*ent_run(0))
    assert f.ok
    assert f.a == pytest.approx(0.5, abs=0.02)
    assert f.b == pytest.approx(1.2, abs=0.02)
    assert f.ceiling == pytest.approx(0.7, abs=0.01)
    assert f.predict(0.0) == pytest.approx(f.ceiling)


def test_power_recovery():
    f = fit_power_law(*pow_run(0))
    assert f.ok
    assert f.A == pytest.approx(0.9, abs=0.01)
    assert f.B == pytest.approx(0.4, rel=0.1)
    assert f.D == pytest.approx(2.0, rel=0.2)


# ----------------------------------------------------------------------------- intervals


def covered(fits, truth):
    return {p: sum(f.intervals[p][0] <= t <= f.intervals[p][1] for f in fits) for p, t in truth.items()}


def test_sigmoid_bootstrap_covers_truth():
    fits = [fit_sigmoid(*sig_run(100 + s), bootstrap=30, seed=s) for s in range(8)]
    for p, hits in covered(fits, {"A": 0.8, "B": 1.5, "C_mid": 1e4}).items():
        assert hits >= 6, (p, hits)  # nominal 95%; 30 resamples make the ends noisy
    lo, hi = fits[0].intervals["A"]
    assert lo < fits[0].A < hi and hi - lo < 0.05


def test_entropy_and_power_bootstrap_cover_truth():
    ent = [fit_entropy_law(*ent_run(s), bootstrap=100, seed=s) for s in range(20)]
    for p, hits in covered(ent, {"a": 0.5, "b": 1.2, "ceiling": 0.7}).items():
        assert hits >= 16, (p, hits)
    pw = [fit_power_law(*pow_run(s), bootstrap=50, seed=s) for s in range(10)]
    for p, hits in covered(pw, {"A": 0.9, "B": 0.4, "D": 2.0}).items():
        assert hits >= 8, (p, hits)


def test_bootstrap_over_runs():
    runs = []
    for s in range(5):  # seeds differ in their asymptote, as real seeds do
        g = np.random.default_rng(s)
        c = C[::2]
        runs.append((c, sigmoid(c, 0.8 + g.normal(0, 0.01), 1.5, 1e4, 0.1) + g.normal(0, 0.01, c.size)))
    iv = bootstrap_over_runs(fit_sigmoid, runs, n=20, seed=0)
    assert set(iv) == {"A", "B", "C_mid"}
    assert iv["A"][0] < 0.8 < iv["A"][1]
    assert iv["C_mid"][0] < 1e4 < iv["C_mid"][1]
    iv = bootstrap_over_runs(fit_entropy_law, [ent_run(s) for s in range(4)], n=50)
    assert iv["ceiling"][0] < 0.7 < iv["ceiling"][1]


# ----------------------------------------------------------------------------- degenerate

DEGENERATE = {
    "two points": ([1e2, 1e3], [0.1, 0.2]),
    "constant reward": (C, np.full(C.size, 0.3)),
    "all NaN": (np.full(10, np.nan), np.full(10, np.nan)),
    "length mismatch": ([1, 2, 3], [0.1, 0.2]),
    "not numbers": (["a", "b"], ["c", "d"]),
    "empty": ([], []),
}


@pytest.mark.parametrize("fit_fn", [fit_sigmoid, fit_entropy_law, fit_power_law])
@pytest.mark.parametrize("case", DEGENERATE)
def test_degenerate_inputs_do_not_raise(fit_fn, case):
    f = fit_fn(*DEGENERATE[case], bootstrap=5)
    assert not f.ok and f.message
    assert np.isnan(f.predict([1.0, 2.0])).all()
    json.dumps(fit_result_to_dict(f), allow_nan=False)


def test_sigmoid_flat_or_falling_reward_is_not_ok():
    c, r = sig_run(0, A=0.1)  # noise around R0 only
    assert not fit_sigmoid(c, r).ok
    assert not fit_sigmoid(C, np.linspace(0.5, 0.1, C.size)).ok


def test_partial_nans_are_dropped():
    c, r = sig_run(0)
    r = r.copy()
    r[::10] = np.nan
    f = fit_sigmoid(c, r)
    assert f.ok and f.n == 180 and abs(f.A - 0.8) < 0.02


def test_fit_result_to_dict():
    f = fit_sigmoid(*sig_run(0), bootstrap=5)
    d = json.loads(json.dumps(fit_result_to_dict(f), allow_nan=False))
    assert d["law"] == "sigmoid" and d["ok"] and d["A"] == f.A and d["C_mid"] == f.C_mid
    assert d["intervals"]["B"] == list(f.intervals["B"])
    d = fit_result_to_dict(fit_entropy_law(*ent_run(0)))
    assert d["law"] == "entropy" and d["ceiling"] == pytest.approx(d["b"] - d["a"])


# ----------------------------------------------------------------------------- min_compute


def test_min_compute_changes_nothing_on_clean_data():
    c, r = sig_run(0, sd=0)
    full, cut = fit_sigmoid(c, r, r0=0.1), fit_sigmoid(c, r, r0=0.1, min_compute=3e3)
    assert cut.n < full.n and cut.min_compute == 3e3
    for p in ("A", "B", "C_mid"):
        assert getattr(cut, p) == pytest.approx(getattr(full, p), rel=1e-4)
    c, r = sig_run(0)  # noisy: R0 still comes from the start, so the fit barely moves
    full, cut = fit_sigmoid(c, r), fit_sigmoid(c, r, min_compute=3e3)
    assert cut.R0 == full.R0
    assert abs(cut.A - full.A) < 0.005 and abs(cut.B / full.B - 1) < 0.05


def test_min_compute_helps_on_corrupted_start():
    c, r = sig_run(0)
    r = np.where((c > 150) & (c < 3e3), r - 0.1, r)  # early dip, e.g. format relearning
    bad, good = fit_sigmoid(c, r), fit_sigmoid(c, r, min_compute=3e3)
    assert abs(bad.B / 1.5 - 1) > 0.15  # the dip distorts the fit...
    assert abs(good.B / 1.5 - 1) < 0.05  # ...and dropping it recovers the law
    assert abs(good.A - 0.8) < 0.01 and abs(good.C_mid / 1e4 - 1) < 0.05


# ----------------------------------------------------------------------------- backtest


def test_backtest_sigmoid_by_compute():
    c, r = sig_run(0)
    bt = backtest(fit_sigmoid, c, r, frac=0.5)  # first half of the compute range
    assert bt.ok and bt.n_fit == int((c <= 1e2 + 0.5 * (1e6 - 1e2)).sum())
    assert bt.n_fit + bt.n_test == c.size
    assert 0.007 < bt.rmse < 0.013  # held-out error is the noise level
    assert abs(bt.final_error) < 0.03
    assert bt.delta_A < 0.005 and bt.delta["A"] == bt.delta_A


def test_backtest_sigmoid_exact_on_clean_curve():
    c, r = sig_run(0, sd=0)
    # first 100 points = up to C_mid: the half of the curve before its midpoint
    bt = backtest(partial(fit_sigmoid, r0=0.1), c, r, by="points", frac=0.5)
    assert (bt.n_fit, bt.n_test) == (100, 100)
    assert bt.rmse < 1e-6 and abs(bt.final_error) < 1e-6 and bt.delta_A < 1e-6


def test_backtest_entropy_first_15_percent_of_steps():
    steps = np.arange(1000)
    h = np.exp(-steps / 300) + 0.02  # entropy falls over the run
    r = entropy_law(h, 0.5, 1.2) + np.random.default_rng(0).normal(0, 0.005, steps.size)
    bt = backtest(fit_entropy_law, h, r, by="points", frac=0.15)
    assert (bt.n_fit, bt.n_test) == (150, 850)
    assert bt.rmse < 0.01 and abs(bt.final_error) < 0.02
    assert bt.delta["ceiling"] < 0.01 and math.isnan(bt.delta_A)
    # shuffled rows with explicit steps give the same backtest; n_fit is the same cut
    p = np.random.default_rng(1).permutation(steps.size)
    bt2 = backtest(fit_entropy_law, h[p], r[p], order=steps[p], n_fit=150)
    assert bt2.rmse == pytest.approx(bt.rmse) and bt2.n_fit == 150


def test_backtest_degenerate_does_not_raise():
    bt = backtest(fit_sigmoid, C[:3], np.ones(3), frac=0.5)
    assert not bt.ok and math.isnan(bt.rmse)


# ----------------------------------------------------------------------------- bounds, resampling


def test_A_at_its_bound_is_flagged_within_a_tolerance():
    c = np.geomspace(1e2, 1e5, 60)  # still accelerating in log C: nothing stops A
    r = 0.1 + 0.5 * np.sqrt(c / 1e5) + np.random.default_rng(0).normal(0, 0.01, c.size)
    f = fit_sigmoid(c, r)
    assert f.ok and f.A_max == 1.0 and f.at_bound() and "upper bound" in f.message
    assert f.at_bound(0.99994) and f.at_bound(0.995) and not f.at_bound(0.98)  # 1% of the gain 0.9
    assert f.A_min < f.A <= f.A_max
    assert not fit_sigmoid(*sig_run(0)).at_bound()


def test_resample_fits_blocks_are_contiguous():
    x = np.arange(100.0)
    seen = []
    resample_fits(lambda a, b: seen.append(a) or None, x, x, n=5, seed=0, block=10)
    assert len(seen) == 5 and all(s.size == 100 for s in seen)
    for s in seen:  # 10 runs of 10 consecutive points each
        assert (np.diff(s.reshape(10, 10), axis=1) == 1).all()
    iid = []
    resample_fits(lambda a, b: iid.append(a) or None, x, x, n=1, seed=0)
    assert not (np.diff(iid[0]) == 1).all()


# ----------------------------------------------------------------------------- during a run


def test_predict_remaining_gain():
    f = fit_sigmoid(*sig_run(0, sd=0), r0=0.1)
    g = predict_remaining_gain(f, 1e4, 1e6)
    assert g.reward_now == pytest.approx(0.45, abs=1e-4)  # half the gain at C_mid
    assert g.reward_final == pytest.approx(0.1 + 0.7 / (1 + 0.01**1.5), abs=1e-4)
    assert g.gain == pytest.approx(g.reward_final - g.reward_now)
    assert g.headroom == pytest.approx(0.8 - g.reward_final, abs=1e-4)


def test_entropy_collapse_step():
    s = np.arange(300)
    h = np.exp(-s / 200)  # crosses 0.1 at 200 ln 10 = 460.5
    assert entropy_collapse_step(s, h, 1000, 0.1) == 461
    assert entropy_collapse_step(s, h, 400, 0.1) is None  # not before the planned end
    assert entropy_collapse_step(s, np.exp(s / 200), 1000, 0.1) is None  # rising
    assert entropy_collapse_step(s, np.exp(-s / 20), 1000, 0.1) == 299  # already below
    assert entropy_collapse_step(s[:2], h[:2], 1000, 0.1) is None  # too little data
    assert entropy_collapse_step(s, np.full(s.size, np.nan), 1000, 0.1) is None


def test_entropy_collapse_step_is_not_fooled_by_per_step_noise():
    """Checked every 100 steps of a 2,000-step run with 15% per-step noise in entropy: a slow
    fall (crossing 10% of the start at step 6,900) never warns, a fast one (at 1,150) warns
    from step 500 on and predicts its step. A 50-step window's slope alone warned 4 times of 10
    on the slow fall."""
    rng = np.random.default_rng(0)
    s = np.arange(1, 2001)
    noise = 1 + 0.15 * rng.standard_normal(s.size)

    def warnings(tau):
        h = 0.3 * np.exp(-s / tau) * noise
        return [entropy_collapse_step(s[:at], h[:at], 2000, 0.03) for at in range(100, 1001, 100)]

    assert warnings(3000) == [None] * 10
    fast = warnings(500)
    assert all(w is not None for w in fast[4:])  # from step 500, 650 steps ahead
    assert abs(fast[-1] - 500 * np.log(10)) < 100


# ----------------------------------------------------------------------------- pass@k


def test_pass_at_k_matches_enumeration():
    n = 6
    for c in range(n + 1):
        correct = set(range(c))
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            exact = sum(bool(correct & set(s)) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_known_values_and_arrays():
    n = np.full(11, 10)
    c = np.arange(11)
    np.testing.assert_allclose(pass_at_k(n, c, 1), c / 10, atol=1e-12)  # pass@1 = c/n
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 6, 5) == 1.0
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4, rel=1e-12)  # stable when tiny
    grid = pass_at_k(16, np.arange(17)[:, None], np.array([1, 4, 16])[None, :])
    assert grid.shape == (17, 3) and (np.diff(grid, axis=0) >= 0).all()
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
