"""Every `rlscale ...` command in the README runs as written.

The commands are read from the README's ```bash blocks and its inline code. Each runs in a
fresh folder holding links to configs/ and experiments/ and, as `runs/demo` (and `runs/a`,
`runs/b`), copies of the checked-in demo run, so the README's paths resolve as they do after
`make demo`. Cheap commands run for real (fits with fewer bootstrap resamples); `rlscale run`
commands run as `--dry-run` here and for real, with a few steps, in the e2e test; commands that
need a cluster or take minutes (benchmarks, whole sweeps) are listed with the reason they are
not run.
"""

from __future__ import annotations

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
        return "skip: a benchmark takes minutes", args
    if what in ("fit", "plot", "backtest") and "--help" not in args:
        return "now", [*args, "--bootstrap", "20"]
    return "now", args


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
    done = rlscale(args, workdir, timeout=240)
    assert done.returncode == 0, f"rlscale {shlex.join(args)}\n{done.stdout}\n{done.stderr}"
    if args[:2] == ["run", "--dry-run"]:
        assert "the config is valid" in done.stdout


@pytest.mark.e2e
def test_readme_runs_for_real_with_few_steps(workdir):
    """`make demo` (as `rlscale run configs/demo.yaml`), then every README `rlscale run` command
    for real with FEW_STEPS appended, the resumes continuing that demo run by a step."""
    shutil.rmtree(workdir / "runs" / "demo")
    demo = rlscale(["run", "configs/demo.yaml", *FEW_STEPS], workdir, timeout=600)
    assert demo.returncode == 0, demo.stderr
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
