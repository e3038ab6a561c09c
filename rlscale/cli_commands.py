"""What each `rlscale` command does once its arguments are parsed (`rlscale.cli` builds the
parser and calls these): run, config show, presets, plot, fit, sweep, model import, envs, bench.
Heavy modules (Ray, torch, scipy, matplotlib) are imported inside the command that needs them."""

from __future__ import annotations

import json
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


def cmd_run(args) -> int:
    from rlscale.config_checks import inert_settings

    cfg = _load_run_config(args)
    for note in inert_settings(cfg):
        print(f"note: {note}", file=sys.stderr)
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


def cmd_config_show(args) -> int:
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


def cmd_presets(args) -> int:
    import textwrap

    from rlscale.presets import ALGO_PRESETS

    print("algo.name picks a preset; any algo.<key> set in a config or on the command line overrides it.")
    for name, preset in ALGO_PRESETS.items():
        text = " ".join(f"{k}={v}" for k, v in preset.items())
        print(f"\n{name}")
        print(textwrap.fill(text, width=100, initial_indent="    ", subsequent_indent="    "))
    return 0


def _fit_options(args) -> dict:
    return dict(bootstrap=args.bootstrap, bins=args.bins, min_compute=args.min_compute, devices=args.devices)


def cmd_plot(args) -> int:
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


def cmd_fit(args) -> int:
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


def cmd_sweep(args) -> int:
    from rlscale import sweep

    return sweep.main(args.spec, dry_run=args.dry_run, report_only=args.report_only, parallel=args.parallel)


def cmd_model_import(args) -> int:
    from rlscale import model_import

    return model_import.main(args)


def cmd_envs(args) -> int:
    from rlscale.envs import env_class, env_names

    for name in env_names():
        print(f"{name:<16} {env_class(name).description}")
    return 0


def cmd_bench(args) -> int:
    from rlscale import bench

    result = bench.BENCHES[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0
