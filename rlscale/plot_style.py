"""How rlscale's figures look, one convention each: every figure has a title; per-step curves
say their smoothing window; legends sit outside the data (right of the axes), one per axes;
gridlines are light and major only; one colour per run. Used by `rlscale.plots`,
`rlscale.plot_fits` and `rlscale.backtest_report`."""

from __future__ import annotations

import textwrap

import pandas as pd

EXTRAPOLATE = 10.0  # the fitted sigmoid is drawn out to this multiple of the largest x seen
ENTROPY_LABEL = "policy entropy (nats/token)"
Y_LABELS = {"reward/mean": "mean reward"}
LEGEND_WIDTH = 48  # characters per legend line
SMOOTH_FRAC = 20  # per-step curves: a centred rolling mean over 1/20 of the run's steps


def y_label(y: str) -> str:
    """The axis label of a metric (the fits' `--y`): its name, with a plain-words gloss if known."""
    return f"{Y_LABELS[y]} ({y})" if y in Y_LABELS else y


def smooth_window(n: int) -> int:
    """The rolling-mean window (in steps) `smoothed` uses on a run of n steps."""
    return max(1, n // SMOOTH_FRAC)


def smoothed(series: pd.Series) -> pd.Series:
    return series.rolling(smooth_window(len(series)), min_periods=1, center=True).mean()


def smoothing_text(lengths) -> str:
    """What the solid per-step curves are: "rolling mean over N steps" (N per run when they differ)."""
    windows = sorted({smooth_window(n) for n in lengths})
    if not windows:
        return "no run to draw"
    if windows == [1]:
        return "not smoothed"
    if len(windows) == 1:
        return f"smoothed: rolling mean over {windows[0]} steps"
    return f"smoothed: rolling mean over 1/{SMOOTH_FRAC} of each run ({windows[0]}-{windows[-1]} steps)"


def run_color(i: int) -> str:
    """The colour of the i-th run (or group) of a figure: matplotlib's ten-colour cycle."""
    return f"C{i % 10}"


def light_grid(ax) -> None:
    """Light major gridlines only (no dense minor grid on log axes)."""
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(False, which="minor")


def outside_legend(ax, handles=None):
    """One legend, outside the data: right of the axes, top-aligned; long labels wrapped."""
    if handles is None:
        handles = ax.get_legend_handles_labels()[0]
    if not handles:
        return None
    labels = [textwrap.fill(h.get_label(), LEGEND_WIDTH, subsequent_indent="  ") for h in handles]
    return ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7
    )


def laid_out(fig):
    """The figure, tightly laid out (before it is shown or saved)."""
    fig.tight_layout()
    return fig
