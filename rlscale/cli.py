"""`rlscale` command line: run, sweep, fit, plot, bench, envs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_run(args) -> int:
    from rlscale.config import load_config
    from rlscale.orchestrator import run

    cfg = load_config(args.config, args.overrides)
    summary = run(cfg)
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


def _cmd_plot(args) -> int:
    from rlscale.plots import plot_runs
    from rlscale.telemetry import load_metrics

    runs = {Path(d).name: load_metrics(d) for d in args.run_dirs}
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "plots"
    for path in plot_runs(runs, out):
        print(path)
    return 0


def _cmd_envs(args) -> int:
    from envs import env_class, env_names

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

    p = sub.add_parser("run", help="one RL run from a config")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="key.sub=value")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("plot", help="PNG plots of one or several runs, overlaid")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", help="output folder (default: the first run's plots/)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("envs", help="list registered environments")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("bench", help="performance against a peer, printed and saved")
    p.add_argument("what", choices=["rollout"])
    p.add_argument("--model", default="builtin:small")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="also write the result here")
    p.set_defaults(func=_cmd_bench)

    args = parser.parse_args(argv)
    from rlscale.config import ConfigError

    try:
        return args.func(args)
    except ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
