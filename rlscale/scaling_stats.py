"""Statistics around the scaling laws (`rlscale.scaling`), with no law of their own: points
cleaned, bootstrap resampling (one point at a time or in contiguous blocks) and its
percentile intervals, backtests (fit the early part of a run, score the rest), what a run
in progress is on course for (remaining gain, entropy collapse), and the unbiased pass@k."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from rlscale.scaling import Fit, SigmoidFit

NAN = float("nan")


def clean_points(x, y):
    """Float 1-D arrays with non-finite pairs dropped, or a message saying why not."""
    try:
        x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    except (TypeError, ValueError) as e:
        return None, None, f"inputs are not numeric: {e}"
    if x.shape != y.shape:
        return None, None, f"length mismatch: {x.size} x values, {y.size} y values"
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep], ""


def degenerate(x, y, n_min):
    """Why these points cannot be fitted (empty string when they can)."""
    if x.size < n_min:
        return f"need at least {n_min} finite points, got {x.size}"
    if np.ptp(y) == 0:
        return "reward is constant: nothing to fit"
    if np.ptp(x) == 0:
        return "x is constant: nothing to fit"
    return ""


def rmse(pred, y):
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def percentiles(fits: list[Fit], params, level=0.95) -> dict:
    good = [f for f in fits if f.ok]
    if not good:
        return {}
    vals = np.array([[getattr(f, p) for p in params] for f in good])
    lo, hi = np.percentile(vals, [50 - 50 * level, 50 + 50 * level], axis=0)
    return {p: (float(a), float(b)) for p, a, b in zip(params, lo, hi)}


def resample_fits(fit_fn, x, y, n, seed=0, block=1) -> list[Fit]:
    """Refit with fit_fn on n resamples of the points (in time order) drawn with replacement.
    block > 1: a moving-block bootstrap (Kunsch 1989): contiguous stretches of `block`
    points are drawn and concatenated, so residuals correlated from one point to the next
    keep that correlation inside each block (drawing points one by one makes the intervals
    too narrow on such curves). block = 1 is the ordinary bootstrap."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    m = x.size
    if m == 0 or n <= 0:
        return []
    b = int(np.clip(block, 1, m))
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, m - b + 1, size=(n, math.ceil(m / b)))
    idx = (starts[..., None] + np.arange(b)).reshape(n, -1)[:, :m]
    return [fit_fn(x[i], y[i]) for i in idx]


def block_length(resid) -> int:
    """Block length for `resample_fits`: at least n^(1/3) (the usual rate for a moving-block
    bootstrap) and at least twice the integrated autocorrelation time (1 + rho) / (1 - rho)
    of an AR(1) with the residuals' lag-1 autocorrelation rho; at most n / 4."""
    r = np.asarray(resid, float)
    r = r[np.isfinite(r)] - np.nanmean(r) if r.size else r
    n = r.size
    if n < 8:
        return 1
    rho = float(np.clip(np.dot(r[:-1], r[1:]) / max(np.dot(r, r), 1e-300), 0.0, 0.9))
    b = max(n ** (1 / 3), 2 * (1 + rho) / (1 - rho))
    return int(np.clip(round(b), 1, n // 4))


def bootstrap_over_runs(fit_fn: Callable, runs: list, n: int = 200, seed: int = 0) -> dict:
    """95% intervals over seeds: resample whole runs [(x, y), ...] with replacement,
    pool their points, refit with fit_fn(x, y). Returns param -> (lo, hi)."""
    rng = np.random.default_rng(seed)
    runs = [(np.asarray(x, float).ravel(), np.asarray(y, float).ravel()) for x, y in runs]
    fits: list[Fit] = []
    for _ in range(n):
        pick = rng.integers(0, len(runs), size=len(runs))
        fits.append(
            fit_fn(np.concatenate([runs[i][0] for i in pick]), np.concatenate([runs[i][1] for i in pick]))
        )
    return percentiles(fits, type(fits[0]).params) if fits else {}


# ----------------------------------------------------------------------------- backtest


@dataclass
class Backtest:
    n_fit: int
    n_test: int
    fit: Fit  # fitted on the early part
    full: Fit  # fitted on everything
    rmse: float  # of the early fit on the held-out later points
    final_error: float  # early fit's prediction minus the observed value at the last point
    delta: dict  # param -> |early - full|
    ok: bool = True
    message: str = ""

    @property
    def delta_A(self) -> float:
        return self.delta.get("A", NAN)


def backtest(fit_fn: Callable, x, y, *, frac=0.5, by="x", order=None, n_fit=None) -> Backtest:
    """Fit on the early part of a run, score the prediction on the rest.

    by="x": fit on points with x <= x_min + frac * (x_max - x_min), i.e. the first frac
    of the run's compute (compute grows with steps, so this is a prefix of the run).
    by="points": fit on the first ceil(frac * n) points in step order; use this when x
    is not monotone in time, e.g. entropy ("the first 15% of steps").
    order: the steps (or any key giving time order); default the order given.
    n_fit: fit on exactly the first n_fit points in step order (overrides frac and by).
    The last point is the last in step order.
    """
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    idx = np.argsort(np.asarray(order), kind="stable") if order is not None else np.arange(x.size)
    x, y = x[idx], y[idx]
    if n_fit is not None:
        early = np.arange(x.size) < n_fit
    elif by == "points":
        early = np.arange(x.size) < math.ceil(frac * x.size)
    elif by == "x":
        xf = x[np.isfinite(x)]
        early = x <= (xf.min() + frac * np.ptp(xf) if xf.size else NAN)
    else:
        raise ValueError(f"by must be 'x' or 'points', not {by!r}")
    part, full = fit_fn(x[early], y[early]), fit_fn(x, y)
    test = ~early & np.isfinite(x) & np.isfinite(y)
    n_fit_, n_test = int(early.sum()), int(test.sum())
    delta = {p: abs(getattr(part, p) - getattr(full, p)) for p in part.params}
    if not part.ok or n_test == 0:
        msg = part.message if not part.ok else "no held-out points"
        return Backtest(n_fit_, n_test, part, full, NAN, NAN, delta, ok=False, message=msg)
    last = np.flatnonzero(np.isfinite(x) & np.isfinite(y))[-1]
    return Backtest(
        n_fit_,
        n_test,
        part,
        full,
        rmse=rmse(part.predict(x[test]), y[test]),
        final_error=float(part.predict(x[last]) - y[last]),
        delta=delta,
    )


# ----------------------------------------------------------------------------- during a run


@dataclass
class Gain:
    reward_now: float  # fitted reward at the current compute
    reward_final: float  # predicted reward at the planned final compute
    gain: float  # reward_final - reward_now
    headroom: float  # A - reward_final: what even the full run leaves on the table


def predict_remaining_gain(fit: SigmoidFit, current_compute, final_compute) -> Gain:
    """What the rest of the planned run should buy, by the fitted sigmoid (NaN if the
    fit failed)."""
    now, final = (float(fit.predict(v)) for v in (current_compute, final_compute))
    return Gain(now, final, final - now, fit.A - final)


def entropy_collapse_step(
    steps, entropy, planned_steps, threshold, *, window_frac=0.25, min_window=50, level=0.95
):
    """Step at which entropy is predicted to fall below threshold: an exponential fit (a line
    in log entropy) over the last `window_frac` of the points (at least `min_window`),
    extrapolated at the shallow end of its slope's `level` interval, so that per-step noise
    in a short window does not read as a collapse. The last step if the fit is already
    below the threshold; None if not before planned_steps, or too little data."""
    s, h, _ = clean_points(steps, entropy)
    if s is None:
        return None
    order = np.argsort(s, kind="stable")
    s, h = s[order], h[order]
    pos = h > 0
    s, h = s[pos], h[pos]
    window = max(min_window, math.ceil(window_frac * s.size))
    s, log_h = s[-window:], np.log(h[-window:])
    if s.size < 3 or np.ptp(s) == 0 or threshold <= 0:
        return None
    line = stats.linregress(s, log_h)
    if line.slope * s[-1] + line.intercept < np.log(threshold):
        return int(s[-1])
    shallow = line.slope + stats.t.ppf(0.5 + level / 2, s.size - 2) * line.stderr
    if not shallow < 0:
        return None
    cross = s.mean() + (np.log(threshold) - log_h.mean()) / shallow
    return math.ceil(cross) if cross <= planned_steps else None


# ----------------------------------------------------------------------------- pass@k


def pass_at_k(n, c, k):
    """Unbiased pass@k (Chen et al. 2021, arXiv 2107.03374): 1 - C(n-c, k) / C(n, k)
    from n samples of which c are correct, in the stable product form
    1 - prod_{i=n-c+1}^{n} (1 - k/i). Broadcasts over arrays."""
    n, c, k = np.broadcast_arrays(*(np.asarray(v, dtype=np.int64) for v in (n, c, k)))
    if np.any((k < 1) | (k > n) | (c < 0) | (c > n)):
        raise ValueError("pass_at_k needs 1 <= k <= n and 0 <= c <= n")
    out = np.ones(n.shape)
    for i in np.ndindex(n.shape):
        if n[i] - c[i] >= k[i]:
            log_miss = np.log1p(-k[i] / np.arange(n[i] - c[i] + 1, n[i] + 1)).sum()
            out[i] = 0.0 - np.expm1(log_miss)  # 0.0 - : no -0.0 when c == 0
    return float(out) if out.ndim == 0 else out
