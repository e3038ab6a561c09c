"""A sweep's report (`rlscale.sweep`): per group of seeds the final values and the sigmoid
under the fitting protocol, comparisons between groups; report.md/png/csv and fits.json."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from rlscale import scaling
from rlscale.config import ConfigError
from rlscale.fit_estimates import Comparison, compare_fits, fit_seeds
from rlscale.fitting import FitProtocol, json_safe
from rlscale.metric_names import X_AXES
from rlscale.run_fits import RunFit, fit_frame
from rlscale.sweep import Point, SweepSpec


def final_mean(frame: pd.DataFrame, col: str) -> float:
    """Mean over the last 10% of steps: one step is too noisy to call the final value."""
    if col not in frame:
        return math.nan
    values = frame[col].dropna()  # eval columns are NaN between evaluations
    return float(values.tail(max(1, len(values) // 10)).mean())


def _protocol(spec: SweepSpec) -> FitProtocol:
    return FitProtocol(x=spec.x, metric=spec.metric, n_boot=spec.bootstrap)


def _check_metric(spec: SweepSpec, frame: pd.DataFrame, run_dir: Path) -> None:
    if spec.metric and spec.metric not in frame:
        numeric = [c for c in frame.columns if c != "step" and pd.api.types.is_numeric_dtype(frame[c])]
        raise ConfigError(
            f"{spec.path or spec.name}: metric: {run_dir}/metrics.jsonl has no {spec.metric!r}; "
            f"it logs {', '.join(map(str, numeric[:12]))}{', ...' if len(numeric) > 12 else ''}"
        )


def _group_fit(fits: list[RunFit], protocol: FitProtocol):
    """The protocol's sigmoid for a group of seeds: their points pooled (shared A), a
    t-interval over the seeds (block bootstrap for a single seed)."""
    curves = [(f.points["x"], f.points["y"]) for f in fits]
    return fit_seeds(curves, protocol)


def _group_row(spec: SweepSpec, name: str, members: list[Point], fits: list[RunFit], frames, est) -> dict:
    metric = fits[0].y
    finals = pd.Series([final_mean(frames[f.name], metric) for f in fits])
    a_lo, a_hi = est.A_interval
    sig = est.fit
    return {
        "group": name,
        **{k.lstrip("_"): v for k, v in members[0].values.items() if k != spec.seed_key},
        "seeds": f"{len(fits)}/{len(members)}",
        "metric": metric,
        "final_mean": finals.mean(),
        "final_std": finals.std() if len(finals) > 1 else math.nan,
        "final_entropy_mean": pd.Series([final_mean(frames[f.name], "entropy/mean") for f in fits]).mean(),
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


def ladders(spec: SweepSpec, groups: dict[str, list[Point]], group_fits: dict) -> list[tuple[str, list]]:
    """The size ladders in a sweep whose grid varies `model` over built-in sizes: per setting
    of the other varied keys, [(label, [SizeCurve])] of the groups that were fitted."""
    from rlscale.models import builtin_params
    from rlscale.size_ladder import SizeCurve

    models = spec.grid.get("model", [])
    if len({m for m in models if builtin_params(m) is not None}) < 2:
        return []
    out: dict[str, list] = {}
    for name, members in groups.items():
        values = members[0].values
        n = builtin_params(values.get("model"))
        if n is None or name not in group_fits:
            continue
        rest = ",".join(f"{k}={v}" for k, v in values.items() if k not in ("model", spec.seed_key))
        est = group_fits[name]
        curve = SizeCurve(str(values["model"]), n, est.fit, est.curves, est.early_cut, est.identified)
        out.setdefault(rest or "all", []).append(curve)
    return list(out.items())


def build_report(
    spec: SweepSpec, points: list[Point], results: dict | None = None, *, tune_choices=None
) -> dict[str, Path]:
    """report.png, report.csv, report.md and fits.json in the sweep's output_dir, from the
    points that finished (run dir with summary.json); with a tune stage its picks; with a
    model-size ladder the cross-size prediction (`rlscale.size_ladder`, report_ladder*.png)."""
    from rlscale.plots import plot_groups
    from rlscale.size_ladder import plot_ladder, predict_largest
    from rlscale.sweep_tune import tuned_values
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
            _check_metric(spec, frames[p.name], run_dir)
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
    tuned = tuned_values(spec, tune_choices)
    for row in rows:
        for key, value in tuned.get(row["group"], {}).items():
            row[f"{key} (tuned)"] = value
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
    predictions = []
    for i, (setting, sizes) in enumerate(ladders(spec, groups, group_fits)):
        pred = predict_largest(sizes)
        png = out / ("report_ladder.png" if i == 0 else f"report_ladder_{i}.png")
        try:
            plot_ladder(sizes, pred, png, x_label=X_AXES[spec.x][1])
        except Exception as err:  # the figure must not cost the report
            pred.notes.append(f"figure not drawn: {type(err).__name__}: {err}")
        predictions.append((setting, pred, png))
    if predictions:
        fits_json["ladder"] = [
            {"setting": st, "figure": png.name, **pr.to_dict()} for st, pr, png in predictions
        ]
    if tune_choices is not None:
        fits_json["tune"] = tune_choices
    paths["fits"].write_text(json.dumps(json_safe(fits_json), indent=2))
    sections = (
        _markdown(spec, table, comparisons, missing),
        _tune_markdown(spec, tune_choices),
        _ladder_markdown(predictions),
    )
    paths["md"].write_text("\n".join(s for s in sections if s))  # a blank line between sections
    return paths


def _tune_markdown(spec: SweepSpec, choices) -> str:
    if spec.tune is None:
        return ""
    from rlscale.sweep_tune import choices_text, rule_text

    lines = ["## Tune stage", "", f"Rule: {rule_text(spec.tune)}. Runs under `{spec.output_dir}/tune/`.", ""]
    if choices is None:
        lines += ["_no tune.json: the tune stage has not run_", ""]
    else:
        lines += [f"- {line}" for line in choices_text(choices)] + [""]
    return "\n".join(lines)


def _ladder_markdown(predictions) -> str:
    if not predictions:
        return ""
    from rlscale.size_ladder import MIN_SIZES

    lines = [
        "## Cross-size prediction",
        "",
        f"The sigmoid per model size (seeds pooled); A and B fitted linear in ln N and C_mid a "
        f"power law in N over the smaller sizes (at least {MIN_SIZES}); the largest size's curve "
        "predicted from those laws (its R0 its own start) and scored against its observed points "
        "past the early cut. Baseline: the next-smaller size's own curve.",
        "",
    ]
    for setting, pred, png in predictions:
        if setting != "all":
            lines += [f"### {setting}", ""]
        lines += [f"![ladder]({png.name})", ""]
        sizes = ", ".join(f"{s} ({n / 1e6:.3g}M)" for s, n in pred.sizes)
        lines += [f"Sizes: {sizes}.", ""]
        if not pred.ok:
            lines += [f"**No prediction**: {pred.message}", ""]
        else:
            lines += [
                f"Laws: {pred.law_text()}.",
                "",
                "| | mean abs. error | final predicted | final observed | final error |",
                "|---|---|---|---|---|",
                f"| {pred.target} predicted from {', '.join(pred.used)} | {pred.mae:.4f} | "
                f"{pred.final_predicted:.4f} | {pred.final_observed:.4f} | {pred.final_error:+.4f} |",
                f"| baseline: {pred.baseline}'s own curve | {pred.baseline_mae:.4f} | | | "
                f"{pred.baseline_final_error:+.4f} |",
                f"| {pred.target}'s own fit (in sample) | {pred.own_fit_mae:.4f} | | | |",
                "",
            ]
        lines += [f"- {n}" for n in pred.notes] + ([""] if pred.notes else [])
    return "\n".join(lines)


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
