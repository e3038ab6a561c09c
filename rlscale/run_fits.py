"""Fits of whole runs: run directories (or metric frames) in, every law fitted under the
protocol (`rlscale.fitting`), fits.json and the table out."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from rlscale import scaling, scaling_stats
from rlscale.fit_estimates import Comparison, SigmoidEstimate, compare_fits, fit_sigmoid_protocol
from rlscale.fitting import (
    ENTROPY,
    ENTROPY_BACKTEST_FRAC,
    NAN,
    FitProtocol,
    json_safe,
    protocol_with,
    run_curve,
    x_axis,
)
from rlscale.telemetry import load_metrics


@dataclass
class RunFit:
    """All fits of one run. `raw` has one row per step with a finite metric, `points` the
    rows the laws were fitted on; both have columns step, x, y, entropy. `entropy_steps`:
    every step that logged entropy (step, x, entropy), also when the metric is a sparse eval."""

    name: str
    x: str
    x_label: str
    y: str
    raw: pd.DataFrame
    points: pd.DataFrame
    estimate: SigmoidEstimate
    entropy: scaling.EntropyFit
    power: scaling.PowerFit
    backtests: dict[str, scaling_stats.Backtest]
    protocol: FitProtocol
    backtest_frac: float | None = 0.5
    run_dir: Path | None = None
    notes: list[str] = field(default_factory=list)
    entropy_steps: pd.DataFrame = field(default_factory=lambda: entropy_per_step(pd.DataFrame(), None))

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


def backtest_to_dict(bt: scaling_stats.Backtest, law: str, frac: float) -> dict:
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
    xs, x_label = x_axis(frame, p.x, devices=devices)
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
            "sigmoid": scaling_stats.backtest(sig_fn, cx, cy, frac=backtest_frac, by="x", order=steps),
            "entropy": scaling_stats.backtest(
                scaling.fit_entropy_law, h, cy, frac=ENTROPY_BACKTEST_FRAC, by="points", order=steps
            ),
            "power": scaling_stats.backtest(
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
        entropy_steps=entropy_per_step(frame, xs),
    )


def entropy_per_step(frame: pd.DataFrame, xs: pd.Series) -> pd.DataFrame:
    """(step, x, entropy) for every row with a finite entropy and x."""
    if ENTROPY not in frame:
        return pd.DataFrame(columns=["step", "x", "entropy"], dtype=float)
    rows = pd.DataFrame({"step": frame["step"], "x": xs, "entropy": frame[ENTROPY]}).astype(float)
    return rows[np.isfinite(rows["x"]) & np.isfinite(rows["entropy"])].reset_index(drop=True)


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
