"""Scaling-law fits for RL runs: reward vs compute, reward vs entropy.

Three laws, each one short function below, each with a fitter that never raises on bad
input (a live run refits every few steps and must not crash): a failed fit comes back
with `.ok = False`, NaN parameters and a `.message`.

- sigmoid    R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B)   ScaleRL, arXiv 2510.13786
- entropy    R = -a * exp(H) + b                           Cui et al., arXiv 2505.22617
- power law  R = A - D * C^(-B)                            the pre-training form, for contrast

Intervals come from a bootstrap: resample points with replacement, one at a time or in
contiguous blocks (a moving-block bootstrap, for autocorrelated residuals), refit, take the
2.5 / 97.5 percentiles. The fitting protocol built on these (early window, identifiability,
seeds, recipe comparisons) is `rlscale.fitting`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from typing import ClassVar

import numpy as np
from scipy import optimize, special

NAN = float("nan")


# ----------------------------------------------------------------------------- laws


# ScaleRL sigmoidal compute-performance curve (Khatri et al. 2025, arXiv 2510.13786);
# written with expit so a huge (C_mid / C)^B cannot overflow.
def sigmoid(c, A, B, C_mid, R0):
    with np.errstate(divide="ignore", invalid="ignore"):
        return R0 + (A - R0) * special.expit(B * (np.log(c) - np.log(C_mid)))


# Entropy-performance law (Cui et al. 2025, arXiv 2505.22617): R = -a exp(H) + b.
def entropy_law(h, a, b):
    return -a * np.exp(h) + b


# Saturating power law, the pre-training-style form ScaleRL compares against.
def power_law(c, A, B, D):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return A - D * np.power(c, -B)


# ----------------------------------------------------------------------------- results


@dataclass(kw_only=True)
class Fit:
    """What every fit has: goodness of fit, status, bootstrap intervals."""

    residual: float = NAN  # RMSE of the fit on the points it was fitted on, reward units
    n: int = 0  # points used
    ok: bool = True
    message: str = ""
    intervals: dict = field(default_factory=dict)  # param -> (lo, hi), 95%, when bootstrapped
    law: ClassVar[str] = ""
    params: ClassVar[tuple] = ()  # the fitted parameters (the ones that get intervals)


@dataclass(kw_only=True)
class SigmoidFit(Fit):
    A: float = NAN
    B: float = NAN
    C_mid: float = NAN
    R0: float = NAN
    min_compute: float | None = None
    A_min: float = NAN  # the lower bound A was allowed: the level the smoothed data reached
    A_max: float = NAN  # the upper bound A was allowed (1.0 for rewards in [0, 1])
    law: ClassVar[str] = "sigmoid"
    params: ClassVar[tuple] = ("A", "B", "C_mid")

    def at_bound(self, a=None) -> bool:
        """A (or `a`) within BOUND_TOL of the gain below its upper bound: the data did not
        stop the asymptote, the bound did (0.99994 against a bound of 1 counts)."""
        a = self.A if a is None else a
        return bool(self.A_max - a <= BOUND_TOL * (self.A_max - self.R0))

    def predict(self, compute):
        return sigmoid(np.asarray(compute, float), self.A, self.B, self.C_mid, self.R0)

    def linearize(self, compute, reward):
        """x = log C, y = log((A-R0)/(R-R0) - 1), which the law makes the straight line
        y = B*log(C_mid) - B*x. y is NaN where R is not strictly between R0 and A."""
        c, r = np.asarray(compute, float), np.asarray(reward, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log((self.A - self.R0) / (r - self.R0) - 1.0)
            return np.log(c), np.where(np.isfinite(y), y, NAN)


@dataclass(kw_only=True)
class EntropyFit(Fit):
    a: float = NAN
    b: float = NAN
    law: ClassVar[str] = "entropy"
    params: ClassVar[tuple] = ("a", "b", "ceiling")

    @property
    def ceiling(self) -> float:
        return self.b - self.a  # reward once entropy is exhausted (H = 0)

    def predict(self, h):
        return entropy_law(np.asarray(h, float), self.a, self.b)


@dataclass(kw_only=True)
class PowerFit(Fit):
    A: float = NAN
    B: float = NAN
    D: float = NAN
    law: ClassVar[str] = "power"
    params: ClassVar[tuple] = ("A", "B", "D")

    def predict(self, compute):
        return power_law(np.asarray(compute, float), self.A, self.B, self.D)


def fit_result_to_dict(fit: Fit) -> dict:
    """Plain, strict-JSON dict (NaN/inf -> None) for fits.json."""

    def num(v):
        return float(v) if v is not None and math.isfinite(v) else None

    d = {"law": fit.law}
    for f in fields(fit):
        v = getattr(fit, f.name)
        if f.name == "intervals":
            v = {k: [num(lo), num(hi)] for k, (lo, hi) in v.items()}
        elif isinstance(v, float):
            v = num(v)
        d[f.name] = v
    if isinstance(fit, EntropyFit):
        d["ceiling"] = num(fit.ceiling)
    return d


# ----------------------------------------------------------------------------- helpers


def _clean(x, y):
    """Float 1-D arrays with non-finite pairs dropped, or a message saying why not."""
    try:
        x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    except (TypeError, ValueError) as e:
        return None, None, f"inputs are not numeric: {e}"
    if x.shape != y.shape:
        return None, None, f"length mismatch: {x.size} x values, {y.size} y values"
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep], ""


def _degenerate(x, y, n_min):
    """Why these points cannot be fitted (empty string when they can)."""
    if x.size < n_min:
        return f"need at least {n_min} finite points, got {x.size}"
    if np.ptp(y) == 0:
        return "reward is constant: nothing to fit"
    if np.ptp(x) == 0:
        return "x is constant: nothing to fit"
    return ""


def _rmse(pred, y):
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def _percentiles(fits: list[Fit], params, level=0.95) -> dict:
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
    return _percentiles(fits, type(fits[0]).params) if fits else {}


# ----------------------------------------------------------------------------- sigmoid

B_BOUNDS = (0.05, 20.0)  # efficiency exponent B: generous, so only nonsense is excluded
BOUND_TOL = 0.01  # A within 1% of the gain (A_max - R0) below A_max counts as at the bound


def fit_sigmoid(
    compute, reward, *, r0=None, min_compute=None, bootstrap=0, seed=0, A=None, refine=True, block=1
) -> SigmoidFit:
    """Fit the ScaleRL sigmoid, the way the paper's appendix does: a grid over A and
    C_mid with B by least squares at each grid point, the lowest residual wins; then
    scipy least_squares refines all three from the best grid point.

    r0: reward at the start; default the mean of the points at zero compute (a base-model
    evaluation) if there are any, else of the first 3 points (before the min_compute cut,
    since R0 is the reward of the untrained policy).
    min_compute: drop the noisy start (points with compute < min_compute) before fitting.
    A: fix the asymptote and fit only B and C_mid (used to compare efficiencies).
    bootstrap, block: intervals from that many resamples (`resample_fits`).
    """
    c, r, msg = _clean(compute, reward)
    if msg:
        return SigmoidFit(ok=False, message=msg, min_compute=min_compute)
    order = np.argsort(c, kind="stable")
    c_all, r_all = c, r = c[order], r[order]
    r0_given = r0
    if r0 is None:  # a step-0 eval at compute 0 is the base model: R0 is its value
        at_zero = r[c == 0]
        r0 = float(at_zero.mean() if at_zero.size else r[:3].mean()) if r.size else NAN
    keep = c > 0
    c, r = c[keep], r[keep]
    c_lo = float(c[0]) if c.size else NAN  # C_mid may lie before the cut, not before the run
    if min_compute is not None:
        keep = c >= min_compute
        c, r = c[keep], r[keep]
    fail = partial(SigmoidFit, ok=False, R0=r0, n=int(c.size), min_compute=min_compute)
    if msg := _degenerate(c, r, n_min=4):
        return fail(message=msg)

    # Bounds from the data, so short runs fit too. A is at least the highest point the
    # smoothed curve reached (less its noise, so noise does not push A up), at most 1.0
    # for rewards in [0, 1], else allows twice the gain seen so far.
    w = max(1, c.size // 10)
    smooth = np.convolve(r, np.ones(w) / w, mode="valid")
    noise = np.std(np.diff(r)) / np.sqrt(2)
    a_lo = float(smooth.max() - 2 * noise / np.sqrt(w))
    if a_lo <= r0:
        return fail(message=f"reward does not rise above R0={r0:.4g} beyond its noise")
    a_hi = 1.0 if r.min() >= 0 and r.max() <= 1 else a_lo + 2 * (a_lo - r0)
    a_hi = max(a_hi, a_lo + 1e-6)
    logm_lo, logm_hi = np.log(c_lo), np.log(100 * c[-1])
    logc = np.log(c)

    # Grid. At fixed (A, C_mid) the law is linear in B once linearised:
    # log((A-R0)/(R-R0) - 1) = B * (log C_mid - log C); solve that for B in closed form
    # over the well-conditioned points (5-95% of the gain), then score in reward units.
    A_grid = np.array([A], float) if A is not None else np.linspace(a_lo, a_hi, 41)
    logm_grid = np.linspace(logm_lo, logm_hi, 61)
    frac = (r - r0) / (A_grid[:, None] - r0)  # (nA, n)
    use = (frac > 0.05) & (frac < 0.95)
    with np.errstate(divide="ignore", invalid="ignore"):
        ylin = np.where(use, np.log(1 / frac - 1), 0.0)
        u = logm_grid[:, None] - logc  # (nM, n)
        Bg = np.clip((ylin @ u.T) / (use @ (u**2).T), *B_BOUNDS)  # (nA, nM)
    Bg = np.where(np.isfinite(Bg), Bg, 1.0)
    pred = r0 + (A_grid[:, None, None] - r0) * special.expit(Bg[..., None] * -u[None])
    sse = ((pred - r) ** 2).sum(-1)
    ia, im = np.unravel_index(np.argmin(sse), sse.shape)
    best = {"A": float(A_grid[ia]), "B": float(Bg[ia, im]), "logm": float(logm_grid[im])}

    if refine:
        free = ["logB", "logm"] if A is not None else ["A", "logB", "logm"]
        lo = {"A": a_lo, "logB": np.log(B_BOUNDS[0]), "logm": logm_lo}
        hi = {"A": a_hi, "logB": np.log(B_BOUNDS[1]), "logm": logm_hi}
        start = {"A": best["A"], "logB": np.log(best["B"]), "logm": best["logm"]}

        def resid(theta):
            p = {**start, **dict(zip(free, theta))}
            return sigmoid(c, p["A"], np.exp(p["logB"]), np.exp(p["logm"]), r0) - r

        try:
            sol = optimize.least_squares(
                resid,
                [np.clip(start[k], lo[k], hi[k]) for k in free],
                bounds=([lo[k] for k in free], [hi[k] for k in free]),
            )
            p = {**start, **dict(zip(free, sol.x))}
            best = {"A": float(p["A"]), "B": float(np.exp(p["logB"])), "logm": float(p["logm"])}
        except (ValueError, np.linalg.LinAlgError) as e:
            return fail(message=f"least_squares failed: {e}")

    fit = SigmoidFit(
        A=best["A"],
        B=best["B"],
        C_mid=float(np.exp(best["logm"])),
        R0=r0,
        n=int(c.size),
        min_compute=min_compute,
        A_min=a_lo,
        A_max=a_hi,
    )
    fit.residual = _rmse(fit.predict(c), r)
    notes = []
    if A is None and fit.at_bound():
        notes.append(f"A at its upper bound {a_hi:.4g}: the data do not fix the asymptote")
    if np.isclose(best["logm"], logm_hi):
        notes.append("C_mid at its upper bound (run far from its midpoint)")
    fit.message = "; ".join(notes)
    if bootstrap:
        # Resample the whole run, start included, so R0's own noise reaches the intervals.
        refit = partial(fit_sigmoid, r0=r0_given, min_compute=min_compute, A=A, refine=refine)
        fits = resample_fits(refit, c_all, r_all, bootstrap, seed, block)
        fit.intervals = _percentiles(fits, fit.params)
    return fit


# ----------------------------------------------------------------------------- entropy


def fit_entropy_law(entropy, reward, *, bootstrap=0, seed=0) -> EntropyFit:
    """R = -a exp(H) + b by linear least squares in exp(H)."""
    h, r, msg = _clean(entropy, reward)
    if not msg:
        msg = _degenerate(h, r, n_min=3)
    if msg:
        return EntropyFit(ok=False, message=msg, n=int(0 if h is None else h.size))
    X = np.column_stack([-np.exp(h), np.ones_like(h)])
    try:
        (a, b), *_ = np.linalg.lstsq(X, r, rcond=None)
    except np.linalg.LinAlgError as e:
        return EntropyFit(ok=False, message=f"lstsq failed: {e}", n=int(h.size))
    fit = EntropyFit(a=float(a), b=float(b), n=int(h.size))
    fit.residual = _rmse(fit.predict(h), r)
    if bootstrap:
        fit.intervals = _percentiles(resample_fits(fit_entropy_law, h, r, bootstrap, seed), fit.params)
    return fit


# ----------------------------------------------------------------------------- power law


def fit_power_law(compute, reward, *, bootstrap=0, seed=0) -> PowerFit:
    """R = A - D C^-B: a grid over B with A and D by linear least squares at each B,
    then scipy least_squares refines all three from the best B."""
    c, r, msg = _clean(compute, reward)
    if not msg:
        keep = c > 0
        c, r = c[keep], r[keep]
        msg = _degenerate(c, r, n_min=4)
    if msg:
        return PowerFit(ok=False, message=msg, n=int(0 if c is None else c.size))
    # Work in x = C / C_ref (geometric mean) so x^-B stays near 1; D = D' * C_ref^B.
    c_ref = float(np.exp(np.log(c).mean()))
    x = c / c_ref
    B_grid = np.geomspace(1e-3, 5.0, 80)
    z = x[None, :] ** -B_grid[:, None]  # (nB, n)
    zc = z - z.mean(1, keepdims=True)
    slope = (zc @ (r - r.mean())) / (zc**2).sum(1)  # = -D'
    icpt = r.mean() - slope * z.mean(1)  # = A
    sse = ((icpt[:, None] + slope[:, None] * z - r) ** 2).sum(1)
    k = int(np.nanargmin(sse))

    def resid(theta):
        A_, logB, Dp = theta
        return A_ - Dp * x ** -np.exp(logB) - r

    try:
        sol = optimize.least_squares(
            resid,
            [icpt[k], np.log(B_grid[k]), -slope[k]],
            bounds=([-np.inf, np.log(1e-4), -np.inf], [np.inf, np.log(10.0), np.inf]),
        )
    except (ValueError, np.linalg.LinAlgError) as e:
        return PowerFit(ok=False, message=f"least_squares failed: {e}", n=int(c.size))
    A_, B_ = float(sol.x[0]), float(np.exp(sol.x[1]))
    fit = PowerFit(A=A_, B=B_, D=float(sol.x[2] * c_ref**B_), n=int(c.size))
    fit.residual = _rmse(fit.predict(c), r)
    if bootstrap:
        fit.intervals = _percentiles(resample_fits(fit_power_law, c, r, bootstrap, seed), fit.params)
    return fit


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
        rmse=_rmse(part.predict(x[test]), y[test]),
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


def entropy_collapse_step(steps, entropy, planned_steps, threshold, *, window=50):
    """Step at which entropy is predicted to fall below threshold, from an exponential
    fit (a line in log entropy) over the last `window` points; the last step if the fit
    is already below it; None if not before planned_steps, or too little data."""
    s, h, _ = _clean(steps, entropy)
    if s is None:
        return None
    order = np.argsort(s, kind="stable")
    s, h = s[order], h[order]
    pos = h > 0
    s, h = s[pos][-window:], h[pos][-window:]
    if s.size < 3 or np.ptp(s) == 0 or threshold <= 0:
        return None
    slope, icpt = np.polyfit(s, np.log(h), 1)
    if slope * s[-1] + icpt < np.log(threshold):
        return int(s[-1])
    if slope >= 0:
        return None
    cross = (np.log(threshold) - icpt) / slope
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
