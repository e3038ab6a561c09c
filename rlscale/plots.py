"""Plots of one or several runs, overlaid, one colour per run.

Always: reward and entropy against steps, reward against entropy. With fits
(`rlscale.run_fits.RunFit`): reward against compute with the fitted sigmoid, its bootstrap
band and its extrapolation to 10x the compute seen, the asymptote A dashed (dotted at its
lower bound when the protocol does not identify it); the entropy law
and its ceiling b - a on the reward-entropy plot; the linearised sigmoid. With `eval/pass@k`
columns: pass@k curves. `plot_groups` draws a sweep's mean-over-seeds curves.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from rlscale.evaluation import pass_at_k_columns  # noqa: E402
from rlscale.telemetry import load_metrics  # noqa: E402

EXTRAPOLATE = 10.0  # the fitted sigmoid is drawn out to this multiple of the largest x seen
ENTROPY_LABEL = "policy entropy (nats/token)"


def _smooth(series: pd.Series) -> pd.Series:
    return series.rolling(max(1, len(series) // 20), min_periods=1, center=True).mean()


def _color(i: int) -> str:
    return f"C{i % 10}"


def _legend(ax, n_entries: int, loc="best", **kw):
    """Inside the axes for a few entries, outside on the right for many (sweeps)."""
    if not ax.get_legend_handles_labels()[0]:
        return None
    if n_entries > 5:
        return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, **kw)
    return ax.legend(loc=loc, fontsize=7, **kw)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- per-step curves


def _step_curve(ax, runs: dict[str, pd.DataFrame], y: str, ylabel: str) -> None:
    for i, (label, frame) in enumerate(runs.items()):
        if y not in frame:
            continue
        line = ax.plot(frame["step"], _smooth(frame[y]), color=_color(i), label=label)[0]
        ax.plot(frame["step"], frame[y], color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        _legend(ax, len(runs))


def _reward_vs_entropy(ax, runs: dict[str, pd.DataFrame], fits: dict | None) -> None:
    for i, (label, frame) in enumerate(runs.items()):
        fit = (fits or {}).get(label)
        if fit is None:
            if {"entropy/mean", "reward/mean"} <= set(frame):
                ax.scatter(
                    frame["entropy/mean"], frame["reward/mean"], s=8, alpha=0.6, color=_color(i), label=label
                )
            continue
        pts, law = fit.points, fit.entropy
        ax.scatter(
            pts["entropy"], pts["y"], s=10, alpha=0.6, color=_color(i), label=label if not law.ok else None
        )
        if law.ok:
            h = np.linspace(0.0, np.nanmax(pts["entropy"]) * 1.05, 200)
            ax.plot(
                h,
                law.predict(h),
                color=_color(i),
                label=f"{label}: R = -{law.a:.3f} e^H + {law.b:.3f}, ceiling b-a = {law.ceiling:.3f}",
            )
            ax.axhline(law.ceiling, color=_color(i), linestyle="--", linewidth=1)
    ax.set_xlim(left=0)
    ax.invert_xaxis()  # entropy falls as training goes on: time runs left to right
    ax.set_xlabel(f"{ENTROPY_LABEL}  (training proceeds →)")
    ax.set_ylabel("mean reward")
    ax.grid(alpha=0.3)
    if fits:
        ax.set_title("reward vs entropy: R = -a exp(H) + b (Cui et al.); dashed: ceiling b - a", fontsize=9)
    _legend(ax, len(runs), loc="lower right")


# ----------------------------------------------------------------------------- fitted curves


def _sigmoid_curve(ax, fit, color, *, band=True) -> None:
    """The fit over the data (solid), its extrapolation (dotted), band, asymptote (dashed)."""
    sig, x = fit.sigmoid, fit.raw["x"].to_numpy(float)
    x = x[np.isfinite(x) & (x > 0)]
    if not sig.ok or not x.size:
        return
    grid = np.geomspace(x.min(), EXTRAPOLATE * x.max(), 300)
    seen = grid <= x.max()
    ax.plot(grid[seen], sig.predict(grid[seen]), color=color, linewidth=2)
    ax.plot(grid[~seen], sig.predict(grid[~seen]), color=color, linewidth=2, linestyle=":")
    if band:
        lo, hi = fit.band(grid)
        if np.isfinite(lo).any():
            ax.fill_between(grid, lo, hi, color=color, alpha=0.15, linewidth=0)
    # an unidentified asymptote is drawn at its lower bound, dotted: a bound, not a value
    est = fit.estimate
    a, style = (sig.A, "--") if est.identified else (est.A_lower, ":")
    ax.axhline(a, color=color, linestyle=style, linewidth=1)


def _reward_vs_compute(ax, fits: dict) -> None:
    for i, (label, fit) in enumerate(fits.items()):
        keep = fit.raw["x"] > 0
        ax.plot(fit.raw["x"][keep], fit.raw["y"][keep], color=_color(i), alpha=0.2, linewidth=0.8)
        sig = fit.sigmoid
        if sig.ok:
            text = f"{label}: {fit.estimate.asymptote_text()}, B={sig.B:.2f}, C_mid={sig.C_mid:.3g}"
        else:
            text = f"{label}: no fit ({sig.message})"
        pts = fit.points[fit.points["x"] > 0]
        ax.plot(pts["x"], pts["y"], "o", markersize=3, color=_color(i), label=text)
        _sigmoid_curve(ax, fit, _color(i))
    ax.set_xscale("log")
    ax.set_xlabel(next(iter(fits.values())).x_label)
    ax.set_ylabel(f"{next(iter(fits.values())).y}")
    ax.grid(alpha=0.3, which="both")
    ax.set_title("reward vs compute: sigmoid fit (ScaleRL)", fontsize=9)
    runs_legend = _legend(ax, len(fits), loc="lower right")
    styles = [
        Line2D([], [], color="gray", linewidth=2, label="fit"),
        Line2D(
            [], [], color="gray", linewidth=2, linestyle=":", label=f"extrapolation (to {EXTRAPOLATE:g}x)"
        ),
        Patch(color="gray", alpha=0.25, label="95% bootstrap band"),
        Line2D([], [], color="gray", linestyle="--", linewidth=1, label="asymptote A"),
        Line2D([], [], color="gray", linestyle=":", linewidth=1, label="lower bound of A (not identified)"),
    ]
    if runs_legend is not None:
        ax.add_artist(runs_legend)
    ax.legend(handles=styles, loc="upper left", fontsize=7)


def _linearized(ax, fits: dict) -> None:
    for i, (label, fit) in enumerate(fits.items()):
        sig = fit.sigmoid
        if not sig.ok:
            continue
        logc, ylin = sig.linearize(fit.points["x"], fit.points["y"])
        ax.scatter(np.exp(logc), ylin, s=10, alpha=0.6, color=_color(i))
        grid = np.geomspace(np.exp(np.nanmin(logc)), EXTRAPOLATE * np.exp(np.nanmax(logc)), 50)
        ax.plot(
            grid,
            sig.B * (np.log(sig.C_mid) - np.log(grid)),
            color=_color(i),
            label=f"{label}: slope -B = -{sig.B:.2f}, zero at C_mid = {sig.C_mid:.3g}",
        )
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(next(iter(fits.values())).x_label)
    ax.set_ylabel("log((A - R0) / (R - R0) - 1)")
    ax.set_title("linearised sigmoid: a straight line when the law holds", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    _legend(ax, len(fits), loc="upper right")


def _pass_at_k(axes, runs: dict[str, pd.DataFrame]) -> None:
    left, right = axes
    for i, (label, frame) in enumerate(runs.items()):
        cols = pass_at_k_columns(frame.columns)
        if not cols:
            continue
        evals = frame.dropna(subset=list(cols.values()), how="all")
        ks = np.array(list(cols))
        for row, style, when in ((evals.iloc[0], "--", "first"), (evals.iloc[-1], "-", "last")):
            vals = row[list(cols.values())].to_numpy(float)
            ax_label = f"{label}, step {int(row['step'])} ({when} eval)"
            left.plot(ks, vals, style, marker="o", markersize=3, color=_color(i), label=ax_label)
        kmax = int(ks.max())
        right.plot(
            evals["step"], evals[cols[1]] if 1 in cols else np.nan, "-", color=_color(i), label=f"{label}"
        )
        right.plot(evals["step"], evals[cols[kmax]], "--", color=_color(i))
    left.set_xscale("log", base=2)
    all_ks = sorted({k for frame in runs.values() for k in pass_at_k_columns(frame.columns)})
    left.set_xticks(all_ks, [str(k) for k in all_ks])
    left.set_xlabel("k (samples per task)")
    left.set_ylabel("pass@k")
    left.set_title("pass@k at the first (dashed) and last (solid) evaluation", fontsize=9)
    right.set_xlabel("step")
    right.set_ylabel("pass@k")
    right.set_title("pass@1 (solid) and pass@k_max (dashed) over training", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        _legend(ax, len(ax.get_legend_handles_labels()[0]), loc="lower right")


# ----------------------------------------------------------------------------- entry points


def plot_runs(runs: dict[str, pd.DataFrame], out_dir: str | Path, *, fits: dict | None = None) -> list[Path]:
    """PNG files in out_dir, every run overlaid; returns the files written. fits (name ->
    rlscale.run_fits.RunFit, same names as runs) adds the fitted-law plots."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, y, ylabel in (
        ("reward_vs_step", "reward/mean", "mean reward"),
        ("entropy_vs_step", "entropy/mean", ENTROPY_LABEL),
    ):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        _step_curve(ax, runs, y, ylabel)
        written.append(_save(fig, out_dir / f"{stem}.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    _reward_vs_entropy(ax, runs, fits)
    written.append(_save(fig, out_dir / "reward_vs_entropy.png"))

    if fits:
        for stem, draw in (("reward_vs_compute", _reward_vs_compute), ("sigmoid_linearized", _linearized)):
            fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
            draw(ax, fits)
            written.append(_save(fig, out_dir / f"{stem}.png"))

    if any(pass_at_k_columns(frame.columns) for frame in runs.values()):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
        _pass_at_k(axes, runs)
        written.append(_save(fig, out_dir / "pass_at_k.png"))
    return written


def plot_run_dirs(
    run_dirs, out_dir: str | Path, *, x: str = "flops", bootstrap: int = 200, **fit_kw
) -> list[Path]:
    """Load, fit (no backtests) and plot several run directories together."""
    from rlscale.run_fits import fit_frame, run_labels

    runs, fits = {}, {}
    for run_dir, name in zip(run_dirs, run_labels(run_dirs)):
        runs[name] = load_metrics(run_dir)
        fits[name] = fit_frame(
            runs[name], name, x=x, bootstrap=bootstrap, backtest_frac=None, run_dir=run_dir, **fit_kw
        )
    return plot_runs(runs, out_dir, fits=fits)


def plot_run(run_dir: str | Path, frame: pd.DataFrame | None = None) -> list[Path]:
    """The plots of one finished run, in <run_dir>/plots (the orchestrator calls this)."""
    from rlscale.run_fits import fit_frame

    run_dir = Path(run_dir)
    frame = load_metrics(run_dir) if frame is None else frame
    fits = None
    if {"step", "compute/flops", "reward/mean"} <= set(frame.columns):
        fits = {
            run_dir.name: fit_frame(frame, run_dir.name, bootstrap=100, backtest_frac=None, run_dir=run_dir)
        }
    return plot_runs({run_dir.name: frame}, run_dir / "plots", fits=fits)


# ----------------------------------------------------------------------------- sweeps


def _mean_band(ax, fits: list, col: str, color: str, label: str) -> None:
    """Mean over seeds (each smoothed) at each step, shaded +-1 sd where 2+ seeds have it."""
    rows = pd.concat(
        [pd.DataFrame({"step": f.raw["step"], "x": f.raw["x"], "v": _smooth(f.raw[col])}) for f in fits]
    )
    agg = rows.groupby("step").agg(x=("x", "mean"), mean=("v", "mean"), sd=("v", "std"), n=("v", "count"))
    agg = agg[agg["x"] > 0]
    ax.plot(agg["x"], agg["mean"], color=color, label=f"{label} ({len(fits)} seed{'s' * (len(fits) > 1)})")
    many = agg["n"] > 1
    ax.fill_between(
        agg["x"][many],
        (agg["mean"] - agg["sd"])[many],
        (agg["mean"] + agg["sd"])[many],
        color=color,
        alpha=0.2,
        linewidth=0,
    )


def plot_groups(groups: dict[str, list], path: str | Path, *, group_fits: dict | None = None) -> Path:
    """A sweep's report figure: reward (left) and entropy (right) against the fits' x, mean
    and +-1 sd band over seeds for each group; a group's pooled sigmoid fit (group_fits:
    name -> SigmoidFit) dashed on the reward panel. groups: name -> [RunFit, one per seed]."""
    fig, (ax_r, ax_h) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=120)
    first = next((fs[0] for fs in groups.values() if fs), None)
    for i, (name, fits) in enumerate(groups.items()):
        if not fits:
            continue
        _mean_band(ax_r, fits, "y", _color(i), name)
        _mean_band(ax_h, fits, "entropy", _color(i), name)
        sig = (group_fits or {}).get(name)
        if sig is not None and sig.ok:
            x = np.concatenate([f.raw["x"].to_numpy(float) for f in fits])
            x = x[np.isfinite(x) & (x > 0)]
            grid = np.geomspace(x.min(), EXTRAPOLATE * x.max(), 200)
            ax_r.plot(grid, sig.predict(grid), color=_color(i), linestyle="--", linewidth=1)
    for ax, ylabel in ((ax_r, first.y if first else "reward"), (ax_h, ENTROPY_LABEL)):
        if first is not None and first.x != "steps":
            ax.set_xscale("log")
        ax.set_xlabel(first.x_label if first else "")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    ax_r.set_title(
        f"reward: mean ± 1 sd over seeds; dashed: pooled sigmoid fit to {EXTRAPOLATE:g}x", fontsize=9
    )
    ax_h.set_title("policy entropy: mean ± 1 sd over seeds", fontsize=9)
    _legend(ax_h, len(groups), loc="upper right")
    return _save(fig, Path(path))
