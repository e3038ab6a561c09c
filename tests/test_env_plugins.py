"""Adding environments: README's `reverse` example as written, an entry-point plugin package
installed for the test, and `rlscale envs` listing what is registered.

Each check runs in a fresh interpreter so the registry and the entry-point cache start clean.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_python(code: str, *, cwd: Path = REPO) -> dict:
    """Run code in a fresh interpreter (cwd first on its path); it prints one JSON object."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Adding an environment", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks and blocks[0].startswith("# envs/reverse.py"), "README's example moved or changed"
    return blocks[0]


def readme_run_command() -> tuple[str, list[str]]:
    """The config and overrides of README's `rlscale run ... env.name=reverse ...` line."""
    readme = (REPO / "README.md").read_text()
    command = re.search(r"`rlscale run (\S+) ([^`]*env\.name=reverse[^`]*)`", readme)
    assert command, "README no longer shows how to run the reverse example"
    return str(REPO / command[1]), shlex.split(command[2])


@pytest.fixture(scope="module")
def readme_reverse(tmp_path_factory):
    """Follow README: its file as envs/reverse.py (in a copy of the package's folders run from
    their parent, so that it comes first on the path and the repository stays untouched; envs/ is
    linked into the package as rlscale/envs, as in the repository), then its run command's config."""
    root = tmp_path_factory.mktemp("readme")
    for folder in ("rlscale", "envs", "verifiers"):
        shutil.copytree(
            REPO / folder, root / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    (root / "envs" / "reverse.py").write_text(readme_example())
    config, overrides = readme_run_command()
    code = """
        import json, random
        import rlscale.envs as envs
        from rlscale.envs import env_class, env_names, make_env
        from rlscale.config_io import load_config

        env = make_env("reverse", length=6)
        tasks = [env.sample(random.Random(0)) for _ in range(2)] + [env.sample(random.Random(1))]
        task = tasks[0]
        cfg = load_config(CONFIG, OVERRIDES)
        try:
            make_env(cfg.env.name, **cfg.env.kwargs)
            config_error = None
        except Exception as error:
            config_error = str(error)
        print(json.dumps({
            "envs_path": envs.__file__,
            "reverse_path": __import__("sys").modules[env_class("reverse").__module__].__file__,
            "registered": "reverse" in env_names(),
            "description": env_class("reverse").description,
            "prompts": [t.prompt for t in tasks],
            "answer": task.answer,
            "right": env.score(task, task.answer).correct,
            "right_padded": env.score(task, " " + task.answer + "\\n").correct,
            "wrong": [env.score(task, "z" + task.answer).correct, env.score(task, "z" + task.answer).reason],
            "empty": env.score(task, "").correct,
            "demonstration_scores": env.score(task, env.demonstration(task)).correct,
            "config_env": [cfg.env.name, cfg.env.kwargs],
            "config_error": config_error,
        }))
    """
    code = code.replace("CONFIG", repr(config)).replace("OVERRIDES", repr(overrides))
    return run_python(code, cwd=root) | {"root": str(root)}


def test_readme_reverse_example_works_as_written(readme_reverse):
    result = readme_reverse
    assert result["envs_path"].startswith(result["root"])  # README's file, not a stand-in
    assert result["reverse_path"] == f"{result['root']}/rlscale/envs/reverse.py"
    assert result["registered"] and result["description"] == "reverse a string of letters"
    prompts = result["prompts"]
    assert prompts[0] == prompts[1] != prompts[2]  # seeded
    assert all(re.fullmatch(r"[a-h]{6}>", p) for p in prompts)  # length=6 reached it
    assert result["answer"] == prompts[0][:-1][::-1]
    assert result["right"] and result["right_padded"] and result["demonstration_scores"]
    assert result["wrong"] == [False, f"expected {result['answer']}"]
    assert result["empty"] is False
    name, kwargs = result["config_env"]
    assert name == "reverse" and kwargs["length"] == 6


def test_readme_run_command_builds_the_reverse_env(readme_reverse):
    assert readme_reverse["config_error"] is None


PLUGIN_ENV = """
import random

from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict


class MyTask(Environment):
    description = "plugin test task: say the number twice"

    def __init__(self, upto: int = 9):
        self.upto = upto

    def sample(self, rng: random.Random) -> Task:
        n = rng.randint(0, self.upto)
        return Task(prompt=f"{n}?", answer=f"{n}{n}")

    def score(self, task: Task, response: str) -> Verdict:
        return Verdict.right() if response.strip() == task.answer else Verdict.wrong("not twice")
"""

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "rlscale-test-plugin-mypkg"
version = "0.0.1"

[project.entry-points."rlscale.envs"]
mytask = "mypkg.env:MyTask"

[tool.setuptools]
packages = ["mypkg"]
"""


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """A separately installed package publishing `mytask` under the `rlscale.envs` entry points."""
    source = tmp_path_factory.mktemp("plugin")
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (source / "mypkg").mkdir()
    (source / "mypkg" / "__init__.py").write_text("")
    (source / "mypkg" / "env.py").write_text(PLUGIN_ENV)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    install = pip + ["install", "--no-deps", "--no-build-isolation", "--no-index", str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    yield "mytask"
    subprocess.run(pip + ["uninstall", "-y", "rlscale-test-plugin-mypkg"], capture_output=True, timeout=120)


def test_entry_point_plugin_is_registered_and_usable(installed_plugin):
    result = run_python(
        """
        import json, random
        from rlscale.envs import env_class, env_names, make_env

        env = make_env("mytask", upto=3)
        task = env.sample(random.Random(0))
        print(json.dumps({
            "names": env_names(),
            "cls": env_class("mytask").__module__ + "." + env_class("mytask").__name__,
            "name_attr": env_class("mytask").name,
            "prompts": sorted({env.sample(random.Random(s)).prompt for s in range(40)}),
            "right": env.score(task, task.answer).correct,
            "wrong": env.score(task, "0").reason,
        }))
        """
    )
    assert installed_plugin in result["names"] and {"arithmetic", "physics", "humaneval"} <= set(
        result["names"]
    )
    assert result["cls"] == "mypkg.env.MyTask" and result["name_attr"] == "mytask"
    assert result["prompts"] == ["0?", "1?", "2?", "3?"]  # its own kwargs reached it
    assert result["right"] and result["wrong"] == "not twice"


def test_rlscale_envs_lists_every_environment_with_its_description(installed_plugin):
    listing = subprocess.run([BIN / "rlscale", "envs"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    registry = run_python(
        """
        import json
        from rlscale.envs import env_class, env_names
        print(json.dumps({name: env_class(name).description for name in env_names()}))
        """
    )
    lines = listing.stdout.strip().splitlines()
    assert len(lines) == len(registry) and installed_plugin in registry
    for line, (name, description) in zip(lines, sorted(registry.items())):
        assert line.split(None, 1) == [name, description]
        assert description and "\n" not in description  # one line each
    expected = {"arithmetic", "countdown", "math_file", "humaneval", "physics", "reasoning_gym"}
    expected |= {"guess_number", "mixture", "linear_equations"}
    assert expected <= set(registry)
