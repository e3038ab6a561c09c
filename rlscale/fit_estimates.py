"""The sigmoid under the fitting protocol (`rlscale.fitting`): one run's or several seeds'
estimate with its intervals and whether the asymptote is identified, and the comparison of
two recipes. See `rlscale.fitting`'s docstring for the rules and their reasons."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np
from scipy import stats

from rlscale import scaling, scaling_stats
from rlscale.fitting import NAN, FitProtocol, base_value, json_safe


@dataclass
class SigmoidEstimate:
    """The sigmoid under the protocol: the fit, its intervals, and whether A is a result."""

    fit: scaling.SigmoidFit  # one run's fit, or (several seeds) the fit to their pooled points
    curves: list  # [(x, y, r0)], one per seed, the points it came from
    early_cut: float | None = None
    identified: bool = False
    A_lower: float = NAN  # when not identified: A is at least this
    reason: str = ""  # why A is not identified
    method: str = ""  # how the intervals were made
    boot: np.ndarray = field(default_factory=lambda: np.empty((0, 4)))  # (n, 4) A, B, C_mid, R0
    seeds: list = field(default_factory=list)  # per-seed SigmoidFits (several runs)
    level: float = 0.95

    @property
    def A_interval(self) -> tuple[float, float]:
        return self.fit.intervals.get("A", (NAN, NAN))

    def curves_at(self, grid) -> np.ndarray:
        """(n, len(grid)) predictions of the resampled or per-seed fits."""
        grid = np.asarray(grid, float)
        if len(self.seeds) > 1:
            return np.array([f.predict(grid) for f in self.seeds if f.ok]).reshape(-1, grid.size)
        return scaling.sigmoid(grid[None, :], *(self.boot[:, k, None] for k in range(4)))

    def band(self, grid) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise interval of the curve on `grid` (NaN without intervals): percentiles of
        the block-bootstrap curves, or a t-interval over the seeds' curves."""
        grid = np.asarray(grid, float)
        curves = self.curves_at(grid)
        if len(self.seeds) > 1 and len(curves) > 1:  # symmetric: keep it below the highest A allowed
            lo, hi = _t_interval(curves, self.level)
            return lo, np.minimum(hi, self.fit.A_max) if math.isfinite(self.fit.A_max) else hi
        if len(curves) < 2:
            return np.full_like(grid, NAN), np.full_like(grid, NAN)
        q = (100 - 100 * self.level) / 2
        return tuple(np.nanpercentile(curves, [q, 100 - q], axis=0))

    def asymptote_text(self) -> str:
        if not self.fit.ok:
            return f"no fit: {self.fit.message}"
        if not self.identified:
            return f"A >= {self.A_lower:.3f} (not identified: {self.reason})"
        lo, hi = self.A_interval
        return f"A = {self.fit.A:.3f} [{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) else f"A = {self.fit.A:.3f}"

    def to_dict(self) -> dict:
        return json_safe(
            {
                **scaling.fit_result_to_dict(self.fit),
                "identified": self.identified,
                "A_lower": self.A_lower,
                "not_identified_because": self.reason,
                "interval_method": self.method,
                "early_cut": self.early_cut,
                "seeds": len(self.curves),
            }
        )


def _t_interval(values, level):
    """Mean +- t * sd / sqrt(n) over axis 0 (NaN for fewer than 2 values)."""
    v = np.asarray(values, float)
    n = v.shape[0]
    if n < 2:
        return np.full(v.shape[1:], NAN), np.full(v.shape[1:], NAN)
    half = stats.t.ppf((1 + level) / 2, n - 1) * v.std(axis=0, ddof=1) / np.sqrt(n)
    return v.mean(axis=0) - half, v.mean(axis=0) + half


def _identify(est: SigmoidEstimate, max_width: float) -> SigmoidEstimate:
    """Decide whether A is a result; otherwise give its lower bound (module docstring)."""
    fit, (lo, hi) = est.fit, est.A_interval
    bound = [f for f in [fit, *est.seeds] if f.ok and f.at_bound()]
    if not fit.ok:
        est.identified, est.reason = False, fit.message
    elif bound:
        est.reason = f"A at its upper bound {bound[0].A_max:.3g}: the data do not stop the curve"
    elif math.isfinite(hi) and fit.at_bound(hi):
        est.reason = f"the interval of A reaches its upper bound {fit.A_max:.3g}"
    elif math.isfinite(lo) and hi - lo > max_width:
        est.reason = f"the interval of A is {hi - lo:.3f} wide (> {max_width:g})"
    elif any(not f.ok for f in est.seeds):
        est.reason = "the fit failed on some seeds"
    else:
        est.identified = True
        return est
    if fit.ok:  # the level the data reached; the interval's lower end when the fit bent below the bound
        est.A_lower = fit.A_min if bound or not math.isfinite(lo) else max(lo, fit.A_min)
    return est


def _sigmoid_fitter(x, y, r0, cut):
    """fit_sigmoid on resampled points, the points below the cut kept as they are (they
    set the smallest C_mid allowed, as in the fit to the data)."""
    below = x < (cut or 0)
    return lambda xs, ys: scaling.fit_sigmoid(
        np.r_[x[below], xs], np.r_[y[below], ys], r0=r0, min_compute=cut
    )


def fit_sigmoid_protocol(x, y, protocol: FitProtocol, *, reference=None, r0=None) -> SigmoidEstimate:
    """One run's points (time order) -> SigmoidEstimate. reference: the run's planned final
    x, for the early window (default the largest x given); r0 default `base_value`."""
    x, y, _ = scaling_stats.clean_points(x, y)
    if x is None:
        x, y = np.empty(0), np.empty(0)
    r0 = base_value(x, y) if r0 is None else r0
    cut = protocol.early_cut(reference if reference is not None else (x.max() if x.size else NAN))
    fit = scaling.fit_sigmoid(x, y, r0=r0, min_compute=cut)
    est = SigmoidEstimate(fit, [(x, y, r0)], cut, level=protocol.level)
    use = (x > 0) & (x >= (cut or 0))
    if fit.ok and protocol.n_boot and use.sum() >= 4:
        block = protocol.block_len or scaling_stats.block_length(y[use] - fit.predict(x[use]))
        refit = _sigmoid_fitter(x, y, r0, cut)
        fits = scaling_stats.resample_fits(refit, x[use], y[use], protocol.n_boot, protocol.seed, block)
        est.boot = np.array([[f.A, f.B, f.C_mid, f.R0] for f in fits if f.ok]).reshape(-1, 4)
        fit.intervals = scaling_stats.percentiles(fits, fit.params, protocol.level)
        est.method = f"moving-block bootstrap, block {block} points, {len(est.boot)} resamples"
    return _identify(est, protocol.max_interval_width)


def fit_seeds(curves, protocol: FitProtocol, *, reference=None) -> SigmoidEstimate:
    """Several runs of one config, curves [(x, y), ...] (or (x, y, r0)): the sigmoid fitted
    to all their points pooled (a shared A), intervals a t-interval over the per-seed fits
    (one run: `fit_sigmoid_protocol`)."""
    curves = [(np.asarray(c[0], float), np.asarray(c[1], float), *c[2:]) for c in curves]
    if len(curves) == 1:
        return fit_sigmoid_protocol(*curves[0][:2], protocol, reference=reference, r0=_r0(curves[0]))
    if reference is None:
        reference = float(np.mean([np.nanmax(c[0]) for c in curves]))
    one = replace(protocol, n_boot=0)
    per = [fit_sigmoid_protocol(c[0], c[1], one, reference=reference, r0=_r0(c)) for c in curves]
    r0 = float(np.mean([e.fit.R0 for e in per]))
    x, y = np.concatenate([c[0] for c in curves]), np.concatenate([c[1] for c in curves])
    pooled = fit_sigmoid_protocol(x, y, one, reference=reference, r0=r0)
    est = replace(pooled, curves=[e.curves[0] for e in per], seeds=[e.fit for e in per])
    ok = [f for f in est.seeds if f.ok]
    if pooled.fit.ok and len(ok) > 1:
        vals = np.array([[f.A, f.B, f.C_mid] for f in ok])
        lo, hi = _t_interval(vals, protocol.level)
        est.fit = replace(pooled.fit, intervals={p: (a, b) for p, a, b in zip(est.fit.params, lo, hi)})
        est.method = f"t-interval over {len(ok)} seeds (point estimate: their points pooled)"
    return _identify(replace(est, identified=False, reason=""), protocol.max_interval_width)


def _r0(curve):
    return curve[2] if len(curve) > 2 else None


# ----------------------------------------------------------------------------- comparisons


@dataclass
class RecipeComparison:
    verdict: str
    winner: str | None  # the better recipe; None: no difference, or no decision possible
    by: str  # "A" (asymptotes differ), "B" (same A, efficiency differs), "" (neither)
    A_a: float = NAN
    A_b: float = NAN
    B_a: float = NAN  # at the shared A when by == "B" or no difference
    B_b: float = NAN
    shared_A: float | None = None
    margin: float = NAN  # half-width of the interval of the deciding difference


def _welch(a, b, level) -> tuple[float, float]:
    """(mean(a) - mean(b), half-width of its `level` interval), Welch's t from the spread."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se > 0 else 1.0
    return float(a.mean() - b.mean()), float(stats.t.ppf((1 + level) / 2, df) * se)


def compare_recipes(a: SigmoidEstimate, b: SigmoidEstimate, *, names=("a", "b")) -> RecipeComparison:
    """ScaleRL's rule (higher A wins; same A: higher B wins) with the protocol's guards: no
    decision on a failed fit, an unidentified A, or a recipe with one run (its seed-to-seed
    spread is unmeasured); a difference counts only beyond its interval from the spread."""
    pair = tuple(zip(names, (a, b)))
    A_of = {n: float(np.mean([f.A for f in e.seeds])) if e.seeds else e.fit.A for n, e in pair}
    out = partial(RecipeComparison, A_a=A_of[names[0]], A_b=A_of[names[1]])
    if bad := [n for n, e in pair if not e.fit.ok]:
        return out(f"cannot compare: fit failed for {', '.join(bad)}", None, "")
    if unid := [f"{n} (A >= {e.A_lower:.3f}: {e.reason})" for n, e in pair if not e.identified]:
        return out(f"no decision: asymptote not identified for {'; '.join(unid)}", None, "")
    if few := [n for n, e in pair if len([f for f in e.seeds if f.ok]) < 2]:
        return out(
            f"no decision: one run of {', '.join(few)} measures no seed-to-seed spread "
            "(give each recipe 2+ seeds, 3+ for a usable interval)",
            None,
            "",
        )
    d, margin = _welch(*([f.A for f in e.seeds if f.ok] for _, e in pair), a.level)
    if abs(d) > margin:
        win, lose = names if d > 0 else names[::-1]
        return out(
            f"{win} scales higher: A = {A_of[win]:.3f} vs {A_of[lose]:.3f} ({lose}); the difference "
            f"{abs(d):.3f} exceeds its {a.level:.0%} interval from the seed spread (+-{margin:.3f})",
            win,
            "A",
            margin=margin,
        )
    shared = float(np.mean([f.A for _, e in pair for f in e.seeds if f.ok]))
    Bs = []
    for _, e in pair:
        refits = [
            scaling.fit_sigmoid(x, y, r0=r0, min_compute=e.early_cut, A=shared) for x, y, r0 in e.curves
        ]
        if not all(f.ok for f in refits):
            return out(
                f"cannot compare: refit with shared A = {shared:.3f} failed", None, "", shared_A=shared
            )
        Bs.append([f.B for f in refits])
    dB, margin_B = _welch(*Bs, a.level)
    same_A = f"|dA| = {abs(d):.3f} within the seed spread (+-{margin:.3f})"
    common = {
        "B_a": float(np.mean(Bs[0])),
        "B_b": float(np.mean(Bs[1])),
        "shared_A": shared,
        "margin": margin_B,
    }
    if abs(dB) > margin_B:
        win = names[0] if dB > 0 else names[1]
        text = f"same asymptote ({same_A}); with shared A = {shared:.3f}, {win} is more efficient"
        return out(f"{text}: |dB| = {abs(dB):.3f} > +-{margin_B:.3f}", win, "B", **common)
    return out(f"no difference: {same_A}; with shared A = {shared:.3f}, |dB| = {abs(dB):.3f} "
               f"within +-{margin_B:.3f}", None, "", **common)  # fmt: skip


@dataclass
class Comparison:
    a: str
    b: str
    result: RecipeComparison

    def to_dict(self) -> dict:
        return json_safe({"a": self.a, "b": self.b, **asdict(self.result)})


def compare_fits(items) -> list[Comparison]:
    """compare_recipes on every pair of (name, SigmoidEstimate)."""
    return [
        Comparison(na, nb, compare_recipes(ea, eb, names=(na, nb)))
        for i, (na, ea) in enumerate(items)
        for nb, eb in items[i + 1 :]
    ]
