"""The figures' panels of fitted laws (`rlscale.run_fits.RunFit`): reward against compute with
the fitted sigmoid, its bootstrap band, its extrapolation and its asymptote; the linearised
sigmoid; reward against entropy with the entropy law and its ceiling."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from rlscale import metric_names as M
from rlscale.plot_style import (
    ENTROPY_LABEL,
    EXTRAPOLATE,
    light_grid,
    outside_legend,
    run_color,
    y_label,
)


def reward_vs_entropy(ax, runs: dict[str, pd.DataFrame], fits: dict | None) -> None:
    y = next(iter(fits.values())).y if fits else M.REWARD
    for i, (label, frame) in enumerate(runs.items()):
        fit = (fits or {}).get(label)
        if fit is None:
            if {"entropy/mean", "reward/mean"} <= set(frame):
                ax.scatter(
                    frame["entropy/mean"],
                    frame["reward/mean"],
                    s=8,
                    alpha=0.6,
                    color=run_color(i),
                    label=label,
                )
            continue
        pts, law = fit.points, fit.entropy
        ax.scatter(
            pts["entropy"], pts["y"], s=10, alpha=0.6, color=run_color(i), label=label if not law.ok else None
        )
        if law.ok:
            h = np.linspace(0.0, np.nanmax(pts["entropy"]) * 1.05, 200)
            ax.plot(
                h,
                law.predict(h),
                color=run_color(i),
                label=f"{label}: R = -{law.a:.3f} e^H + {law.b:.3f}, ceiling b-a = {law.ceiling:.3f}",
            )
            ax.axhline(law.ceiling, color=run_color(i), linestyle="--", linewidth=1)
    ax.set_xlim(left=0)
    ax.invert_xaxis()  # entropy falls as training goes on: time runs left to right
    ax.set_xlabel(f"{ENTROPY_LABEL}  (training proceeds →)")
    ax.set_ylabel(y_label(y))
    light_grid(ax)
    if fits:
        ax.set_title(
            f"{y} vs entropy: R = -a exp(H) + b (Cui et al.); dashed: ceiling b - a\n"
            "one point per fitted bin of steps",
            fontsize=9,
        )
    else:
        ax.set_title(f"{y} vs entropy, one point per step", fontsize=9)
    outside_legend(ax)


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


def reward_vs_compute(ax, fits: dict) -> None:
    for i, (label, fit) in enumerate(fits.items()):
        keep = fit.raw["x"] > 0
        ax.plot(fit.raw["x"][keep], fit.raw["y"][keep], color=run_color(i), alpha=0.2, linewidth=0.8)
        sig = fit.sigmoid
        if sig.ok:
            text = f"{label}: {fit.estimate.asymptote_text()}, B={sig.B:.2f}, C_mid={sig.C_mid:.3g}"
        else:
            text = f"{label}: no fit ({sig.message})"
        pts = fit.points[fit.points["x"] > 0]
        ax.plot(pts["x"], pts["y"], "o", markersize=3, color=run_color(i), label=text)
        _sigmoid_curve(ax, fit, run_color(i))
    first = next(iter(fits.values()))
    ax.set_xscale("log")
    ax.set_xlabel(first.x_label)
    ax.set_ylabel(y_label(first.y))
    light_grid(ax)
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
    outside_legend(ax, handles=ax.get_legend_handles_labels()[0] + styles)


def linearized_sigmoid(ax, fits: dict) -> None:
    for i, (label, fit) in enumerate(fits.items()):
        sig = fit.sigmoid
        if not sig.ok:
            continue
        logc, ylin = sig.linearize(fit.points["x"], fit.points["y"])
        shown = np.isfinite(logc) & np.isfinite(ylin)  # the base model's x = 0 has no log
        if not shown.any():
            continue
        logc, ylin = logc[shown], ylin[shown]
        ax.scatter(np.exp(logc), ylin, s=10, alpha=0.6, color=run_color(i))
        grid = np.geomspace(np.exp(np.nanmin(logc)), EXTRAPOLATE * np.exp(np.nanmax(logc)), 50)
        ax.plot(
            grid,
            sig.B * (np.log(sig.C_mid) - np.log(grid)),
            color=run_color(i),
            label=f"{label}: slope -B = -{sig.B:.2f}, zero at C_mid = {sig.C_mid:.3g}",
        )
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(next(iter(fits.values())).x_label)
    ax.set_ylabel(f"log((A - R0) / (R - R0) - 1),  R: {next(iter(fits.values())).y}")
    ax.set_title("linearised sigmoid: a straight line when the law holds", fontsize=9)
    light_grid(ax)
    outside_legend(ax)
