"""The fitting protocol and a run's curve under it. The laws and fitters live in
`rlscale.scaling`; the sigmoid under the protocol and recipe comparisons in
`rlscale.fit_estimates`; fits of whole runs (fits.json, the table) in `rlscale.run_fits`; the
refit of a run in progress in `rlscale.live_refit`.

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
  (`scaling_stats.resample_fits`, block length from the residuals' autocorrelation), because
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

X axes (`rlscale.metric_names.X_AXES`, the one list of them): flops = `compute/flops`, steps =
`step`, tokens = `tokens/generated`, samples = `samples`, wall = `time/wall_s` (seconds), hours
= `compute/device_hours` as the run's accounting logged it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from rlscale import metric_names as M
from rlscale.metric_names import X_AXES

REWARD = M.REWARD
ENTROPY = M.ENTROPY
EVAL_PASS1 = M.pass_at(1)  # unbiased pass@1 = mean accuracy over the k samples = mean@k
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


def evaluated_x(frame: pd.DataFrame, xs: pd.Series, x: str) -> pd.Series:
    """The x of the weights each evaluation saw. An evaluation logged on step s's row ran
    before that step's update (its `eval/train_flops` is below the row's `compute/flops`), so
    its x is the previous row's: the base model sits at zero compute, not at step 1's. For
    x=flops it is `eval/train_flops` itself. Rows without that column keep their own x."""
    if M.EVAL_TRAIN_FLOPS not in frame or M.FLOPS not in frame:
        return xs
    trained = frame[M.EVAL_TRAIN_FLOPS].astype(float)
    if x == "flops":
        return xs.where(trained.isna(), trained)
    order = frame["step"].astype(float).sort_values().index
    previous = xs.loc[order].shift(1).fillna(0.0).reindex(xs.index)
    before_update = trained < frame[M.FLOPS].astype(float)
    return xs.where(~before_update, previous)


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
    if metric.startswith("eval/"):
        xs = evaluated_x(frame, xs, protocol.x)
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
