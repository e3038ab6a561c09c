"""A sweep's report (`rlscale.sweep`): per group of seeds the final values and the sigmoid
under the fitting protocol, comparisons between groups; report.md/png/csv and fits.json."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from rlscale import scaling
from rlscale.fit_estimates import Comparison, compare_fits, fit_seeds
from rlscale.fitting import FitProtocol, json_safe
from rlscale.metric_names import X_AXES
from rlscale.run_fits import RunFit, fit_frame
from rlscale.sweep import Point, SweepSpec


def _final(frame: pd.DataFrame, col: str) -> float:
    """Mean over the last 10% of steps: one step is too noisy to call the final value."""
    if col not in frame:
        return math.nan
    values = frame[col].dropna()  # eval columns are NaN between evaluations
    return float(values.tail(max(1, len(values) // 10)).mean())


def _protocol(spec: SweepSpec) -> FitProtocol:
    return FitProtocol(x=spec.x, n_boot=spec.bootstrap)


def _group_fit(fits: list[RunFit], protocol: FitProtocol):
    """The protocol's sigmoid for a group of seeds: their points pooled (shared A), a
    t-interval over the seeds (block bootstrap for a single seed)."""
    curves = [(f.points["x"], f.points["y"]) for f in fits]
    return fit_seeds(curves, protocol)


def _group_row(spec: SweepSpec, name: str, members: list[Point], fits: list[RunFit], frames, est) -> dict:
    metric = fits[0].y
    finals = pd.Series([_final(frames[f.name], metric) for f in fits])
    a_lo, a_hi = est.A_interval
    sig = est.fit
    return {
        "group": name,
        **{k.lstrip("_"): v for k, v in members[0].values.items() if k != spec.seed_key},
        "seeds": f"{len(fits)}/{len(members)}",
        "metric": metric,
        "final_mean": finals.mean(),
        "final_std": finals.std() if len(finals) > 1 else math.nan,
        "final_entropy_mean": pd.Series([_final(frames[f.name], "entropy/mean") for f in fits]).mean(),
        "A": sig.A if est.identified else math.nan,
        "A_lo": a_lo,
        "A_hi": a_hi,
        "A_lower": est.A_lower,
        "identified": est.identified,
        "B": sig.B,
        "C_mid": sig.C_mid,
        "fit_rmse": sig.residual,
        "fit_note": est.reason or sig.message,
    }


def build_report(spec: SweepSpec, points: list[Point], results: dict | None = None) -> dict[str, Path]:
    """report.png, report.csv, report.md and fits.json in the sweep's output_dir, from the
    points that finished (run dir with summary.json)."""
    from rlscale.plots import plot_groups
    from rlscale.telemetry import load_metrics

    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results or {}
    protocol = _protocol(spec)
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.group, []).append(p)

    rows, run_fits, group_fits, frames, missing = [], {}, {}, {}, []
    for name, members in groups.items():
        run_fits[name] = []
        for p in members:
            run_dir = p.run_dir(spec)
            if not (run_dir / "summary.json").is_file():
                missing.append(
                    {"point": p.name, "status": results.get(p.name, {}).get("status", "not finished")}
                )
                continue
            frames[p.name] = load_metrics(run_dir)
            fit = fit_frame(
                frames[p.name],
                p.name,
                protocol=replace(protocol, n_boot=0),
                backtest_frac=None,
                run_dir=run_dir,
            )
            run_fits[name].append(fit)
        if run_fits[name]:
            group_fits[name] = _group_fit(run_fits[name], protocol)
            rows.append(_group_row(spec, name, members, run_fits[name], frames, group_fits[name]))
    table = pd.DataFrame(rows)
    comparisons = compare_fits(list(group_fits.items()))

    names = {"csv": "report.csv", "md": "report.md", "png": "report.png", "fits": "fits.json"}
    paths = {kind: out / name for kind, name in names.items()}
    table.to_csv(paths["csv"], index=False)
    plot_groups(
        {g: f for g, f in run_fits.items() if f},
        paths["png"],
        group_fits={g: e.fit for g, e in group_fits.items()},
    )
    fits_json = {
        "sweep": spec.name,
        "x": spec.x,
        "protocol": asdict(protocol),
        "groups": {
            g: {
                "runs": [f.name for f in run_fits[g]],
                "sigmoid": est.to_dict(),
                "runs_fits": {f.name: scaling.fit_result_to_dict(f.sigmoid) for f in run_fits[g]},
            }
            for g, est in group_fits.items()
        },
        "table": table.to_dict(orient="records"),
        "comparisons": [c.to_dict() for c in comparisons],
        "missing": missing,
    }
    paths["fits"].write_text(json.dumps(json_safe(fits_json), indent=2))
    paths["md"].write_text(_markdown(spec, table, comparisons, missing))
    return paths


def _markdown(spec, table: pd.DataFrame, comparisons: list[Comparison], missing) -> str:
    lines = [f"# Sweep `{spec.name}`", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    metric = table["metric"].iloc[0] if len(table) else "the metric"
    lines += [
        f"Base config `{spec.base}`; x axis: {X_AXES[spec.x][1]}; fitted metric: `{metric}` "
        "(rlscale.fitting.FitProtocol). Final: mean over the last 10% of each seed's values, then "
        "mean and sd over seeds. A, B, C_mid: sigmoid fitted on the seeds' points pooled; 95% "
        "interval of A a t-interval over seeds (a block bootstrap for one seed). A blank A with "
        "`identified` false: the asymptote is not identified, `A_lower` is its lower bound.",
        "",
        "![report](report.png)",
        "",
        table.to_markdown(index=False, floatfmt=".4g") if len(table) else "_no finished runs_",
        "",
    ]
    if comparisons:
        lines += [
            "## Comparisons (higher A wins, same A: higher B; only beyond the seed-to-seed spread)",
            "",
        ]
        lines += [f"- **{c.a}** vs **{c.b}**: {c.result.verdict}" for c in comparisons] + [""]
    if missing:
        lines += ["## Not finished", ""] + [f"- `{m['point']}`: {m['status']}" for m in missing] + [""]
    return "\n".join(lines)
