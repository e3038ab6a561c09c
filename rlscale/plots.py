"""Plots of one or several runs: reward and entropy against steps, reward against entropy."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rlscale.telemetry import load_metrics  # noqa: E402

_CURVES = {
    "reward_vs_step": ("step", "reward/mean", "step", "mean reward"),
    "entropy_vs_step": ("step", "entropy/mean", "step", "policy entropy (nats/token)"),
    "reward_vs_entropy": ("entropy/mean", "reward/mean", "policy entropy (nats/token)", "mean reward"),
}


def _smooth(series: pd.Series) -> pd.Series:
    return series.rolling(max(1, len(series) // 20), min_periods=1, center=True).mean()


def plot_runs(runs: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """One PNG per curve, every run overlaid with a legend; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, (x, y, xlabel, ylabel) in _CURVES.items():
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for label, frame in runs.items():
            if x not in frame or y not in frame:
                continue
            if x == "step":
                line = ax.plot(frame[x], _smooth(frame[y]), label=label)[0]
                ax.plot(frame[x], frame[y], color=line.get_color(), alpha=0.25, linewidth=0.8)
            else:
                ax.scatter(frame[x], frame[y], s=8, alpha=0.6, label=label, c=None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(runs) > 1 or x != "step":
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def plot_run(run_dir: str | Path, frame: pd.DataFrame | None = None) -> list[Path]:
    run_dir = Path(run_dir)
    frame = load_metrics(run_dir) if frame is None else frame
    return plot_runs({run_dir.name: frame}, run_dir / "plots")
