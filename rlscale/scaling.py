"""Scaling-law fits for RL runs: reward vs compute, reward vs entropy.

Three laws, each one short function below, each with a fitter that never raises on bad
input (a live run refits every few steps and must not crash): a failed fit comes back
with `.ok = False`, NaN parameters and a `.message`.

- sigmoid    R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B)   ScaleRL, arXiv 2510.13786
- entropy    R = -a * exp(H) + b                           Cui et al., arXiv 2505.22617
- power law  R = A - D * C^(-B)                            the pre-training form, for contrast

Intervals come from a bootstrap: resample points with replacement, one at a time or in
contiguous blocks (a moving-block bootstrap, for autocorrelated residuals), refit, take the
2.5 / 97.5 percentiles (`rlscale.scaling_stats`, with backtests, what a run in progress is on
course for, and pass@k). The fitting protocol built on these (early window, identifiability,
seeds, recipe comparisons) is `rlscale.fitting`.
"""

import math
from dataclasses import dataclass, field, fields
from functools import partial
from typing import ClassVar

import numpy as np
from scipy import optimize, special

from rlscale.scaling_stats import clean_points, degenerate, percentiles, resample_fits, rmse

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
    c, r, msg = clean_points(compute, reward)
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
    if msg := degenerate(c, r, n_min=4):
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
    fit.residual = rmse(fit.predict(c), r)
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
        fit.intervals = percentiles(fits, fit.params)
    return fit


# ----------------------------------------------------------------------------- entropy


def fit_entropy_law(entropy, reward, *, bootstrap=0, seed=0) -> EntropyFit:
    """R = -a exp(H) + b by linear least squares in exp(H)."""
    h, r, msg = clean_points(entropy, reward)
    if not msg:
        msg = degenerate(h, r, n_min=3)
    if msg:
        return EntropyFit(ok=False, message=msg, n=int(0 if h is None else h.size))
    X = np.column_stack([-np.exp(h), np.ones_like(h)])
    try:
        (a, b), *_ = np.linalg.lstsq(X, r, rcond=None)
    except np.linalg.LinAlgError as e:
        return EntropyFit(ok=False, message=f"lstsq failed: {e}", n=int(h.size))
    fit = EntropyFit(a=float(a), b=float(b), n=int(h.size))
    fit.residual = rmse(fit.predict(h), r)
    if bootstrap:
        fit.intervals = percentiles(resample_fits(fit_entropy_law, h, r, bootstrap, seed), fit.params)
    return fit


# ----------------------------------------------------------------------------- power law


def fit_power_law(compute, reward, *, bootstrap=0, seed=0) -> PowerFit:
    """R = A - D C^-B: a grid over B with A and D by linear least squares at each B,
    then scipy least_squares refines all three from the best B."""
    c, r, msg = clean_points(compute, reward)
    if not msg:
        keep = c > 0
        c, r = c[keep], r[keep]
        msg = degenerate(c, r, n_min=4)
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
    fit.residual = rmse(fit.predict(c), r)
    if bootstrap:
        fit.intervals = percentiles(resample_fits(fit_power_law, c, r, bootstrap, seed), fit.params)
    return fit
