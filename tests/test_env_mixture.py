"""mixture: environments mixed by weight, tasks tagged with their environment."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rlscale.envs import make_env
from rlscale.envs.mixture import Mixture

COMPONENTS = [
    {"name": "arithmetic", "weight": 3, "kwargs": {"digits": 1}},
    {"name": "linear_equations", "weight": 1},
    ("arithmetic", 1, {"digits": 4, "min_digits": 4}, "arith4"),
]


def test_weights_set_the_mix_and_tasks_are_tagged():
    env = make_env("mixture", components=COMPONENTS)
    assert isinstance(env, Mixture) and env.labels == ["arithmetic", "linear_equations", "arith4"]
    rng = random.Random(0)
    tasks = [env.sample(rng) for _ in range(5000)]
    share = {label: n / len(tasks) for label, n in Counter(t.meta["env"] for t in tasks).items()}
    assert share["arithmetic"] == pytest.approx(0.6, abs=0.03)
    assert share["linear_equations"] == pytest.approx(0.2, abs=0.03)
    assert share["arith4"] == pytest.approx(0.2, abs=0.03)
    # each component's own sampler made its tasks
    assert all(t.prompt.startswith("Solve for x") for t in tasks if t.meta["env"] == "linear_equations")
    assert all(
        len(t.prompt.split("+" if "+" in t.prompt else "-")[0]) == 4
        for t in tasks
        if t.meta["env"] == "arith4"
    )
    again = random.Random(0)
    assert [env.sample(again) for _ in range(50)] == tasks[:50]  # seeded


def test_score_and_demonstration_go_to_the_task_s_environment():
    env = make_env("mixture", components=COMPONENTS)
    rng = random.Random(1)
    tasks = [env.sample(rng) for _ in range(60)]
    for task in tasks:
        assert env.score(task, env.demonstration(task)).correct
    linear = next(t for t in tasks if t.meta["env"] == "linear_equations")
    assert env.demonstration(linear).startswith("\\boxed{")  # linear_equations' own demonstration
    arithmetic = next(t for t in tasks if t.meta["env"] == "arithmetic")
    assert env.score(arithmetic, f"\\boxed{{{arithmetic.answer}}}").reason == "not a single integer"
    verdicts = [env.score(t, env.demonstration(t) if i % 2 else "wrong") for i, t in enumerate(tasks)]
    assert [v.correct for v in verdicts] == [bool(i % 2) for i in range(len(tasks))]


def test_zero_weight_component_is_never_drawn():
    env = make_env("mixture", components=[("arithmetic", 1), ("countdown", 0)])
    rng = random.Random(2)
    assert {env.sample(rng).meta["env"] for _ in range(300)} == {"arithmetic"}


@pytest.mark.parametrize(
    ("components", "message"),
    [
        ([], "at least one component"),
        ([("arithmetic", 1), ("arithmetic", 2)], "labels must be unique; repeated: \\['arithmetic'\\]"),
        ([("arithmetic", -1), ("countdown", 1)], "weights must be >= 0"),
        ([("arithmetic", 0)], "positive sum"),
        ([("arithmetic", "heavy")], "weight must be a number"),
        ([{"name": "arithmetic", "wieght": 2}], "unknown keys \\['wieght'\\]"),
        ([("arithmetic",)], "expected \\(name, weight"),
        ([("guess_number", 1)], "not a single-turn Environment"),
        ([("no_such_env", 1)], "unknown environment"),
    ],
)
def test_bad_mixtures_are_refused(components, message):
    with pytest.raises((ValueError, KeyError), match=message):
        make_env("mixture", components=components)
