"""Every `rlscale ...` command in the README runs as written.

The commands are read from the README's ```bash blocks and its inline code. Each runs in a
fresh folder holding links to configs/ and experiments/ and, as `runs/demo` (and `runs/a`,
`runs/b`), copies of the checked-in demo run, so the README's paths resolve as they do after
`make demo`. Cheap commands run for real (fits with fewer bootstrap resamples); `rlscale run`
commands run as `--dry-run` here and for real, with a few steps, in the e2e test. Benchmarks
run short (`SHORT_BENCH`: 2 steps, 2 prompts x 2 samples, 1 repeat): the learner and verifier
benchmarks here, those that start Ray and vLLM (rollout, e2e) in an e2e test each. Commands
that need a cluster or take many minutes (whole sweeps) are listed with the reason they are
not run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DEMO_RUN = REPO / "tests" / "data" / "demo_run"
FEW_STEPS = ["trainer.steps=2", "builtin.sft_steps=10"]
# `rlscale bench` options replaced (or added) when the README's benchmarks run here: the same
# code paths (both sides of each comparison, every timed part, the printed table) on a tiny
# batch. What stays is start-up: Ray and a vLLM engine (~1-2 min on 2 cores) for rollout and
# e2e, which cannot be shortened. `bench verify` runs as written (about 15 s).
SHORT_BENCH = {
    # e2e times steps/s from the end of step 1: 2 steps is the fewest it accepts
    "e2e": {"--steps": "2", "--prompts": "2", "--group-size": "2", "--max-tokens": "4"},
    "rollout": {"--prompts": "2", "--group-size": "2", "--max-tokens": "4", "--repeats": "1"},
    "learner": {
        **{"--prompts": "2", "--group-size": "2", "--max-tokens": "4", "--repeats": "1"},
        **{"--warmup": "0", "--peak-size": "256"},
    },
}
SHORT_BENCH_SETS = {"e2e": ["builtin.sft_steps=0"]}  # no warm start of the benchmarked model
BENCH_NEEDS_RAY = ("e2e", "rollout")


def readme_commands() -> list[str]:
    """`rlscale ...` lines of the ```bash blocks (comments cut), then inline `rlscale ...` code
    that has arguments, in README order, each once."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            line = re.split(r"\s+#", line, maxsplit=1)[0].strip()
            if line.startswith("rlscale "):
                commands.append(line)
    for span in re.findall(r"`(rlscale [^`]+)`", text):
        span = " ".join(span.split())  # inline code may wrap across lines
        if span not in commands and span.split()[1:] not in (["run"], []):
            commands.append(span)
    return list(dict.fromkeys(commands))


def plan(command: str) -> tuple[str, list[str]]:
    """(how, the arguments after `rlscale`): how is "now" (run here), "e2e" (a real run, in the
    e2e test; here its --dry-run), or "skip: <why>"."""
    args = shlex.split(command)[1:]
    what = args[0]
    if what == "model" and "--help" not in args:
        return "skip: imports a model file; tests/test_model_import.py runs the same import", args
    if any("models/" in a for a in args) or "configs/smollm2_math.yaml" in args:
        return "skip: needs an imported model (make smollm2); tests/test_model_import.py trains it", args
    if any(a.startswith("runs/sweeps/") for a in args):
        return (
            "skip: needs a whole sweep's runs; test_backtest.py runs backtest on small runs",
            args,
        )
    if what == "run":
        if "env.name=reverse" in args:
            return "skip: needs README's envs/reverse.py; tests/test_env_plugins.py runs it as written", args
        if "--dry-run" in args or "--help" in args:
            return "now", args
        if any(a.startswith("ray.address=") for a in args):
            return "skip: needs a Ray cluster (its --dry-run runs here)", args
        return "e2e", args
    if what == "sweep":
        if "--dry-run" in args:
            return "now", args
        return "skip: a whole sweep takes many minutes (its --dry-run runs here)", args
    if what == "bench":
        if args[1:2] == ["breakdown"]:  # needs the timing columns the checked-in run leaves out
            return "e2e", args
        if "--help" in args:
            return "now", args
        return ("bench" if args[1] in BENCH_NEEDS_RAY else "now"), short_bench(args)
    if what in ("fit", "plot", "backtest") and "--help" not in args:
        return "now", [*args, "--bootstrap", "20"]
    return "now", args


def short_bench(args: list[str]) -> list[str]:
    """A `bench` command with SHORT_BENCH's options in place of the README's (the rest as written)."""
    short = SHORT_BENCH.get(args[1], {})
    kept, i = [], 0
    while i < len(args):
        if args[i] in short:
            i += 2  # the option and its value
            continue
        kept.append(args[i])
        i += 1
    for option, value in short.items():
        kept += [option, value]
    for override in SHORT_BENCH_SETS.get(args[1], []):
        kept += ["--set", override]
    return kept


def check_bench(args: list[str], cwd: Path) -> None:
    """The short benchmark's saved result (`--json`) is of the short work."""
    result = json.loads((cwd / "bench.json").read_text())
    if args[1] == "e2e":
        assert result["steps"] == 2 and result["batch_sequences"] == 4
        assert len(result["ours_rewards"]) == len(result["trl_rewards"]) == 2
        assert result["ours_steps_per_s"] > 0 and result["trl_steps_per_s"] > 0
        if "trainer.off_policy_steps=1" in args:
            assert result["off_policy_steps"] == 1
    elif args[1] == "rollout":
        assert (result["prompts"], result["group_size"], result["max_tokens"]) == (2, 2, 4)
        assert result["rlscale_vllm_tokens_per_s"] > 0 and result["hf_generate_tokens_per_s"] > 0
    elif args[1] == "learner":
        assert result["timed_updates"] == 1 and result["mfu"] > 0
    elif args[1] == "verify":
        assert result["code_passed"] == result["code_programs"] and result["math_latex_per_s"] > 0
    if "--model" in args:
        assert result["model"] == args[args.index("--model") + 1]


def dry_run(args: list[str]) -> list[str]:
    """The --dry-run of a `rlscale run` command (or of a sweep)."""
    if args[0] == "run":
        return ["run", "--dry-run", *args[1:]]
    return [*args, "--dry-run"]


@pytest.fixture
def workdir(tmp_path) -> Path:
    """A folder laid out as the repository after `make demo`: configs/, experiments/, runs/demo."""
    for folder in ("configs", "experiments"):
        (tmp_path / folder).symlink_to(REPO / folder)
    for name in ("demo", "a", "b"):
        run_dir = tmp_path / "runs" / name
        shutil.copytree(DEMO_RUN, run_dir, ignore=shutil.ignore_patterns("plots", "fits.json"))
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config.update(name=name, output_dir="runs")
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path


def rlscale(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "rlscale.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


COMMANDS = readme_commands()


def test_the_readme_has_the_commands_a_researcher_follows():
    firsts = {shlex.split(c)[1] for c in COMMANDS}
    assert {"run", "fit", "plot", "sweep", "envs", "presets", "config", "bench"} <= firsts
    assert any("--dry-run" in c for c in COMMANDS) and any("--resume" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_new_run_in_the_readme_names_its_run_directory(command):
    """After `make demo` (runs/demo), a README command that starts a run must not collide with it."""
    args = shlex.split(command)[1:]
    if args[0] == "run" and "--resume" not in args and "--help" not in args:
        assert any(a.startswith("name=") for a in args), f"{command}: give it a name=..."


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_as_written(command, workdir):
    how, args = plan(command)
    if how.startswith("skip"):
        if "--dry-run" in how:
            args = dry_run(args)
        else:
            pytest.skip(how.removeprefix("skip: "))
    elif how == "e2e" and args[0] != "run":
        pytest.skip("runs in the e2e test, on a real run")
    elif how == "e2e":
        args = dry_run(args)
    elif how == "bench":
        pytest.skip("starts Ray and vLLM: test_readme_benchmark_runs_short (e2e) runs it")
    bench = args[0] == "bench" and "--help" not in args
    if bench:
        args = [*args, "--json", "bench.json"]
    done = rlscale(args, workdir, timeout=240)
    assert done.returncode == 0, f"rlscale {shlex.join(args)}\n{done.stdout}\n{done.stderr}"
    if args[:2] == ["run", "--dry-run"]:
        assert "the config is valid" in done.stdout
    if bench:
        check_bench(args, workdir)


@pytest.mark.e2e
@pytest.mark.parametrize("command", [c for c in COMMANDS if plan(c)[0] == "bench"])
def test_readme_benchmark_runs_short(command, workdir):
    """The README's benchmarks that start Ray and vLLM, with SHORT_BENCH's options."""
    _, args = plan(command)
    args = [*args, "--json", "bench.json"]
    done = rlscale(args, workdir, timeout=600)
    assert done.returncode == 0, f"rlscale {shlex.join(args)}\n{done.stdout}\n{done.stderr[-3000:]}"
    assert "ratio" in done.stdout
    check_bench(args, workdir)


@pytest.mark.e2e
@pytest.mark.timeout(1800)  # five real runs, each starting Ray and vLLM: 15 min on a busy 2-core machine
def test_readme_runs_for_real_with_few_steps(workdir):
    """`make demo` (as `rlscale run configs/demo.yaml`), then every README `rlscale run` command
    for real with FEW_STEPS appended, the resumes continuing that demo run by a step."""
    shutil.rmtree(workdir / "runs" / "demo")
    demo = rlscale(["run", "configs/demo.yaml", *FEW_STEPS], workdir, timeout=600)
    assert demo.returncode == 0, demo.stderr
    # start-up: a line per phase with its duration, then the total (the step bar starts after it)
    lines = demo.stdout.splitlines()
    phases = ("importing torch, Ray and transformers", "environment arithmetic")
    phases += ("model builtin:tiny (build or load)", "Ray", "learner", "fitting the curves and plotting")
    for phase in phases:
        assert any(re.fullmatch(rf"{re.escape(phase)}: \d+\.\d s", line) for line in lines), phase
    assert any(re.fullmatch(r"1 rollout engine \(vLLM\): \d+\.\d s", line) for line in lines)
    (total,) = [line for line in lines if line.startswith("start-up: ")]
    assert total.endswith("; training to step 2")
    steps = 2
    for command in COMMANDS:
        how, args = plan(command)
        if how != "e2e":
            continue
        if args[0] != "run":
            pass
        elif "--resume" in args:
            steps += 1
            args = [*args, f"trainer.steps={steps}"]
        else:
            args = [*args, *FEW_STEPS]
        done = rlscale(args, workdir, timeout=600)
        assert done.returncode == 0, f"rlscale {shlex.join(args)}\n{done.stderr[-3000:]}"
        if args[0] == "run":
            assert "run directory:" in done.stdout
