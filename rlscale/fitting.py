"""The fitting protocol, and fits of whole runs: run directories (or metric frames) in, fit
results out. The laws and fitters themselves live in `rlscale.scaling`.

The protocol (`FitProtocol`; `rlscale fit`, `rlscale backtest`, the live refit and sweep
reports all take it):

- Target. The held-out evaluation's mean accuracy (`eval/mean@k`, else `eval/pass@1`, the
  same quantity) when the run logged at least `min_points` evaluations; else the per-step
  training reward `reward/mean`, with a note saying so. `metric=` picks any column.
- Points. Sparse eval rows are fitted as they are; a per-step metric is averaged over at
  most `bins` non-overlapping runs of consecutive steps (`bin_steps`).
- R0 is the base model: the metric at zero compute (the step-0 evaluation) when logged,
  else the first point; never a mean of the first points, which starts above the base.
- Early window. Points below `early_window_frac` x the run's planned compute (default 10%)
  are left out of the sigmoid, because the first steps learn the output format and the
  sampling regime, a transient the law does not describe (ScaleRL leaves out its first
  ~1.5k GPU-hours for this reason). A fraction of the *planned* budget is a fixed amount of
  compute known before the run starts: it is not tuned after the fact and does not move
  as the run goes on. `min_compute` sets it in x units instead.
- Intervals. One run: a moving-block bootstrap over contiguous stretches of points
  (`scaling.resample_fits`, block length from the residuals' autocorrelation), because
  neighbouring bins are correlated and an ordinary bootstrap covers too rarely. Several
  seeds: t-intervals over the per-seed fits (3 seeds or more for a usable width); the
  point estimate is the sigmoid fitted to all seeds' points pooled (a shared A).
- Identifiability. The asymptote A is not a result when the fit pushes it against its
  upper bound, when its interval reaches that bound, or when the interval is wider than
  `max_interval_width`: then A is reported as a lower bound, `A >= A_lower`.
- Comparisons (`compare_recipes`) decide only when a difference in A (or, at a shared A,
  in B) is larger than its 95% interval from the measured seed-to-seed spread (Welch), and
  never on an unidentified asymptote; one run per recipe measures no spread: no decision.
- Every prediction is reported beside persistence (the last value carried forward) and the
  power law (`rlscale.backtest`).

Where this differs from ScaleRL (Khatri et al. 2025, appendix) and Cui et al. (2025): ScaleRL
fits on a held-out validation set's mean reward, fixes R0 at the start, drops a fixed early
window and fits A, B, C_mid by a grid search over A and C_mid (our fitter does the same,
then refines); it states A's uncertainty from repeated runs (about +-0.02) and calls
asymptotes within that the same. We make that margin measured (seeds, Welch) instead of a
fixed 0.02, and refuse to decide on one run, whose spread is unknown. Its window is an
absolute amount of GPU-hours; ours is a fraction of the planned budget, the same thing for
runs of any size. Cui et al. fit R = -a exp(H) + b on the first ~15% of steps and
extrapolate to H = 0; `rlscale backtest` reports how well that works on the run at hand.

X axes (`X_AXES`, the one list of them): flops = `compute/flops`, steps = `step`, tokens =
`tokens/generated`, samples = `samples`, wall = `time/wall_s` (seconds), hours =
`compute/device_hours` as the run's accounting logged it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from rlscale import scaling
from rlscale.telemetry import load_metrics

# name -> (metric column, axis label)
X_AXES = {
    "flops": ("compute/flops", "compute (FLOPs)"),
    "hours": ("compute/device_hours", "device-hours"),
    "steps": ("step", "step"),
    "tokens": ("tokens/generated", "generated tokens"),
    "samples": ("samples", "samples"),
    "wall": ("time/wall_s", "wall-clock time (s)"),
}
REWARD = "reward/mean"
ENTROPY = "entropy/mean"
EVAL_PASS1 = "eval/pass@1"  # unbiased pass@1 = mean accuracy over the k samples = mean@k
EVAL_MEAN = re.compile(r"^eval/mean@(\d+)$")
ENTROPY_BACKTEST_FRAC = 0.15  # Cui et al. predict the rest of the run from its first 15% of steps
NAN = float("nan")


@dataclass(frozen=True)
class FitProtocol:
    """How a run's curve is fitted and judged; see the module docstring for the reasons."""

    metric: str | None = None  # None: the eval mean if logged often enough, else reward/mean
    x: str = "flops"  # a key of X_AXES
    early_window_frac: float = 0.1  # leave out x < this fraction of the planned compute
    min_compute: float | None = None  # or leave out x < this (x units); overrides the fraction
    max_interval_width: float = 0.1  # A with a wider 95% interval is not identified
    block_len: int | None = None  # bootstrap block length; None: from the residuals
    n_boot: int = 200  # bootstrap resamples (0: no intervals)
    bins: int = 100  # a per-step metric is averaged into at most this many points
    min_points: int = 6  # evaluations needed before the eval metric is fitted
    final_frac: float = 0.1  # "final" value: mean over the last 10% of compute
    level: float = 0.95  # of every interval
    seed: int = 0

    def __post_init__(self):
        if self.x not in X_AXES:
            raise ValueError(f"x must be one of {sorted(X_AXES)}, not {self.x!r}")
        if not 0 <= self.early_window_frac < 1 or not 0 < self.final_frac < 1 or not 0 < self.level < 1:
            raise ValueError("early_window_frac must be in [0, 1); final_frac and level in (0, 1)")

    def early_cut(self, reference: float) -> float | None:
        """Smallest x fitted, given the run's planned final x."""
        if self.min_compute is not None:
            return self.min_compute
        return self.early_window_frac * reference if self.early_window_frac > 0 else None


def protocol_with(protocol: FitProtocol | None = None, **overrides) -> FitProtocol:
    """`protocol` (default FitProtocol()) with the overrides that are not None (CLI flags)."""
    return replace(protocol or FitProtocol(), **{k: v for k, v in overrides.items() if v is not None})


# ----------------------------------------------------------------------------- the curve


def select_metric(frame: pd.DataFrame, protocol: FitProtocol) -> tuple[str, str]:
    """(column to fit, note saying why when it is not the protocol's first choice)."""
    if protocol.metric:
        if protocol.metric not in frame:
            raise ValueError(f"no {protocol.metric!r} column to fit")
        return protocol.metric, ""
    means = sorted((c for c in frame.columns if EVAL_MEAN.match(str(c))), key=lambda c: -int(c.split("@")[1]))
    note = f"no eval mean column: fitting the training reward {REWARD} (noisier)"
    for col in [*means, EVAL_PASS1]:
        if col in frame:
            n = int(frame[col].notna().sum())
            if n >= protocol.min_points:
                return col, ""
            note = f"{col} has {n} evaluations (< {protocol.min_points}): fitting {REWARD} instead"
    if REWARD not in frame:
        raise ValueError(f"no eval mean column and no {REWARD!r} column to fit")
    return REWARD, note


def x_axis(frame: pd.DataFrame, x: str, *, devices: float | None = None) -> tuple[pd.Series, str]:
    """The x values of a run and their axis label. devices (x="hours" only): hours from
    time/wall_s x this many devices, instead of the run's own compute/device_hours."""
    if x not in X_AXES:
        raise ValueError(f"x must be one of {sorted(X_AXES)}, not {x!r}")
    col, label = X_AXES[x]
    if x == "hours" and devices:
        col, label = "time/wall_s", f"device-hours ({devices:g} devices, given)"
    if col not in frame:
        raise ValueError(f"run has no {col!r} column, needed for x={x}")
    values = frame[col].astype(float)
    return (values / 3600 * devices if x == "hours" and devices else values), label


def bin_steps(raw: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Means over at most `bins` non-overlapping runs of consecutive steps (0: no binning)."""
    raw = raw.sort_values("step").reset_index(drop=True)
    n = len(raw)
    if bins <= 0 or n <= bins:
        return raw
    return raw.groupby(np.arange(n) * bins // n).mean().reset_index(drop=True)


def run_curve(frame: pd.DataFrame, protocol: FitProtocol, *, devices=None):
    """(raw, points, metric, note): raw has one row per step with a finite metric, points
    the rows the laws are fitted on (binned per-step values, or the eval rows as they are);
    both have columns step, x, y, entropy."""
    if "step" not in frame:
        raise ValueError("run has no 'step' column")
    metric, note = select_metric(frame, protocol)
    xs, _ = x_axis(frame, protocol.x, devices=devices)
    raw = pd.DataFrame(
        {
            "step": frame["step"].astype(float),
            "x": xs,
            "y": frame[metric].astype(float),
            "entropy": frame[ENTROPY].astype(float) if ENTROPY in frame else np.nan,
        }
    )
    raw = raw[np.isfinite(raw["x"]) & np.isfinite(raw["y"])].sort_values("step").reset_index(drop=True)
    return raw, bin_steps(raw, protocol.bins), metric, note


def base_value(x, y) -> float:
    """R0: the metric at zero compute (the base-model evaluation), else the first point."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not y.size:
        return NAN
    return float(y[x == 0].mean()) if (x == 0).any() else float(y[np.argmin(x)])


def final_value(x, y, frac: float) -> float:
    """Mean of y over the last `frac` of the x range seen (at least the last point)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not x.size:
        return NAN
    return float(y[x >= x.max() * (1 - frac)].mean())


# ----------------------------------------------------------------------------- sigmoid estimates


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
    x, y, _ = scaling._clean(x, y)
    if x is None:
        x, y = np.empty(0), np.empty(0)
    r0 = base_value(x, y) if r0 is None else r0
    cut = protocol.early_cut(reference if reference is not None else (x.max() if x.size else NAN))
    fit = scaling.fit_sigmoid(x, y, r0=r0, min_compute=cut)
    est = SigmoidEstimate(fit, [(x, y, r0)], cut, level=protocol.level)
    use = (x > 0) & (x >= (cut or 0))
    if fit.ok and protocol.n_boot and use.sum() >= 4:
        block = protocol.block_len or scaling.block_length(y[use] - fit.predict(x[use]))
        refit = _sigmoid_fitter(x, y, r0, cut)
        fits = scaling.resample_fits(refit, x[use], y[use], protocol.n_boot, protocol.seed, block)
        est.boot = np.array([[f.A, f.B, f.C_mid, f.R0] for f in fits if f.ok]).reshape(-1, 4)
        fit.intervals = scaling._percentiles(fits, fit.params, protocol.level)
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


# ----------------------------------------------------------------------------- whole runs


@dataclass
class RunFit:
    """All fits of one run. `raw` has one row per step with a finite metric, `points` the
    rows the laws were fitted on; both have columns step, x, y, entropy."""

    name: str
    x: str
    x_label: str
    y: str
    raw: pd.DataFrame
    points: pd.DataFrame
    estimate: SigmoidEstimate
    entropy: scaling.EntropyFit
    power: scaling.PowerFit
    backtests: dict[str, scaling.Backtest]
    protocol: FitProtocol
    backtest_frac: float | None = 0.5
    run_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sigmoid(self) -> scaling.SigmoidFit:
        return self.estimate.fit

    def band(self, grid):
        return self.estimate.band(grid)

    def to_dict(self) -> dict:
        laws = {f.law: scaling.fit_result_to_dict(f) for f in (self.entropy, self.power)}
        laws["sigmoid"] = self.estimate.to_dict()
        return json_safe(
            {
                "run": self.name,
                "run_dir": str(self.run_dir) if self.run_dir else None,
                "x": self.x,
                "x_label": self.x_label,
                "y": self.y,
                "protocol": asdict(self.protocol),
                "steps": len(self.raw),
                "points_fitted": len(self.points),
                "smoothing": "mean over non-overlapping bins of consecutive steps"
                if len(self.points) < len(self.raw)
                else "none",
                "laws": laws,
                "backtests": {
                    k: backtest_to_dict(b, k, self.backtest_frac) for k, b in self.backtests.items()
                },
                "notes": self.notes,
            }
        )


def backtest_to_dict(bt: scaling.Backtest, law: str, frac: float) -> dict:
    on = f"first {ENTROPY_BACKTEST_FRAC:.0%} of steps" if law == "entropy" else f"first {frac:.0%} of x"
    return json_safe(
        {
            "fitted_on": on,
            "n_fit": bt.n_fit,
            "n_test": bt.n_test,
            "rmse": bt.rmse,
            "final_error": bt.final_error,
            "delta": dict(bt.delta),
            "ok": bt.ok,
            "message": bt.message,
            "early_fit": scaling.fit_result_to_dict(bt.fit),
        }
    )


def json_safe(v):
    """NaN/inf -> None, numpy scalars -> Python, recursively (fits.json is strict JSON)."""
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_safe(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def fit_frame(
    frame: pd.DataFrame,
    name: str = "run",
    *,
    protocol: FitProtocol | None = None,
    backtest_frac: float | None = 0.5,
    devices: float | None = None,
    run_dir: str | Path | None = None,
    reference: float | None = None,
    x: str | None = None,
    y: str | None = None,
    bootstrap: int | None = None,
    bins: int | None = None,
    min_compute: float | None = None,
) -> RunFit:
    """Every law fitted to one run's metrics (one row per step) under the protocol.
    x, y (the metric), bootstrap, bins, min_compute: override those protocol fields (the CLI's
    flags). reference: the run's planned final x (default its last x), for the early window.
    backtest_frac: the share of x the quick backtests fit on (None: none; `rlscale backtest`
    is the full study)."""
    p = protocol_with(protocol, x=x, metric=y, n_boot=bootstrap, bins=bins, min_compute=min_compute)
    raw, pts, metric, note = run_curve(frame, p, devices=devices)
    _, x_label = x_axis(frame, p.x, devices=devices)
    cx, cy, h = (pts[c].to_numpy(float) for c in ("x", "y", "entropy"))
    reference = reference if reference is not None else (float(cx.max()) if cx.size else NAN)
    est = fit_sigmoid_protocol(cx, cy, p, reference=reference)
    cut = est.early_cut or 0.0
    above = cx >= cut
    ent = scaling.fit_entropy_law(h, cy, bootstrap=p.n_boot, seed=p.seed)
    # The power law is there for contrast only; no intervals (its bootstrap costs 5x the sigmoid's).
    pw = scaling.fit_power_law(cx[above], cy[above])
    backtests = {}
    if backtest_frac is not None:
        steps = pts["step"].to_numpy(float)
        sig_fn = partial(scaling.fit_sigmoid, r0=est.fit.R0, min_compute=est.early_cut)
        backtests = {
            "sigmoid": scaling.backtest(sig_fn, cx, cy, frac=backtest_frac, by="x", order=steps),
            "entropy": scaling.backtest(
                scaling.fit_entropy_law, h, cy, frac=ENTROPY_BACKTEST_FRAC, by="points", order=steps
            ),
            "power": scaling.backtest(
                scaling.fit_power_law, cx[above], cy[above], frac=backtest_frac, by="x", order=steps[above]
            ),
        }
    notes = [note] if note else []
    if not est.identified and est.fit.ok:
        notes.append(f"sigmoid: A not identified, A >= {est.A_lower:.4g} ({est.reason})")
    laws = (ent, pw) if not est.identified else (est.fit, ent, pw)  # the bound is said above
    notes += [f"{f.law}: {f.message}" for f in laws if f.message]
    return RunFit(
        name=name,
        x=p.x,
        x_label=x_label,
        y=metric,
        raw=raw,
        points=pts,
        estimate=est,
        entropy=ent,
        power=pw,
        backtests=backtests,
        protocol=p,
        backtest_frac=backtest_frac,
        run_dir=Path(run_dir) if run_dir else None,
        notes=notes,
    )


@dataclass
class FitReport:
    runs: list[RunFit]
    comparisons: list[Comparison]


def run_labels(run_dirs) -> list[str]:
    """Short unique names: the directory name, or parent/name where names repeat."""
    paths = [Path(d).resolve() for d in run_dirs]
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def fit_runs(run_dirs, **kwargs) -> FitReport:
    """fit_frame on each run directory (kwargs as fit_frame), then pairwise comparisons
    (one run per recipe: the comparison says it cannot decide, see compare_recipes)."""
    fits = [
        fit_frame(load_metrics(d), name, run_dir=d, **kwargs)
        for d, name in zip(run_dirs, run_labels(run_dirs))
    ]
    return FitReport(fits, compare_fits([(f.name, f.estimate) for f in fits]))


def save_fits(report: FitReport, filename: str = "fits.json") -> list[Path]:
    """fits.json in each run directory (with the verdicts that involve that run)."""
    written = []
    for fit in report.runs:
        if fit.run_dir is None:
            continue
        d = fit.to_dict()
        d["comparisons"] = [c.to_dict() for c in report.comparisons if fit.name in (c.a, c.b)]
        path = fit.run_dir / filename
        path.write_text(json.dumps(d, indent=2))
        written.append(path)
    return written


# ----------------------------------------------------------------------------- live refit

LIVE_KEYS = (
    "fit/ok", "fit/identified", "fit/predicted_A", "fit/predicted_A_lo", "fit/predicted_A_hi",
    "fit/A_lower", "fit/B", "fit/C_mid", "fit/residual", "fit/predicted_final_reward",
    "fit/predicted_gain", "fit/headroom", "fit/gain_2x", "fit/gain_2x_lo", "fit/gain_2x_hi",
    "fit/early_stop", "fit/fits_eval", "fit/entropy_a", "fit/entropy_b", "fit/entropy_ceiling",
    "fit/entropy_collapse_step", "fit/entropy_collapse_warning", "fit/entropy_collapsed",
)  # fmt: skip


def live_refit(
    frame: pd.DataFrame,
    planned_final_compute: float | None = None,
    x: str | None = None,
    *,
    protocol: FitProtocol | None = None,
    planned_steps: int | None = None,
    early_stop_min_gain: float | None = None,
    entropy_threshold: float | None = None,
    devices: float | None = None,
    bootstrap: int | None = None,
    bins: int | None = None,
) -> dict[str, float]:
    """Refit a run in progress under the protocol; returns `fit/*` metrics to log.

    planned_final_compute: the run's planned total, in x units; when None it is
    extrapolated linearly from the current step to planned_steps. It sets the early window.
    x, bootstrap, bins override those protocol fields (default protocol: 50 resamples).

    Early stop (`fit/early_stop` = 1): the asymptote is identified and even the upper end of
    the interval of the gain from doubling the compute so far (`fit/gain_2x`) is below
    early_stop_min_gain. Unlike the gain to the planned end, that gain does not shrink to
    zero near the end by itself. Entropy: `fit/entropy_collapse_warning` = 1 while entropy
    is still above entropy_threshold (default 10% of its mean over the first 5 steps) and on
    course to fall below it before planned_steps; `fit/entropy_collapsed` = 1 once below.
    Never raises on bad data: what cannot be fitted is NaN. About 0.3 s with 50 resamples.
    """
    out = dict.fromkeys(LIVE_KEYS, NAN)
    out.update({"fit/ok": 0.0, "fit/early_stop": 0.0})
    p = protocol_with(protocol or FitProtocol(n_boot=50), x=x, n_boot=bootstrap, bins=bins)
    try:
        raw, pts, metric, _ = run_curve(frame, p, devices=devices)
    except (ValueError, KeyError, TypeError):  # no step, x or metric column yet
        return out
    if raw.empty:
        return out
    x_now, step_now = float(raw["x"].iloc[-1]), float(raw["step"].iloc[-1])
    final = planned_final_compute
    if final is None and planned_steps and step_now > 0:
        final = x_now * planned_steps / step_now
    est = fit_sigmoid_protocol(pts["x"], pts["y"], p, reference=final if final else x_now)
    sig = est.fit
    out["fit/fits_eval"] = float(metric != REWARD)
    out["fit/ok"] = float(sig.ok)
    if sig.ok:
        lo, hi = est.A_interval
        A = (sig.A, lo, hi) if est.identified else (NAN, NAN, NAN)  # a bound is not a prediction
        out.update(dict(zip(("fit/predicted_A", "fit/predicted_A_lo", "fit/predicted_A_hi"), A)))
        out.update({"fit/identified": float(est.identified), "fit/A_lower": est.A_lower})
        out.update({"fit/B": sig.B, "fit/C_mid": sig.C_mid, "fit/residual": sig.residual})
        if final is not None:
            gain = scaling.predict_remaining_gain(sig, x_now, final)
            out.update(
                {
                    "fit/predicted_final_reward": gain.reward_final,
                    "fit/predicted_gain": gain.gain,
                    "fit/headroom": gain.headroom,
                }
            )
        out["fit/gain_2x"] = float(sig.predict(2 * x_now) - sig.predict(x_now))
        curves = est.curves_at([x_now, 2 * x_now])
        if len(curves) > 1:
            q = 50 * (1 - p.level)
            out["fit/gain_2x_lo"], out["fit/gain_2x_hi"] = np.nanpercentile(
                curves[:, 1] - curves[:, 0], [q, 100 - q]
            )
        stop = (
            early_stop_min_gain is not None and est.identified and out["fit/gain_2x_hi"] < early_stop_min_gain
        )
        out["fit/early_stop"] = float(stop)
    ent = scaling.fit_entropy_law(pts["entropy"], pts["y"])
    if ent.ok:
        out.update({"fit/entropy_a": ent.a, "fit/entropy_b": ent.b, "fit/entropy_ceiling": ent.ceiling})
    if ENTROPY in frame and planned_steps:
        steps, h = frame["step"].to_numpy(float), frame[ENTROPY].to_numpy(float)
        if np.isfinite(h).any():
            threshold = entropy_threshold or 0.1 * float(np.nanmean(h[:5]))
            at = scaling.entropy_collapse_step(steps, h, planned_steps, threshold)
            out["fit/entropy_collapse_step"] = float(at) if at is not None else NAN
            now = float(np.nanmean(h[np.isfinite(h)][-5:]))
            out["fit/entropy_collapsed"] = float(now < threshold)
            out["fit/entropy_collapse_warning"] = float(now >= threshold and at is not None)
    return {k: float(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- printing


def _fmt(v: float) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _params_text(fit: scaling.Fit, est: SigmoidEstimate | None = None) -> str:
    from rich.markup import escape

    if not fit.ok:
        return f"[red]failed[/]: {escape(fit.message)}"
    lines = []
    for p in fit.params:
        line = f"{p} = {_fmt(getattr(fit, p))}"
        if p in fit.intervals:
            lo, hi = fit.intervals[p]
            line += f"  [dim][{_fmt(lo)}, {_fmt(hi)}][/]"
        lines.append(line)
    if est is not None and not est.identified:  # a bound in place of the number
        lines[0] = f"[yellow]A >= {_fmt(est.A_lower)}: not identified ({escape(est.reason)})[/]"
    elif fit.message:  # a fit that worked but hit a bound: say so next to the numbers
        lines.append(f"[yellow]{escape(fit.message)}[/]")
    return "\n".join(lines)


def fits_table(report: FitReport):
    """A rich Table: one row per run and law."""
    from rich.markup import escape
    from rich.table import Table

    x_labels = sorted({f.x_label for f in report.runs})
    table = Table(title=f"scaling fits ({report.runs[0].y} vs {', '.join(x_labels)})", show_lines=True)
    for col, kw in (
        ("run", {}),
        ("law", {}),
        ("parameters  [95% CI]", {}),
        ("n", {"justify": "right"}),
        ("RMSE", {"justify": "right"}),
        ("backtest on", {}),
        ("bt RMSE", {"justify": "right"}),
        ("bt final err", {"justify": "right"}),
        ("bt |Δ|", {"justify": "right"}),
    ):
        table.add_column(col, **kw)
    for run in report.runs:
        for law in (run.sigmoid, run.entropy, run.power):
            bt = run.backtests.get(law.law)
            text = _params_text(law, run.estimate if law.law == "sigmoid" else None)
            if bt is None:
                table.add_row(escape(run.name), law.law, text, str(law.n), _fmt(law.residual))
                continue
            key = "ceiling" if law.law == "entropy" else "A"
            on = backtest_to_dict(bt, law.law, run.backtest_frac)["fitted_on"]
            table.add_row(
                escape(run.name),
                law.law,
                text,
                str(law.n),
                _fmt(law.residual),
                on if bt.ok else escape(f"{on}: {bt.message}"),
                _fmt(bt.rmse),
                _fmt(bt.final_error),
                f"{key} {_fmt(bt.delta.get(key, math.nan))}",
            )
    return table


def print_fits(report: FitReport, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: do not squeeze the table to 80 columns
            console = Console(width=200)
    console.print(fits_table(report))
    for run in report.runs:
        for note in run.notes:
            console.print(f"[dim]{escape(run.name)}: {escape(note)}[/]")
    for c in report.comparisons:
        console.print(f"[bold]{escape(c.a)} vs {escape(c.b)}[/]: {escape(c.result.verdict)}")
