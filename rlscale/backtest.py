"""`rlscale backtest RUN_DIR [RUN_DIR ...]`: how well the protocol's fits predict the rest
of a run they have only seen the beginning of.

For each run and each fraction f (`--at 0.25,0.5,0.75`) the laws are fitted to the points
with x <= f * (the run's final x) under `rlscale.fitting.FitProtocol` (same target, early
window, intervals and identifiability as `rlscale fit`), and each predicts the run's final
value: the mean of the metric over its last `final_frac` (10%) of compute, the observed
final. Beside them, persistence: the mean over the last 10%-of-compute stretch of the
prefix, carried forward. Rows:

- sigmoid: the ScaleRL law, with its 95% band (block bootstrap) at the final compute and
  the asymptote as a number, or as a lower bound when the prefix does not identify it;
- power: the saturating power law, for contrast;
- entropy: R = -a exp(H) + b fitted on the first 15% / 25% / 50% of steps (`--entropy-at`,
  Cui et al.'s protocol), predicting the final value from the final entropy. The note says
  when the final entropy lies outside the range the fit saw (an extrapolation);
- sigmoid_pooled: runs of one config (config.yaml equal but for the seed and RUN_LOCAL_KEYS)
  fitted together (a shared A, t-interval over seeds), beside the one-by-one fits.

Below the table, the entropy-collapse warning of the live refit replayed on each run every
100 steps (`rlscale.live_refit.replay_entropy_warning`): how often it fired, how early, what
it predicted, and whether the run then collapsed or its reward stalled.

The table prints each row's absolute error, the held-out RMSE and persistence's error; a
figure (`--out`, default <first run>/plots/backtest.png) draws each prediction against the
truth with its band; `--json PATH` writes the rows (`run`, `fraction`, `law`, `metric`,
`predicted_final`, `observed_final`, `abs_error`, `persistence_abs_error`, and more).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rlscale import scaling
from rlscale.backtest_report import plot_backtest, print_table, print_warning_replays
from rlscale.fit_estimates import SigmoidEstimate, fit_seeds, fit_sigmoid_protocol
from rlscale.fitting import FitProtocol, json_safe, run_curve, x_axis
from rlscale.live_refit import WarningReplay, replay_entropy_warning
from rlscale.metric_names import X_AXES
from rlscale.run_fits import run_labels
from rlscale.telemetry import load_metrics

NAN = float("nan")
AT = (0.25, 0.5, 0.75)
ENTROPY_AT = (0.15, 0.25, 0.5)  # of steps: Cui et al. fit on the first 15%


@dataclass
class Row:
    run: str
    fraction: float  # of compute (sigmoid, power) or of steps (entropy)
    law: str
    metric: str
    predicted_final: float
    observed_final: float
    abs_error: float
    persistence_final: float
    persistence_abs_error: float
    predicted_lo: float = NAN  # 95% band of the prediction
    predicted_hi: float = NAN
    rmse_heldout: float = NAN  # of the prediction on every held-out point
    identified: bool | None = None  # sigmoid: whether the prefix identifies A
    A: float = NAN
    A_lo: float = NAN
    A_hi: float = NAN
    A_lower: float = NAN
    n_fit: int = 0
    n_test: int = 0
    note: str = ""


@dataclass
class RunData:
    name: str
    run_dir: Path
    metric: str
    raw: pd.DataFrame  # one row per step with a finite metric: step, x, y, entropy
    points: pd.DataFrame  # what the laws are fitted on
    x_label: str
    note: str = ""
    warning: WarningReplay | None = None  # the entropy-collapse warning, replayed

    @property
    def x_final(self) -> float:
        return float(self.raw["x"].max())

    def final_rows(self, frac: float) -> pd.DataFrame:
        return self.raw[self.raw["x"] >= self.x_final * (1 - frac)]


# ----------------------------------------------------------------------------- one prefix


def _persistence(run: RunData, cut: float, frac: float) -> float:
    """The mean over the prefix's last stretch of compute as long as the final window
    (frac of the run's compute), carried forward; the last point if that stretch is empty."""
    x, y = run.raw["x"], run.raw["y"]
    seen = y[(x <= cut) & (x >= cut - frac * run.x_final)]
    return float(seen.mean()) if len(seen) else float(y[x <= cut].iloc[-1]) if (x <= cut).any() else NAN


def _row(run, frac, law, predict, protocol, cut_x=None, held=None, **kw) -> Row:
    """A row from a predict(x) function: its mean over the final window vs the truth."""
    final = run.final_rows(protocol.final_frac)
    observed = float(final["y"].mean())
    with np.errstate(all="ignore"):
        predicted = float(np.mean(predict(final)))
        rmse = (
            float(np.sqrt(np.mean((predict(held) - held["y"]) ** 2)))
            if held is not None and len(held)
            else NAN
        )
    persistence = _persistence(run, cut_x, protocol.final_frac) if cut_x is not None else NAN
    return Row(
        run=run.name,
        fraction=frac,
        law=law,
        metric=run.metric,
        predicted_final=predicted,
        observed_final=observed,
        abs_error=abs(predicted - observed),
        persistence_final=persistence,
        persistence_abs_error=abs(persistence - observed),
        rmse_heldout=rmse,
        **kw,
    )


def _sigmoid_fields(est: SigmoidEstimate, final_x) -> dict:
    lo, hi = est.band(final_x)
    A_lo, A_hi = est.A_interval
    return {
        "predicted_lo": float(np.mean(lo)),
        "predicted_hi": float(np.mean(hi)),
        "identified": est.identified,
        "A": est.fit.A if est.identified else NAN,
        "A_lo": A_lo,
        "A_hi": A_hi,
        "A_lower": est.A_lower,
        "n_fit": est.fit.n,
        "note": est.asymptote_text(),
    }


def backtest_run(run: RunData, protocol: FitProtocol, at=AT, entropy_at=ENTROPY_AT):
    """Rows for one run, and the sigmoid estimates per fraction (for the figure)."""
    rows, estimates = [], {}
    pts, X = run.points, run.x_final
    final_x = run.final_rows(protocol.final_frac)["x"].to_numpy(float)
    for f in at:
        cut = f * X
        seen, held = pts[pts["x"] <= cut], pts[pts["x"] > cut]
        est = fit_sigmoid_protocol(seen["x"], seen["y"], protocol, reference=X)
        estimates[f] = est
        fields = {"n_test": len(held), **_sigmoid_fields(est, final_x)}
        rows.append(
            _row(run, f, "sigmoid", lambda d, e=est: e.fit.predict(d["x"]), protocol, cut, held, **fields)
        )
        above = seen[seen["x"] >= (est.early_cut or 0)]
        pw = scaling.fit_power_law(above["x"], above["y"])
        rows.append(
            _row(run, f, "power", lambda d, p=pw: p.predict(d["x"]), protocol, cut, held, n_fit=pw.n,
                 n_test=len(held), note=pw.message)
        )  # fmt: skip
    if run.points["entropy"].notna().any():
        steps = pts.sort_values("step")
        for f in entropy_at:
            n_fit = math.ceil(f * len(steps))
            seen, held = steps.iloc[:n_fit], steps.iloc[n_fit:]
            law = scaling.fit_entropy_law(seen["entropy"], seen["y"])
            h_final = float(run.final_rows(protocol.final_frac)["entropy"].mean())
            lo, hi = float(seen["entropy"].min()), float(seen["entropy"].max())
            where = "inside" if lo <= h_final <= hi else "outside: an extrapolation"
            note = f"final entropy {h_final:.3f}, {where} the range fitted [{lo:.3f}, {hi:.3f}]"
            rows.append(
                _row(run, f, "entropy", lambda d, w=law: w.predict(d["entropy"]), protocol,
                     float(seen["x"].max()) if len(seen) else None, held, n_fit=law.n, n_test=len(held),
                     note=note if law.ok else law.message)
            )  # fmt: skip
    return rows, estimates


def backtest_group(name: str, runs: list[RunData], protocol: FitProtocol, at=AT) -> list[Row]:
    """Runs of one config fitted pooled (shared A, t-interval over seeds); the truth and
    persistence are the means over the runs."""
    rows = []
    X = float(np.mean([r.x_final for r in runs]))
    for f in at:
        prefixes = [r.points[r.points["x"] <= f * r.x_final] for r in runs]
        est = fit_seeds([(p["x"], p["y"]) for p in prefixes], protocol, reference=X)
        predict = est.fit.predict
        per = [_row(r, f, "", lambda d: predict(d["x"]), protocol, f * r.x_final) for r in runs]  # noqa: B023
        finals = np.concatenate([r.final_rows(protocol.final_frac)["x"].to_numpy(float) for r in runs])
        predicted, observed, persistence = (
            float(np.mean([getattr(p, k) for p in per]))
            for k in ("predicted_final", "observed_final", "persistence_final")
        )
        rows.append(
            Row(
                run=name,
                fraction=f,
                law="sigmoid_pooled",
                metric=runs[0].metric,
                predicted_final=predicted,
                observed_final=observed,
                abs_error=abs(predicted - observed),
                persistence_final=persistence,
                persistence_abs_error=abs(persistence - observed),
                **_sigmoid_fields(est, finals),
            )
        )
    return rows


# ----------------------------------------------------------------------------- runs


def load_run(run_dir, name: str, protocol: FitProtocol) -> RunData:
    frame = load_metrics(run_dir)
    raw, points, metric, note = run_curve(frame, protocol)
    warning = replay_entropy_warning(frame, planned_steps(run_dir, frame), name)
    return RunData(name, Path(run_dir), metric, raw, points, x_axis(frame, protocol.x)[1], note, warning)


def saved_config(run_dir) -> dict | None:
    """The run's config.yaml as written (None: the run has none; {}: it holds no mapping)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    cfg = yaml.safe_load(path.read_text())
    return cfg if isinstance(cfg, dict) else {}


def planned_steps(run_dir, frame: pd.DataFrame) -> int:
    """trainer.steps from the run's config.yaml; the last step logged when it has none."""
    steps = (saved_config(run_dir) or {}).get("trainer", {}).get("steps")
    return int(steps) if isinstance(steps, int) and steps > 0 else int(frame["step"].max())


def recipe_key(run_dir) -> str | None:
    """The run's config.yaml without the keys that locate the run or seed it (None: no config).
    Read through today's schema, defaults filled in, so that runs saved by versions that wrote
    a different set of keys still compare equal; as written when it no longer validates."""
    from rlscale.config_io import RUN_LOCAL_KEYS, ConfigError, build_config, flatten_dotted

    cfg = saved_config(run_dir)
    if cfg is None:
        return None
    try:
        cfg = build_config(cfg, source=str(Path(run_dir) / "config.yaml")).model_dump(mode="json")
    except ConfigError:
        pass
    recipe = {k: v for k, v in flatten_dotted(cfg).items() if k not in (*RUN_LOCAL_KEYS, "trainer.seed")}
    return json.dumps(recipe, sort_keys=True, default=str)


def run_backtest(run_dirs, protocol: FitProtocol | None = None, *, at=AT, entropy_at=ENTROPY_AT, pool=True):
    """(rows, runs, estimates) for the run directories; estimates: run name -> {f: SigmoidEstimate}."""
    protocol = protocol or FitProtocol()
    runs = [load_run(d, n, protocol) for d, n in zip(run_dirs, run_labels(run_dirs))]
    rows, estimates = [], {}
    for run in runs:
        r, estimates[run.name] = backtest_run(run, protocol, at, entropy_at)
        rows += r
    groups: dict[str, list[RunData]] = {}
    for run in runs:
        if (key := recipe_key(run.run_dir)) is not None:
            groups.setdefault(key, []).append(run)
    for members in groups.values():
        if pool and len(members) > 1 and len({r.metric for r in members}) == 1:
            rows += backtest_group(f"pooled({', '.join(r.name for r in members)})", members, protocol, at)
    return rows, runs, estimates


# ----------------------------------------------------------------------------- command


def _fractions(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a list of fractions: {text!r}") from err
    if not values or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"fractions must lie in (0, 1): {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = FitProtocol()
    p.add_argument("run_dirs", nargs="+")
    p.add_argument(
        "--at", type=_fractions, default=AT, help="fractions of compute to fit on (default 0.25,0.5,0.75)"
    )
    p.add_argument(
        "--entropy-at", type=_fractions, default=ENTROPY_AT, help="entropy law: fractions of steps"
    )
    p.add_argument("--metric", help="column to fit (default: the eval mean if logged, else reward/mean)")
    p.add_argument("--x", choices=sorted(X_AXES), default=d.x, help=f"x axis (default {d.x})")
    p.add_argument(
        "--early-window",
        type=float,
        default=d.early_window_frac,
        metavar="FRAC",
        help=f"leave out x below this fraction of the run's compute (default {d.early_window_frac})",
    )
    p.add_argument(
        "--max-width",
        type=float,
        default=d.max_interval_width,
        help=f"A with a wider interval is not identified (default {d.max_interval_width})",
    )
    p.add_argument(
        "--bootstrap", type=int, default=d.n_boot, metavar="N", help=f"resamples (default {d.n_boot})"
    )
    p.add_argument("--block", type=int, help="bootstrap block length (default: from the residuals)")
    p.add_argument(
        "--bins", type=int, default=d.bins, help=f"a per-step metric in at most this many bins ({d.bins})"
    )
    p.add_argument("--no-pool", action="store_true", help="do not fit runs of one config pooled")
    p.add_argument("--json", metavar="PATH", help="write the rows here")
    p.add_argument("--out", metavar="PNG", help="figure (default <first run>/plots/backtest.png)")
    # fmt: skip


def protocol_from_args(args) -> FitProtocol:
    return FitProtocol(metric=args.metric, x=args.x, early_window_frac=args.early_window,
                       max_interval_width=args.max_width, n_boot=args.bootstrap, block_len=args.block,
                       bins=args.bins)  # fmt: skip


def main(args) -> int:
    try:
        protocol = protocol_from_args(args)
        rows, runs, estimates = run_backtest(
            args.run_dirs, protocol, at=args.at, entropy_at=args.entropy_at, pool=not args.no_pool
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"rlscale backtest: {err}", file=sys.stderr)
        return 1
    for run in runs:
        if run.note:
            print(f"{run.name}: {run.note}")
    print_table(rows)
    print_warning_replays([r.warning for r in runs if r.warning is not None])
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "plots" / "backtest.png"
    print(f"figure: {plot_backtest(runs, estimates, rows, out, protocol)}")
    if args.json:
        data = [{**asdict(r), "protocol": asdict(replace(protocol, metric=r.metric))} for r in rows]
        Path(args.json).write_text(json.dumps(json_safe(data), indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="rlscale backtest", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
