"""Scaling-law fits of whole runs: run directories (or metric frames) in, fit results out.

For each run: the compute-reward sigmoid with bootstrap intervals and a band for the
extrapolated curve, the entropy-reward law, the power law for contrast, and backtests
(fit on the early part of the run, score the prediction on the rest). With several runs,
ScaleRL's pairwise recipe comparison. `live_refit` is the same, cut down, for a run in
progress. The laws and fitters themselves live in `rlscale.scaling`.

Smoothing. Rewards are per-step batch means, noisy step to step. We fit on non-overlapping
bins of consecutive steps (at most `bins`, default 100, points per run): each bin mean is
what a periodic evaluation on bin-size x batch prompts would measure, which is what ScaleRL
fits on. Bins keep the points independent, so the point bootstrap stays honest (a rolling
mean correlates neighbours and shrinks the intervals); they are evenly spaced in steps like
ScaleRL's evaluations (binning in log-compute would let the noisy start weigh as much as
the whole second half); and they keep a 200-resample bootstrap around a second per run.
`bins=0` fits every step as it is.

X axes (`X_AXES`): flops = `compute/flops`, steps = `step`, tokens = `tokens/generated`,
samples = `samples`, wall = `time/wall_s` (seconds), hours = device-hours, that is
`time/wall_s` / 3600 x the run's device count (see `device_count`).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rlscale import scaling
from rlscale.telemetry import load_metrics

# name -> (metric column, axis label); "hours" is derived from time/wall_s
X_AXES = {
    "flops": ("compute/flops", "compute (FLOPs)"),
    "hours": ("time/wall_s", "device-hours"),
    "steps": ("step", "step"),
    "tokens": ("tokens/generated", "generated tokens"),
    "samples": ("samples", "samples"),
    "wall": ("time/wall_s", "wall-clock time (s)"),
}
REWARD = "reward/mean"
ENTROPY = "entropy/mean"
ENTROPY_BACKTEST_FRAC = 0.15  # Cui et al. predict the rest of the run from its first 15% of steps


# ----------------------------------------------------------------------------- x axes


def device_count(frame: pd.DataFrame, run_dir: str | Path | None = None, devices: float | None = None):
    """(count, kind, where it came from) for device-hours, first found of: `devices` given;
    the metric columns `system/gpus`, then `system/cpus` (constant per run); the Ray
    reservation in the run's config.yaml (GPUs if any `ray.*gpus` key is > 0, else
    rollout.workers x ray.worker_cpus + ray.learner_cpus CPUs); else 1 (plain hours)."""
    if devices:
        return float(devices), "device", "given"
    for col, kind in (("system/gpus", "GPU"), ("system/cpus", "CPU")):
        if col in frame and frame[col].notna().any() and frame[col].max() > 0:
            return float(frame[col].max()), kind, col
    cfg_path = Path(run_dir) / "config.yaml" if run_dir else None
    if cfg_path and cfg_path.is_file():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        ray_cfg, rollout = cfg.get("ray") or {}, cfg.get("rollout") or {}
        gpus = sum(float(v or 0) for k, v in ray_cfg.items() if k.endswith("gpus"))
        if gpus > 0:
            return gpus, "GPU", "config.yaml ray.*gpus"
        cpus = rollout.get("workers", 1) * ray_cfg.get("worker_cpus", 1.0) + ray_cfg.get("learner_cpus", 1.0)
        return float(cpus), "CPU", "config.yaml Ray reservation"
    return 1.0, "", "no device count known"


def x_axis(frame: pd.DataFrame, x: str, *, run_dir=None, devices=None) -> tuple[pd.Series, str]:
    """The x values of a run and their axis label."""
    if x not in X_AXES:
        raise ValueError(f"x must be one of {sorted(X_AXES)}, not {x!r}")
    col, label = X_AXES[x]
    if col not in frame:
        raise ValueError(f"run has no {col!r} column, needed for x={x}")
    values = frame[col].astype(float)
    if x == "hours":
        n, kind, source = device_count(frame, run_dir, devices)
        values = values / 3600 * n
        label = f"{kind}-hours ({n:g} {kind or 'device'}s, {source})" if kind else "hours"
    return values, label


# ----------------------------------------------------------------------------- smoothing


def bin_steps(raw: pd.DataFrame, bins: int) -> pd.DataFrame:
    """Means over at most `bins` non-overlapping runs of consecutive steps (0: no binning)."""
    raw = raw.sort_values("step").reset_index(drop=True)
    n = len(raw)
    if bins <= 0 or n <= bins:
        return raw
    return raw.groupby(np.arange(n) * bins // n).mean().reset_index(drop=True)


# ----------------------------------------------------------------------------- results


@dataclass
class RunFit:
    """All fits of one run. `raw` has one row per step, `points` the binned rows the laws
    were fitted on; both have columns step, x, y, entropy."""

    name: str
    x: str
    x_label: str
    y: str
    raw: pd.DataFrame
    points: pd.DataFrame
    sigmoid: scaling.SigmoidFit
    entropy: scaling.EntropyFit
    power: scaling.PowerFit
    backtests: dict[str, scaling.Backtest]
    boot: np.ndarray  # (n, 4) bootstrap sigmoid params A, B, C_mid, R0 (successful refits)
    backtest_frac: float | None = 0.5
    run_dir: Path | None = None
    notes: list[str] = field(default_factory=list)

    def band(self, grid, level=95.0):
        """Pointwise bootstrap band of the sigmoid on `grid` (NaN when not bootstrapped)."""
        grid = np.asarray(grid, float)
        if not len(self.boot):
            return np.full_like(grid, np.nan), np.full_like(grid, np.nan)
        curves = scaling.sigmoid(grid[None, :], *(self.boot[:, k, None] for k in range(4)))
        lo, hi = np.nanpercentile(curves, [(100 - level) / 2, (100 + level) / 2], axis=0)
        return lo, hi

    def to_dict(self) -> dict:
        laws = {f.law: scaling.fit_result_to_dict(f) for f in (self.sigmoid, self.entropy, self.power)}
        return json_safe(
            {
                "run": self.name,
                "run_dir": str(self.run_dir) if self.run_dir else None,
                "x": self.x,
                "x_label": self.x_label,
                "y": self.y,
                "steps": len(self.raw),
                "points_fitted": len(self.points),
                "smoothing": "mean over non-overlapping bins of consecutive steps"
                if len(self.points) < len(self.raw)
                else "none (per-step means)",
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


# ----------------------------------------------------------------------------- fitting


def _sigmoid_with_bootstrap(x, y, *, min_compute, n, seed):
    """fit_sigmoid plus the bootstrap refits themselves (fit_sigmoid keeps only their
    percentiles; the extrapolation band needs the curves). Same resampling: whole run,
    start included, points drawn with replacement."""
    fit = scaling.fit_sigmoid(x, y, min_compute=min_compute)
    if not n or not fit.ok:
        return fit, np.empty((0, 4))
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    rng = np.random.default_rng(seed)
    refits = [
        scaling.fit_sigmoid(x[i], y[i], min_compute=min_compute) for i in rng.integers(0, x.size, (n, x.size))
    ]
    boot = np.array([[f.A, f.B, f.C_mid, f.R0] for f in refits if f.ok]).reshape(-1, 4)
    if len(boot):
        lo, hi = np.percentile(boot[:, :3], [2.5, 97.5], axis=0)
        fit.intervals = {p: (float(a), float(b)) for p, a, b in zip(fit.params, lo, hi)}
    return fit, boot


def fit_frame(
    frame: pd.DataFrame,
    name: str = "run",
    *,
    x: str = "flops",
    y: str = REWARD,
    bootstrap: int = 200,
    min_compute: float | None = None,
    backtest_frac: float | None = 0.5,
    bins: int = 100,
    devices: float | None = None,
    run_dir: str | Path | None = None,
    seed: int = 0,
) -> RunFit:
    """Fit every law to one run's metrics (one row per step). min_compute is in x units and
    applies to the compute laws (sigmoid, power); R0 still comes from the first points.
    backtest_frac: the share of x the compute-law backtests fit on; None: no backtests."""
    if y not in frame:
        raise ValueError(f"{name}: no {y!r} column to fit")
    xs, x_label = x_axis(frame, x, run_dir=run_dir, devices=devices)
    raw = pd.DataFrame(
        {
            "step": frame["step"].astype(float),
            "x": xs,
            "y": frame[y].astype(float),
            "entropy": frame[ENTROPY].astype(float) if ENTROPY in frame else np.nan,
        }
    )
    pts = bin_steps(raw, bins)
    cx, cy, h, steps = (pts[c].to_numpy(float) for c in ("x", "y", "entropy", "step"))
    above = cx >= min_compute if min_compute is not None else np.ones(cx.size, bool)

    sig, boot = _sigmoid_with_bootstrap(cx, cy, min_compute=min_compute, n=bootstrap, seed=seed)
    ent = scaling.fit_entropy_law(h, cy, bootstrap=bootstrap, seed=seed)
    # The power law is there for contrast only; no intervals (its bootstrap costs 5x the sigmoid's).
    pw = scaling.fit_power_law(cx[above], cy[above])
    backtests = {} if backtest_frac is None else _backtests(pts, above, min_compute, backtest_frac)
    return RunFit(
        name=name,
        x=x,
        x_label=x_label,
        y=y,
        raw=raw,
        points=pts,
        sigmoid=sig,
        entropy=ent,
        power=pw,
        backtests=backtests,
        boot=boot,
        backtest_frac=backtest_frac,
        run_dir=Path(run_dir) if run_dir else None,
        notes=[f"{f.law}: {f.message}" for f in (sig, ent, pw) if f.message],
    )


def _backtests(pts: pd.DataFrame, above, min_compute, frac) -> dict[str, scaling.Backtest]:
    """Compute laws: fit on the first `frac` of x; entropy law: on the first 15% of steps."""
    cx, cy, h, steps = (pts[c].to_numpy(float) for c in ("x", "y", "entropy", "step"))
    sig_fn = partial(scaling.fit_sigmoid, min_compute=min_compute)
    return {
        "sigmoid": scaling.backtest(sig_fn, cx, cy, frac=frac, by="x", order=steps),
        "entropy": scaling.backtest(
            scaling.fit_entropy_law, h, cy, frac=ENTROPY_BACKTEST_FRAC, by="points", order=steps
        ),
        "power": scaling.backtest(
            scaling.fit_power_law, cx[above], cy[above], frac=frac, by="x", order=steps[above]
        ),
    }


@dataclass
class Comparison:
    a: str
    b: str
    result: scaling.RecipeComparison

    def to_dict(self) -> dict:
        return json_safe({"a": self.a, "b": self.b, **asdict(self.result)})


@dataclass
class FitReport:
    runs: list[RunFit]
    comparisons: list[Comparison]


def run_labels(run_dirs) -> list[str]:
    """Short unique names: the directory name, or parent/name where names repeat."""
    paths = [Path(d).resolve() for d in run_dirs]
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def compare_fits(items) -> list[Comparison]:
    """ScaleRL's rule on every pair of (name, SigmoidFit, x, y): higher A wins; A within
    0.02: refit with a shared A, higher B wins."""
    return [
        Comparison(na, nb, scaling.compare_recipes(fa, fb, (xa, ya), (xb, yb), names=(na, nb)))
        for (na, fa, xa, ya), (nb, fb, xb, yb) in itertools.combinations(items, 2)
    ]


def compare_all(fits: list[RunFit]) -> list[Comparison]:
    return compare_fits([(f.name, f.sigmoid, f.points["x"], f.points["y"]) for f in fits])


def fit_runs(run_dirs, *, x: str = "flops", **kwargs) -> FitReport:
    """fit_frame on each run directory (kwargs as fit_frame), then pairwise comparisons."""
    fits = [
        fit_frame(load_metrics(d), name, x=x, run_dir=d, **kwargs)
        for d, name in zip(run_dirs, run_labels(run_dirs))
    ]
    return FitReport(fits, compare_all(fits))


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


def live_refit(
    frame: pd.DataFrame,
    planned_final_compute: float | None = None,
    x: str = "flops",
    *,
    planned_steps: int | None = None,
    bootstrap: int = 50,
    bins: int = 100,
    entropy_threshold: float | None = None,
    devices: float | None = None,
) -> dict[str, float]:
    """Refit a run in progress; returns `fit/*` metrics to log with the step record.

    planned_final_compute: the run's planned total, in x units; when None it is
    extrapolated linearly from the current step to planned_steps. entropy_threshold:
    where entropy counts as collapsed (default 10% of the mean entropy over the first 5
    steps). Never raises on bad data: what cannot be fitted is NaN. About 0.5 s with the
    defaults (100 bins, 50 resamples), so call it every few dozen steps, not every step.
    """
    nan = float("nan")
    out = dict.fromkeys(
        ["fit/ok", "fit/predicted_A", "fit/predicted_A_lo", "fit/predicted_A_hi", "fit/B", "fit/C_mid",
         "fit/residual", "fit/predicted_final_reward", "fit/predicted_gain", "fit/headroom",
         "fit/entropy_a", "fit/entropy_b", "fit/entropy_ceiling", "fit/entropy_collapse_step"],
        nan,
    )  # fmt: skip
    if frame is None or len(frame) == 0 or REWARD not in frame or "step" not in frame:
        out["fit/ok"] = 0.0
        return out
    try:
        fit = fit_frame(frame, x=x, bootstrap=bootstrap, bins=bins, devices=devices, backtest_frac=None)
    except ValueError:  # the x column is missing
        out["fit/ok"] = 0.0
        return out
    sig, ent = fit.sigmoid, fit.entropy
    out["fit/ok"] = float(sig.ok)
    if sig.ok:
        lo, hi = sig.intervals.get("A", (nan, nan))
        out.update({"fit/predicted_A": sig.A, "fit/predicted_A_lo": lo, "fit/predicted_A_hi": hi})
        out.update({"fit/B": sig.B, "fit/C_mid": sig.C_mid, "fit/residual": sig.residual})
        x_now, step_now = float(fit.raw["x"].iloc[-1]), float(fit.raw["step"].iloc[-1])
        final = planned_final_compute
        if final is None and planned_steps and step_now > 0:
            final = x_now * planned_steps / step_now
        if final is not None:
            gain = scaling.predict_remaining_gain(sig, x_now, final)
            out.update(
                {
                    "fit/predicted_final_reward": gain.reward_final,
                    "fit/predicted_gain": gain.gain,
                    "fit/headroom": gain.headroom,
                }
            )
    if ent.ok:
        out.update({"fit/entropy_a": ent.a, "fit/entropy_b": ent.b, "fit/entropy_ceiling": ent.ceiling})
    h = fit.raw["entropy"].to_numpy(float)
    if planned_steps and np.isfinite(h).any():
        threshold = entropy_threshold or 0.1 * float(np.nanmean(h[:5]))
        at = scaling.entropy_collapse_step(fit.raw["step"], h, planned_steps, threshold)
        out["fit/entropy_collapse_step"] = float(at) if at is not None else nan
    return {k: float(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- printing


def _fmt(v: float) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.4g}"


def _params_text(fit: scaling.Fit) -> str:
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
    if fit.message:  # a fit that worked but hit a bound: say so next to the numbers
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
            if bt is None:
                table.add_row(escape(run.name), law.law, _params_text(law), str(law.n), _fmt(law.residual))
                continue
            key = "ceiling" if law.law == "entropy" else "A"
            on = backtest_to_dict(bt, law.law, run.backtest_frac)["fitted_on"]
            table.add_row(
                escape(run.name),
                law.law,
                _params_text(law),
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
    for c in report.comparisons:
        console.print(f"[bold]{escape(c.a)} vs {escape(c.b)}[/]: {escape(c.result.verdict)}")
