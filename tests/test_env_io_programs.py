"""io_programs: procedural stdin/stdout tasks scored in the code sandbox, and a GRPO step on them."""

from __future__ import annotations

import random

import pytest

from rlscale.envs import make_env
from rlscale.envs.base import Task
from rlscale.envs.io_programs import KINDS, program_of


def test_every_kind_has_a_passing_solution_and_wrong_programs_fail():
    env = make_env("io_programs")
    rng = random.Random(0)
    tasks = {}
    while len(tasks) < len(KINDS):
        task = env.sample(rng)
        tasks.setdefault(task.meta["kind"], task)
    for kind, task in tasks.items():
        verdict = env.score(task, env.demonstration(task))
        assert verdict.correct and verdict.reason == "passed 3 cases", (kind, verdict)
        assert not env.score(task, "print(0)").correct
        assert not env.score(task, "while True: pass").correct


def test_prompt_shows_one_worked_example_and_the_hidden_cases_differ():
    env = make_env("io_programs", kinds=["sum"], cases=4)
    task = env.sample(random.Random(1))
    description, example_in, example_out = task.prompt.splitlines()
    assert description == "# sum of the numbers"
    numbers = [int(n) for n in example_in.removeprefix("# in: ").split()]
    assert example_out == f"# out: {sum(numbers)}"
    assert len(task.meta["cases"]) == 4
    assert all(expected == str(sum(map(int, stdin.split()))) for stdin, expected in task.meta["cases"])


def test_a_program_that_only_prints_the_example_fails():
    env = make_env("io_programs", kinds=["max"])
    task = env.sample(random.Random(2))
    example_out = task.prompt.splitlines()[2].removeprefix("# out: ")
    cases = [Task(task.prompt, task.answer, {**task.meta, "cases": [(i, o)]}) for i, o in task.meta["cases"]]
    assert not all(env.score(case, f"print({example_out})").correct for case in cases)


def test_fenced_code_is_extracted():
    assert program_of("here:\n```python\nprint(1)\n```\nbye") == "print(1)\n"
    assert program_of("print(2)") == "print(2)"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="subset"):
        make_env("io_programs", kinds=["nope"])


def test_io_programs_train_through_the_real_stack(ray_session, tmp_path):
    """A GRPO step over vLLM + learner: every sample is scored by sandboxed runs per case."""
    from rlscale.config_io import build_config
    from rlscale.orchestrator import Orchestrator

    cfg = build_config(
        {
            "name": "io",
            "output_dir": str(tmp_path),
            "env": {"name": "io_programs", "kwargs": {"kinds": ["reverse", "upper"], "cases": 2}},
            "rollout": {"group_size": 2, "prompts_per_step": 3, "max_tokens": 24},
            "learner": {"lr": 1e-2},
            "algo": {"kl_coef": 0.0},
            "builtin": {"sft_steps": 20, "sft_batch": 16},
        },
        source="io",
    )
    orch = Orchestrator(cfg)
    assert orch.env.uses_sandbox
    try:
        record = orch.step(1)
    finally:
        orch.shutdown()
    assert record["samples"] == 6
    assert 0.0 <= record["reward/mean"] <= 1.0 and record["time/verify_s"] > 0


def test_config_fits_the_builtin_models():
    from pathlib import Path

    from rlscale.config_io import load_config
    from rlscale.models import CHARS, MAX_POSITIONS

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "code_io.yaml")
    assert cfg.env.name == "io_programs" and cfg.model.startswith("builtin:")
    env = make_env(cfg.env.name, **cfg.env.kwargs)
    rng = random.Random(0)
    tasks = [env.sample(rng) for _ in range(256)]
    assert all(set(t.prompt + env.demonstration(t)) <= set(CHARS) for t in tasks)
    assert 2 * max(len(t.prompt) for t in tasks) + cfg.rollout.max_tokens + 8 <= MAX_POSITIONS
    assert all(len(env.demonstration(t)) < cfg.rollout.max_tokens for t in tasks)
