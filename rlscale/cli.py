"""`rlscale` command line: run, sweep, fit, backtest, plot, bench, envs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _cmd_run(args) -> int:
    from rlscale.config import ConfigError, load_config

    overrides = list(args.overrides)
    if args.resume:  # the run's own resolved config; CONFIG, if given, is taken as an override
        if args.config:
            overrides.insert(0, args.config)
        cfg = load_config(Path(args.resume) / "config.yaml", overrides)
        if cfg.run_dir.resolve() != Path(args.resume).resolve():
            raise ConfigError(f"--resume {args.resume}: overrides may not move the run (name/output_dir)")
    elif args.config:
        cfg = load_config(args.config, overrides)
    else:
        raise ConfigError("rlscale run: give a CONFIG file, or --resume RUN_DIR")
    from rlscale.orchestrator import run  # Ray, torch and vLLM: only once the config is valid

    summary = run(cfg, resume=bool(args.resume))
    print(f"\nrun directory: {summary['run_dir']}")
    print(
        f"  reward: first 10% {summary['reward_first_10pct']:.3f} -> last 10% "
        f"{summary['reward_last_10pct']:.3f}  (best {summary['reward_best']:.3f})"
    )
    print(f"  metrics:     {summary['metrics']}  (rlscale.telemetry.load_metrics)")
    plots = ", ".join(Path(p).name for p in summary["plots"])
    print(f"  plots:       {plots} in {Path(summary['run_dir']) / 'plots'}")
    print(f"  checkpoint:  {summary['checkpoint']}")
    print(f"  summary:     {Path(summary['run_dir']) / 'summary.json'}")
    return 0


def _add_fit_options(p) -> None:
    x_axes = ["flops", "hours", "steps", "tokens", "samples", "wall"]  # rlscale.fitting.X_AXES
    p.add_argument("--x", choices=x_axes, default="flops", help="x axis (default flops)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="N", help="resamples for 95%% intervals")
    p.add_argument("--bins", type=int, default=100, help="fit on at most this many step bins (0: all steps)")
    p.add_argument("--min-compute", type=float, metavar="X", help="fit compute laws on x >= X only")
    p.add_argument("--devices", type=float, help="device count for --x hours (default: from the run)")


def _fit_options(args) -> dict:
    return dict(bootstrap=args.bootstrap, bins=args.bins, min_compute=args.min_compute, devices=args.devices)


def _cmd_plot(args) -> int:
    from rlscale.plots import plot_run_dirs

    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "plots"
    try:
        paths = plot_run_dirs(args.run_dirs, out, x=args.x, **_fit_options(args))
    except (FileNotFoundError, ValueError) as err:
        print(f"rlscale plot: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


def _cmd_fit(args) -> int:
    from rlscale.fitting import fit_runs, print_fits, save_fits

    try:
        options = _fit_options(args)
        report = fit_runs(args.run_dirs, x=args.x, y=args.y, backtest_frac=args.backtest_frac, **options)
    except (FileNotFoundError, ValueError) as err:
        print(f"rlscale fit: {err}", file=sys.stderr)
        return 1
    print_fits(report)
    for path in save_fits(report):
        print(f"wrote {path}")
    return 0


def _cmd_sweep(args) -> int:
    from rlscale import sweep

    return sweep.main(args.spec, dry_run=args.dry_run, report_only=args.report_only, parallel=args.parallel)


def _cmd_envs(args) -> int:
    from rlscale.envs import env_class, env_names

    for name in env_names():
        print(f"{name:<16} {env_class(name).description}")
    return 0


def _cmd_bench(args) -> int:
    from rlscale import bench

    result = bench.BENCHES[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlscale", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="one RL run from a config, or --resume one")
    p.add_argument("config", nargs="?")
    p.add_argument("overrides", nargs="*", help="key.sub=value")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("sweep", help="many runs from an experiments/ spec, in parallel on Ray")
    p.add_argument("spec")
    p.add_argument("--dry-run", action="store_true", help="validate and print the points; run nothing")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    p.add_argument("--parallel", type=int, help="runs at once (default: the spec's)")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("fit", help="fit scaling laws, print a table, write fits.json in each run")
    p.add_argument("run_dirs", nargs="+")
    _add_fit_options(p)
    p.add_argument("--y", default="reward/mean", help="metric to fit (default reward/mean)")
    p.add_argument("--backtest-frac", type=float, default=0.5, help="share of x the backtest fits on")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("plot", help="PNG plots of one or several runs, overlaid, with fitted laws")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="output folder (default: the first run's plots/)")
    _add_fit_options(p)
    p.set_defaults(func=_cmd_plot)

    from rlscale import backtest

    p = sub.add_parser(
        "backtest",
        help="fit each run's prefix, predict the rest, compare with the truth and persistence",
        description=backtest.__doc__.split("\n\n")[0],
    )
    backtest.add_arguments(p)
    p.set_defaults(func=backtest.main)

    p = sub.add_parser("envs", help="list registered environments")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("bench", help="performance against a peer, printed and saved")
    p.add_argument("what", choices=["rollout", "e2e", "learner", "breakdown", "verify"])
    p.add_argument("run_dir", nargs="?", help="breakdown: the run directory")
    p.add_argument("--model", default="builtin:small")
    p.add_argument("--prompts", type=int, help="prompts per batch (default 64; e2e: the config's)")
    p.add_argument("--group-size", type=int, help="samples per prompt (default 8; e2e: the config's)")
    p.add_argument("--max-tokens", type=int, help="tokens per response (default 32; e2e: the config's)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (rollout, learner)")
    p.add_argument("--steps", type=int, help="e2e: steps for each trainer (default 200)")
    p.add_argument("--config", help="e2e, learner: the run config (default configs/demo.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="e2e, learner: config override")
    p.add_argument("--warmup", type=int, help="learner: untimed updates first (default 1)")
    p.add_argument("--peak-size", type=int, help="learner: matmul size of the peak (default 2048; GPU 8192)")
    p.add_argument("--skip-steps", type=int, help="breakdown: leave out the first N steps (default 0)")
    p.add_argument("--json", help="also write the result here")
    p.set_defaults(func=_cmd_bench)

    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (or RLSCALE_DEBUG=1)"
    )
    args = parser.parse_args(argv)
    from rlscale.checkpoint import CheckpointError
    from rlscale.config import ConfigError
    from rlscale.errors import RunInterrupted, RunStopped
    from rlscale.telemetry import TelemetryError

    debug = args.debug or os.environ.get("RLSCALE_DEBUG") == "1"
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return 2
    except RunInterrupted as err:
        print(f"rlscale: {err}", file=sys.stderr)
        return 130
    except (RunStopped, TelemetryError, CheckpointError, FileExistsError) as err:
        print(f"rlscale: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print("rlscale: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # anything else: one line, the traceback on request
        if debug:
            raise
        print(f"rlscale: error: {type(err).__name__}: {err} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
