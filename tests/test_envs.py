"""The demo environments: seeded task generation and their exact-answer verifiers."""

from __future__ import annotations

import random

import pytest

from rlscale.envs import env_names, make_env
from rlscale.envs.countdown import evaluate


def test_registry_lists_builtins():
    assert {"arithmetic", "countdown"} <= set(env_names())
    with pytest.raises(KeyError, match="unknown environment"):
        make_env("no-such-env")
    with pytest.raises(ValueError, match="bad keyword arguments"):
        make_env("arithmetic", nonsense=1)


def test_arithmetic_is_seeded_and_correct():
    env = make_env("arithmetic", digits=3, terms=3, ops="+-*")
    a = [env.sample(random.Random(5)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    rng = random.Random(0)
    for _ in range(200):
        task = env.sample(rng)
        expr = task.prompt.removesuffix("=")
        assert int(task.answer) == eval(expr)  # our own generated expression, not model output
        assert env.score(task, task.answer).correct


@pytest.mark.parametrize(
    ("response", "correct"),
    [
        ("82", True),
        (" 82 ", True),
        ("082", True),
        ("83", False),
        ("8 2", False),
        ("82.0", False),
        ("", False),
        ("x", False),
        ("-82", False),
        ("9" * 50, False),
    ],
)
def test_arithmetic_verdicts(response, correct):
    env = make_env("arithmetic")
    from rlscale.envs.base import Task

    verdict = env.score(Task("37+45=", "82"), response)
    assert verdict.correct is correct and verdict.score == float(correct)


def test_arithmetic_asks_in_words_and_judges_free_form_answers():
    """The prompt a chat model gets, and the math scorer on how such a model answers."""
    plain, worded = (
        make_env("arithmetic", digits=2),
        make_env("arithmetic", digits=2, prompt_template="Compute {spaced}. ({expr})", scorer="math"),
    )
    task, worded_task = plain.sample(random.Random(3)), worded.sample(random.Random(3))
    expr = task.prompt.removesuffix("=")
    assert worded_task.answer == task.answer  # same draw, only the wording differs
    spaced = expr.replace("+", " + ").replace("-", " - ")
    assert worded_task.prompt == f"Compute {spaced}. ({expr})"
    from rlscale.envs.base import Task

    seven = Task("Compute 3 + 4.", "7")
    verdicts = {
        "3 + 4 = 7": True,
        "The answer is $\\boxed{7}$.": True,
        "7": True,
        "Sure! 3 + 4 equals 7. Let me know if you need anything else.": True,
        "3 + 4 = 8": False,
        "The sum is 8, not 7 - wait, it is 8.": False,
        "": False,
    }
    for response, correct in verdicts.items():
        assert worded.score(seven, response).correct is correct, response
    assert not plain.score(seven, "3 + 4 = 7").correct  # the bare scorer wants one integer
    with pytest.raises(ValueError, match="scorer must be one of integer, math"):
        make_env("arithmetic", scorer="llm")
    with pytest.raises(ValueError, match="must contain"):
        make_env("arithmetic", prompt_template="What is it?")


def test_countdown_demonstrations_reach_the_target():
    env = make_env("countdown", numbers=4, max_number=20, ops="+-*/")
    rng = random.Random(1)
    for _ in range(100):
        task = env.sample(rng)
        assert task.prompt.endswith(f" to {task.meta['target']}:")
        assert env.score(task, task.answer).correct


@pytest.mark.parametrize(
    ("response", "correct", "reason"),
    [
        ("3*5+7", True, "correct"),
        ("7+3*5", True, "correct"),
        ("(7+3)*5", False, "evaluates to 50"),
        ("3*5+7+7", False, "uses a number not given"),
        ("3*5+8", False, "uses a number not given"),
        ("22", False, "uses a number not given"),
        ("__import__('os').system('true')", False, "not an arithmetic expression"),
        ("3**5", False, "not an arithmetic expression"),
        ("", False, "not an arithmetic expression"),
        ("(" * 5000 + "3" + ")" * 5000, False, "not an arithmetic expression"),
        ("7/0", False, "not an arithmetic expression"),
    ],
)
def test_countdown_verdicts(response, correct, reason):
    from rlscale.envs.base import Task

    env = make_env("countdown")
    task = Task("3 5 7 to 22:", "3*5+7", {"numbers": [3, 5, 7], "target": 22})
    verdict = env.score(task, response)
    assert verdict.correct is correct and reason in verdict.reason


def test_countdown_evaluate_is_exact():
    assert evaluate("7/2*2") == 7 and evaluate("1/3+1/3+1/3") == 1
