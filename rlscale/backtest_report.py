"""The output of `rlscale backtest` (`rlscale.backtest`): the table of its rows, with the median
errors against persistence, and the figure of each run's predictions against the truth."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rlscale.backtest import Row, RunData
    from rlscale.fitting import FitProtocol
    from rlscale.live_refit import WarningReplay


def _f(v, spec=".3f") -> str:
    return "—" if v is None or not math.isfinite(v) else format(v, spec)


def _console():
    """A terminal's own width; 200 columns when printing to a pipe or file (wide tables)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_table(rows: list[Row], console=None) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = console or _console()
    table = Table(
        title="backtest: fit on a prefix, predict the final value (mean over the last 10% of compute)"
    )
    for col in ("run", "law", "fit on", "predicted [95%]", "observed", "|error|", "held-out RMSE",
                "persistence |error|", "asymptote / note"):  # fmt: skip
        table.add_column(col, justify="right" if col[0] in "poh|" else "left")
    for r in rows:
        on = f"first {r.fraction:.0%} of {'steps' if r.law == 'entropy' else 'compute'}"
        band = f" [{_f(r.predicted_lo)}, {_f(r.predicted_hi)}]" if math.isfinite(r.predicted_lo) else ""
        better = r.abs_error < r.persistence_abs_error
        err = f"[green]{_f(r.abs_error)}[/]" if better else _f(r.abs_error)
        table.add_row(escape(r.run), r.law, on, _f(r.predicted_final) + band, _f(r.observed_final), err,
                      _f(r.rmse_heldout), _f(r.persistence_abs_error), escape(r.note))  # fmt: skip
    console.print(table)
    for law in dict.fromkeys(r.law for r in rows):
        for f in sorted({r.fraction for r in rows if r.law == law}):
            sel = [r for r in rows if r.law == law and r.fraction == f]
            med = np.nanmedian([r.abs_error for r in sel])
            pers = np.nanmedian([r.persistence_abs_error for r in sel])
            console.print(
                f"{law} at {f:.0%}: median |error| {_f(med)} vs persistence {_f(pers)} ({len(sel)} rows)"
            )


def print_warning_replays(replays: list[WarningReplay], console=None) -> None:
    from rich.markup import escape
    from rich.table import Table

    if not replays:
        return
    console = console or _console()
    table = Table(title="entropy-collapse warning, replayed as the live refit raises it (every 100 steps)")
    for col in ("run", "warned", "first at step", "predicted collapse", "threshold", "final entropy",
                "collapsed", "reward at warning -> final", "stalled"):  # fmt: skip
        table.add_column(col, justify="left" if col == "run" else "right")
    for w in replays:
        stalled = "—" if w.stalled is None else "yes" if w.stalled else "no"
        table.add_row(escape(w.run), f"{w.warnings}/{w.checks}", _f(w.first_warning_step, ".0f"),
                      _f(w.predicted_collapse_step, ".0f"), _f(w.threshold), _f(w.final_entropy),
                      "yes" if w.collapsed else "no",
                      f"{_f(w.reward_at_first_warning)} -> {_f(w.final_reward)}", stalled)  # fmt: skip
    console.print(table)


def plot_backtest(runs: list[RunData], estimates: dict, rows: list[Row], path, protocol: FitProtocol) -> Path:
    """One panel per run: the metric, each prefix's sigmoid carried to the end with its band,
    the observed final (black bar over the last 10% of compute), persistence (crosses)."""
    from rlscale.plot_style import light_grid, outside_legend, run_color
    from rlscale.plots import _save, plt

    n = len(runs)
    fig, axes = plt.subplots(1, n, figsize=(9 * n, 4.5), dpi=120, squeeze=False)
    for ax, run in zip(axes[0], runs):
        ax.plot(run.raw["x"], run.raw["y"], ".", color="gray", alpha=0.3, markersize=3, label=run.metric)
        ax.plot(run.points["x"], run.points["y"], "o", color="gray", markersize=2.5)
        X = run.x_final
        grid = np.linspace(max(X * 0.01, run.raw["x"][run.raw["x"] > 0].min()), X, 200)
        for i, (f, est) in enumerate(estimates[run.name].items()):
            color = run_color(i)
            ax.axvline(f * X, color=color, linewidth=0.8, linestyle=":")
            if not est.fit.ok:
                continue
            ax.plot(grid, est.fit.predict(grid), color=color, label=f"fit on {f:.0%}: {est.asymptote_text()}")
            fitted = grid[grid >= (est.early_cut or 0)]  # the band where the fit saw data, and beyond
            lo, hi = est.band(fitted)
            if np.isfinite(lo).any():
                ax.fill_between(fitted, lo, hi, color=color, alpha=0.15, linewidth=0)
            pers = next(
                r.persistence_final
                for r in rows
                if r.run == run.name and r.law == "sigmoid" and r.fraction == f
            )
            ax.plot([X], [pers], "x", color=color, markersize=8)
        final = run.final_rows(protocol.final_frac)
        ax.hlines(final["y"].mean(), final["x"].min(), X, color="black", linewidth=3, label="observed final")
        ax.set_xlabel(run.x_label)
        ax.set_ylabel(run.metric)
        ax.set_title(f"{run.name}: predictions vs truth (x: persistence)", fontsize=9)
        light_grid(ax)
        outside_legend(ax)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save(fig, path)
