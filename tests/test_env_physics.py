"""physics: procedural problems with units, answers computed with pint, judged by the verifier."""

from __future__ import annotations

import math
import random
import re

import pytest

from rlscale.envs import make_env
from rlscale.envs.physics import KINDS
from rlscale.verifiers.physics import parse_quantity

NUMBER = r"(\d+(?:\.\d+)?)"


def sample_many(n=60, seed=0, **kwargs):
    env = make_env("physics", **kwargs)
    rng = random.Random(seed)
    return env, [env.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_demonstrations_are_correct_and_prompts_ascii(difficulty):
    env, tasks = sample_many(200, difficulty=difficulty)
    assert {t.meta["kind"] for t in tasks} == set(KINDS)
    for task in tasks:
        assert env.score(task, env.demonstration(task)).correct, task
        assert task.prompt.isascii() and task.prompt.endswith(f"Answer in {task.meta['unit']}.\n")
        # the gold answer is a plain number (no exponent form) in the unit asked for
        assert re.fullmatch(rf"-?{NUMBER} " + re.escape(task.meta["unit"]), task.answer)


def test_sampling_is_seeded():
    assert [t.prompt for t in sample_many(seed=5)[1]] == [t.prompt for t in sample_many(seed=5)[1]]
    assert [t.prompt for t in sample_many(seed=5)[1]] != [t.prompt for t in sample_many(seed=6)[1]]


def answer_value(task):
    return float(task.answer.split()[0])


# (prompt pattern, the answer by a textbook formula from the prompt's numbers, without pint)
HAND_WORKED = [
    (rf"accelerates at {NUMBER} m/s\^2 for {NUMBER} s\. How far", lambda a, t: 0.5 * a * t**2),
    (rf"at {NUMBER} km/h accelerates at {NUMBER} m/s\^2 for {NUMBER} s", lambda v, a, t: v / 3.6 + a * t),
    (rf"at {NUMBER} km/h brakes uniformly and stops after {NUMBER} km", lambda v, d: 2 * d / v * 60),
    (rf"accelerates a {NUMBER} kg box at {NUMBER} m/s\^2", lambda m, a: m * a),
    (rf"A {NUMBER} g ball goes from rest to {NUMBER} m/s in {NUMBER} ms", lambda m, v, t: m * v / t),
    (
        rf"A {NUMBER} kg crate .* force of {NUMBER} N; .* is {NUMBER}\. .* in {NUMBER} s",
        lambda m, f, mu, t: 0.5 * (f - mu * m * 9.81) / m * t**2 * 100,
    ),
    (rf"energy of a {NUMBER} kg object moving at {NUMBER} m/s", lambda m, v: 0.5 * m * v**2),
    (rf"dropped from {NUMBER} cm", lambda h: math.sqrt(2 * 9.81 * h / 100)),
    (rf"lifts a {NUMBER} t load by {NUMBER} m in {NUMBER} min", lambda m, h, t: m * 9.81 * h / (t * 60)),
    (rf"Convert {NUMBER} km/h to m/s", lambda x: x / 3.6),
    (rf"Convert {NUMBER} kWh to MJ", lambda x: x * 3.6),
    (rf"Convert {NUMBER} mi/h to m/s", lambda x: x * 1609.344 / 3600),
]


def test_answers_match_formulas_worked_by_hand():
    used = set()
    for difficulty in (1, 2, 3):
        for task in sample_many(150, difficulty=difficulty)[1]:
            for pattern, formula in HAND_WORKED:
                if match := re.search(pattern, task.prompt):
                    expected = formula(*map(float, match.groups()))
                    assert answer_value(task) == pytest.approx(expected, rel=1e-3), task.prompt
                    used.add(pattern)
    assert len(used) == len(HAND_WORKED)  # every formula met a problem


def test_difficulty_changes_the_problems():
    prompts = {d: " ".join(t.prompt for t in sample_many(150, difficulty=d)[1]) for d in (1, 2, 3)}
    assert "km/h" not in prompts[1] and " g ball" not in prompts[1]  # level 1 is all SI
    assert "km/h" in prompts[2] and " g ball" in prompts[2] and " cm." in prompts[2]  # one conversion
    assert "friction" in prompts[3] and "brakes" in prompts[3] and "kWh" not in prompts[2]
    assert "kWh" in prompts[3] or "mi/h" in prompts[3] or "ft/s" in prompts[3]
    mean_length = {d: len(prompts[d]) for d in prompts}
    assert mean_length[1] < mean_length[3]


def test_kinds_filter():
    _, tasks = sample_many(40, kinds=("units",), difficulty=2)
    assert {t.meta["kind"] for t in tasks} == {"units"}
    assert all(t.prompt.startswith("Convert ") for t in tasks)
    with pytest.raises(ValueError, match="unknown: \\['optics'\\]"):
        make_env("physics", kinds=("optics",))
    with pytest.raises(ValueError, match="difficulty"):
        make_env("physics", difficulty=4)


def test_verdicts_for_equivalent_wrong_and_mismatched_answers():
    env, tasks = sample_many(40, kinds=("kinematics",), difficulty=1)
    task = tasks[0]
    gold = parse_quantity(task.answer)
    assert env.score(task, f"{gold.to('cm').magnitude} cm").correct  # same length in other units
    assert env.score(task, f"so the distance is \\boxed{{{task.answer}}}").correct
    wrong = env.score(task, f"{gold.magnitude * 1.5:.4g} m")
    assert not wrong.correct and "is not" in wrong.reason
    mismatch = env.score(task, f"{gold.magnitude} kg")
    assert not mismatch.correct and "dimension mismatch" in mismatch.reason
    assert env.score(task, "I am not sure").reason == "no answer found"


def test_rel_tol_is_configurable():
    strict, tasks = sample_many(5, kinds=("energy",), rel_tol=0.01)
    loose = make_env("physics", kinds=("energy",), rel_tol=0.05)
    task = tasks[0]
    off_by_3_percent = f"{answer_value(task) * 1.03:.6g} {task.meta['unit']}"
    assert not strict.score(task, off_by_3_percent).correct
    assert loose.score(task, off_by_3_percent).correct
