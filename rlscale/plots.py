"""Plots of one or several runs, overlaid, one colour per run.

Every figure has a title; per-step curves say their smoothing window; legends sit outside
the data (right of the axes), one per axes; gridlines are light and major only.

Always: reward and entropy against steps, reward against entropy. With fits
(`rlscale.run_fits.RunFit`): reward against compute with the fitted sigmoid, its bootstrap
band and its extrapolation to 10x the compute seen, the asymptote A dashed (dotted at its
lower bound when the protocol does not identify it); the entropy law
and its ceiling b - a on the reward-entropy plot; the linearised sigmoid. With `eval/pass@k`
columns: pass@k curves. `plot_groups` draws a sweep's mean-over-seeds curves.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from rlscale import metric_names as M  # noqa: E402
from rlscale.evaluation import pass_at_k_columns  # noqa: E402
from rlscale.telemetry import load_metrics  # noqa: E402

EXTRAPOLATE = 10.0  # the fitted sigmoid is drawn out to this multiple of the largest x seen
ENTROPY_LABEL = "policy entropy (nats/token)"


Y_LABELS = {"reward/mean": "mean reward"}
LEGEND_WIDTH = 48  # characters per legend line
SMOOTH_FRAC = 20  # per-step curves: a centred rolling mean over 1/20 of the run's steps


def y_label(y: str) -> str:
    """The axis label of a metric (the fits' `--y`): its name, with a plain-words gloss if known."""
    return f"{Y_LABELS[y]} ({y})" if y in Y_LABELS else y


def smooth_window(n: int) -> int:
    """The rolling-mean window (in steps) `_smooth` uses on a run of n steps."""
    return max(1, n // SMOOTH_FRAC)


def _smooth(series: pd.Series) -> pd.Series:
    return series.rolling(smooth_window(len(series)), min_periods=1, center=True).mean()


def smoothing_text(lengths) -> str:
    """What the solid per-step curves are: "rolling mean over N steps" (N per run when they differ)."""
    windows = sorted({smooth_window(n) for n in lengths})
    if not windows:
        return "no run to draw"
    if len(windows) == 1:
        return f"smoothed: rolling mean over {windows[0]} step{'s' * (windows[0] > 1)}"
    return f"smoothed: rolling mean over 1/{SMOOTH_FRAC} of each run ({windows[0]}-{windows[-1]} steps)"


def _color(i: int) -> str:
    return f"C{i % 10}"


def _grid(ax) -> None:
    """Light major gridlines only (no dense minor grid on log axes)."""
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(False, which="minor")


def _legend(ax, handles=None):
    """One legend, outside the data: right of the axes, top-aligned; long labels wrapped."""
    if handles is None:
        handles = ax.get_legend_handles_labels()[0]
    if not handles:
        return None
    labels = [textwrap.fill(h.get_label(), LEGEND_WIDTH, subsequent_indent="  ") for h in handles]
    return ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7
    )


def _finish(fig):
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- per-step curves


def _step_curve(ax, runs: dict[str, pd.DataFrame], y: str, ylabel: str, what: str) -> None:
    lengths = []
    for i, (label, frame) in enumerate(runs.items()):
        if y not in frame:
            continue
        lengths.append(len(frame))
        line = ax.plot(frame["step"], _smooth(frame[y]), color=_color(i), label=label)[0]
        ax.plot(frame["step"], frame[y], color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    _grid(ax)
    smoothing = smoothing_text(lengths) if lengths else f"no {y} column"
    ax.set_title(f"{what} by step\n{smoothing} (solid); each step (faint)", fontsize=9)
    if len(runs) > 1:
        _legend(ax)


def _reward_vs_entropy(ax, runs: dict[str, pd.DataFrame], fits: dict | None) -> None:
    y = next(iter(fits.values())).y if fits else M.REWARD
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
    ax.set_ylabel(y_label(y))
    _grid(ax)
    if fits:
        ax.set_title(
            f"{y} vs entropy: R = -a exp(H) + b (Cui et al.); dashed: ceiling b - a\n"
            "one point per fitted bin of steps",
            fontsize=9,
        )
    else:
        ax.set_title(f"{y} vs entropy, one point per step", fontsize=9)
    _legend(ax)


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
    first = next(iter(fits.values()))
    ax.set_xscale("log")
    ax.set_xlabel(first.x_label)
    ax.set_ylabel(y_label(first.y))
    _grid(ax)
    ax.set_title(
        f"{first.y} vs compute: sigmoid fit (ScaleRL)\npoints: means of bins of steps; faint: each step",
        fontsize=9,
    )
    # one legend, outside the data: the runs, then what the line styles mean
    styles = [
        Line2D([], [], color="gray", linewidth=2, label="fit"),
        Line2D(
            [], [], color="gray", linewidth=2, linestyle=":", label=f"extrapolation (to {EXTRAPOLATE:g}x)"
        ),
        Patch(color="gray", alpha=0.25, label="95% bootstrap band"),
        Line2D([], [], color="gray", linestyle="--", linewidth=1, label="asymptote A"),
    ]
    if any(f.sigmoid.ok and not f.estimate.identified for f in fits.values()):
        bound = "lower bound of A (not identified)"
        styles.append(Line2D([], [], color="gray", linestyle=":", linewidth=1, label=bound))
    _legend(ax, handles=ax.get_legend_handles_labels()[0] + styles)


def _linearized(ax, fits: dict) -> None:
    for i, (label, fit) in enumerate(fits.items()):
        sig = fit.sigmoid
        if not sig.ok:
            continue
        logc, ylin = sig.linearize(fit.points["x"], fit.points["y"])
        shown = np.isfinite(logc) & np.isfinite(ylin)  # the base model's x = 0 has no log
        if not shown.any():
            continue
        logc, ylin = logc[shown], ylin[shown]
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
    ax.set_ylabel(f"log((A - R0) / (R - R0) - 1),  R: {next(iter(fits.values())).y}")
    ax.set_title("linearised sigmoid: a straight line when the law holds", fontsize=9)
    _grid(ax)
    _legend(ax)


def eval_updates(evals: pd.DataFrame) -> pd.Series:
    """The updates the evaluated weights had trained: an evaluation on step s's row runs before
    that step's update (s - 1 updates), the final one after it (s updates; its
    `eval/train_flops` is the row's `compute/flops`)."""
    updates = evals["step"].astype(int) - 1
    if {M.EVAL_TRAIN_FLOPS, M.FLOPS} <= set(evals):
        after = evals[M.EVAL_TRAIN_FLOPS] >= evals[M.FLOPS]
        updates = updates.where(~after, evals["step"].astype(int))
    return updates


def _pass_at_k(axes, runs: dict[str, pd.DataFrame]) -> None:
    """Both panels name an evaluation by the updates its weights had trained (one axis)."""
    left, right = axes
    ticks: set[int] = set()
    for i, (label, frame) in enumerate(runs.items()):
        cols = pass_at_k_columns(frame.columns)
        if not cols:
            continue
        evals = frame.dropna(subset=list(cols.values()), how="all")
        updates = eval_updates(evals)
        ticks.update(updates.tolist())
        ks = np.array(list(cols))
        for pos, style, when in ((0, "--", "first"), (-1, "-", "last")):
            vals = evals.iloc[pos][list(cols.values())].to_numpy(float)
            ax_label = f"{label}, after {updates.iloc[pos]} updates ({when} eval)"
            left.plot(ks, vals, style, marker="o", markersize=3, color=_color(i), label=ax_label)
        kmax = int(ks.max())
        right.plot(
            updates,
            evals[cols[1]] if 1 in cols else np.nan,
            "-",
            marker="o",
            markersize=3,
            color=_color(i),
            label=f"{label}",
        )
        right.plot(updates, evals[cols[kmax]], "--", marker="o", markersize=3, color=_color(i))
    left.set_xscale("log", base=2)
    all_ks = sorted({k for frame in runs.values() for k in pass_at_k_columns(frame.columns)})
    left.set_xticks(all_ks, [str(k) for k in all_ks])
    left.minorticks_off()
    left.set_xlabel("k (samples per task)")
    left.set_ylabel("pass@k")
    left.set_title("pass@k at the first (dashed) and last (solid) evaluation", fontsize=9)
    if 0 < len(ticks) <= 12:  # the evaluations themselves, labelled as in the other panel
        right.set_xticks(sorted(ticks))
    right.set_xlabel("updates trained (weights evaluated)")
    right.set_ylabel("pass@k")
    right.set_title("pass@1 (solid) and pass@k_max (dashed) over training", fontsize=9)
    for ax in axes:
        _grid(ax)
        _legend(ax)


# ----------------------------------------------------------------------------- entry points


def run_figures(runs: dict[str, pd.DataFrame], *, fits: dict | None = None):
    """(file stem, matplotlib Figure) for each plot of plot_runs, laid out, one at a time."""
    for stem, y, ylabel, what in (
        ("reward_vs_step", M.REWARD, y_label(M.REWARD), "mean reward"),
        ("entropy_vs_step", M.ENTROPY, ENTROPY_LABEL, "policy entropy"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
        _step_curve(ax, runs, y, ylabel, what)
        yield stem, _finish(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    _reward_vs_entropy(ax, runs, fits)
    yield "reward_vs_entropy", _finish(fig)

    if fits:
        for stem, draw in (("reward_vs_compute", _reward_vs_compute), ("sigmoid_linearized", _linearized)):
            fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
            draw(ax, fits)
            yield stem, _finish(fig)

    if any(pass_at_k_columns(frame.columns) for frame in runs.values()):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), dpi=120)
        _pass_at_k(axes, runs)
        yield "pass_at_k", _finish(fig)


def plot_runs(
    runs: dict[str, pd.DataFrame], out_dir: str | Path, *, fits: dict | None = None, on_written=None
) -> list[Path]:
    """PNG files in out_dir, every run overlaid; returns the files written. fits (name ->
    rlscale.run_fits.RunFit, same names as runs) adds the fitted-law plots. on_written(path) is
    called as each file is written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, fig in run_figures(runs, fits=fits):
        written.append(_save(fig, out_dir / f"{stem}.png"))
        if on_written is not None:
            on_written(written[-1])
    return written


def plot_run_dirs(
    run_dirs,
    out_dir: str | Path,
    *,
    x: str = "flops",
    bootstrap: int = 200,
    log=None,
    on_written=None,
    **fit_kw,
) -> list[Path]:
    """Load, fit (no backtests) and plot several run directories together. log(line) is told
    before each run's fit (the slow part) and how long it took; on_written as plot_runs."""
    import time

    from rlscale.run_fits import fit_frame, run_labels

    runs, fits = {}, {}
    pairs = list(zip(run_dirs, run_labels(run_dirs)))
    for n, (run_dir, name) in enumerate(pairs, 1):
        runs[name] = load_metrics(run_dir)
        if log is not None:
            steps = f"{len(runs[name])} steps, {bootstrap} bootstrap resamples"
            log(f"fitting {name} ({n}/{len(pairs)}: {steps}) ...")
        start = time.perf_counter()
        fits[name] = fit_frame(
            runs[name], name, x=x, bootstrap=bootstrap, backtest_frac=None, run_dir=run_dir, **fit_kw
        )
        if log is not None:
            log(f"fitted {name} in {time.perf_counter() - start:.1f} s")
    if log is not None:
        log(f"plotting into {out_dir} ...")
    return plot_runs(runs, out_dir, fits=fits, on_written=on_written)


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
    for ax, ylabel in ((ax_r, y_label(first.y) if first else "reward"), (ax_h, ENTROPY_LABEL)):
        if first is not None and first.x != "steps":
            ax.set_xscale("log")
        ax.set_xlabel(first.x_label if first else "")
        ax.set_ylabel(ylabel)
        _grid(ax)
    smoothing = smoothing_text(len(f.raw) for fs in groups.values() for f in fs) + " (each seed)"
    ax_r.set_title(
        f"{first.y if first else 'reward'}: mean ± 1 sd over seeds; dashed: pooled sigmoid fit to "
        f"{EXTRAPOLATE:g}x\n{smoothing}",
        fontsize=9,
    )
    ax_h.set_title(f"policy entropy: mean ± 1 sd over seeds\n{smoothing}", fontsize=9)
    _legend(ax_h)
    return _save(_finish(fig), Path(path))
