"""Plots of one or several runs, overlaid, one colour per run, drawn as `rlscale.plot_style` says.

Always: reward and entropy against steps, reward against entropy. With fits
(`rlscale.run_fits.RunFit`, panels in `rlscale.plot_fits`): reward against compute with the
fitted sigmoid, its bootstrap band and its extrapolation to 10x the compute seen, the
asymptote A dashed (dotted at its lower bound when the protocol does not identify it); the
entropy law and its ceiling b - a on the reward-entropy plot; the linearised sigmoid. With
`eval/pass@k` columns: pass@k curves. `plot_groups` draws a sweep's mean-over-seeds curves.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rlscale import metric_names as M  # noqa: E402
from rlscale.evaluation import pass_at_k_columns  # noqa: E402
from rlscale.plot_fits import linearized_sigmoid, reward_vs_compute, reward_vs_entropy  # noqa: E402
from rlscale.plot_style import (  # noqa: E402
    ENTROPY_LABEL,
    EXTRAPOLATE,
    laid_out,
    light_grid,
    outside_legend,
    run_color,
    smoothed,
    smoothing_text,
    y_label,
)
from rlscale.telemetry import load_metrics  # noqa: E402


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
        line = ax.plot(frame["step"], smoothed(frame[y]), color=run_color(i), label=label)[0]
        ax.plot(frame["step"], frame[y], color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    light_grid(ax)
    smoothing = smoothing_text(lengths) if lengths else f"no {y} column"
    ax.set_title(f"{what} by step\n{smoothing} (solid); each step (faint)", fontsize=9)
    if len(runs) > 1:
        outside_legend(ax)


# ----------------------------------------------------------------------------- pass@k


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
            left.plot(ks, vals, style, marker="o", markersize=3, color=run_color(i), label=ax_label)
        kmax = int(ks.max())
        right.plot(
            updates,
            evals[cols[1]] if 1 in cols else np.nan,
            "-",
            marker="o",
            markersize=3,
            color=run_color(i),
            label=f"{label}",
        )
        right.plot(updates, evals[cols[kmax]], "--", marker="o", markersize=3, color=run_color(i))
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
        light_grid(ax)
        outside_legend(ax)


# ----------------------------------------------------------------------------- entry points


def run_figures(runs: dict[str, pd.DataFrame], *, fits: dict | None = None):
    """(file stem, matplotlib Figure) for each plot of plot_runs, laid out, one at a time."""
    for stem, y, ylabel, what in (
        ("reward_vs_step", M.REWARD, y_label(M.REWARD), "mean reward"),
        ("entropy_vs_step", M.ENTROPY, ENTROPY_LABEL, "policy entropy"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4), dpi=120)
        _step_curve(ax, runs, y, ylabel, what)
        yield stem, laid_out(fig)

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    reward_vs_entropy(ax, runs, fits)
    yield "reward_vs_entropy", laid_out(fig)

    if fits:
        for stem, draw in (
            ("reward_vs_compute", reward_vs_compute),
            ("sigmoid_linearized", linearized_sigmoid),
        ):
            fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
            draw(ax, fits)
            yield stem, laid_out(fig)

    if any(pass_at_k_columns(frame.columns) for frame in runs.values()):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), dpi=120)
        _pass_at_k(axes, runs)
        yield "pass_at_k", laid_out(fig)


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


def _mean_band(ax, curves: list[pd.DataFrame], col: str, color: str, label: str) -> None:
    """Mean over seeds (each smoothed) at each step, shaded +-1 sd where 2+ seeds have it;
    curves: one frame per seed with columns step, x and col."""
    rows = pd.concat([pd.DataFrame({"step": c["step"], "x": c["x"], "v": smoothed(c[col])}) for c in curves])
    agg = rows.groupby("step").agg(x=("x", "mean"), mean=("v", "mean"), sd=("v", "std"), n=("v", "count"))
    agg = agg[agg["x"] > 0]
    n = len(curves)
    ax.plot(agg["x"], agg["mean"], color=color, label=f"{label} ({n} seed{'s' * (n > 1)})")
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
        _mean_band(ax_r, [f.raw for f in fits], "y", run_color(i), name)
        if any(len(f.entropy_steps) for f in fits):
            _mean_band(ax_h, [f.entropy_steps for f in fits], "entropy", run_color(i), name)
        sig = (group_fits or {}).get(name)
        if sig is not None and sig.ok:
            x = np.concatenate([f.raw["x"].to_numpy(float) for f in fits])
            x = x[np.isfinite(x) & (x > 0)]
            grid = np.geomspace(x.min(), EXTRAPOLATE * x.max(), 200)
            ax_r.plot(grid, sig.predict(grid), color=run_color(i), linestyle="--", linewidth=1)
    for ax, ylabel in ((ax_r, y_label(first.y) if first else "reward"), (ax_h, ENTROPY_LABEL)):
        if first is not None and first.x != "steps":
            ax.set_xscale("log")
        ax.set_xlabel(first.x_label if first else "")
        ax.set_ylabel(ylabel)
        light_grid(ax)
    fits = [f for fs in groups.values() for f in fs]
    ax_r.set_title(
        f"{first.y if first else 'reward'}: mean ± 1 sd over seeds; dashed: pooled sigmoid fit to "
        f"{EXTRAPOLATE:g}x\n{smoothing_text(len(f.raw) for f in fits)} (each seed)",
        fontsize=9,
    )
    ax_h.set_title(
        "policy entropy (every step): mean ± 1 sd over seeds\n"
        f"{smoothing_text(len(f.entropy_steps) for f in fits)} (each seed)",
        fontsize=9,
    )
    outside_legend(ax_h)
    return _save(laid_out(fig), Path(path))
