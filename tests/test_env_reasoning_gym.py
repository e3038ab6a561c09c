"""reasoning_gym: reasoning-gym's procedural datasets by name, scored by their own scorers."""

from __future__ import annotations

import random

import pytest

from rlscale.envs import make_env


def test_dataset_by_name_with_its_own_kwargs_and_seed():
    env = make_env("reasoning_gym", dataset="basic_arithmetic", size=50, seed=3, min_terms=2, max_terms=2)
    assert len(env.dataset) == 50 and env.dataset.config.max_terms == 2
    task = env.sample(random.Random(0))
    assert task.meta["dataset"] == "basic_arithmetic" and 0 <= task.meta["index"] < 50
    assert task.prompt == task.meta["entry"]["question"]
    assert task.meta["entry"]["metadata"]["num_terms"] == 2  # the kwargs reached the dataset
    again = make_env("reasoning_gym", dataset="basic_arithmetic", size=50, seed=3, min_terms=2, max_terms=2)
    rng_a, rng_b = random.Random(9), random.Random(9)
    assert [env.sample(rng_a).prompt for _ in range(5)] == [again.sample(rng_b).prompt for _ in range(5)]
    other_seed = make_env("reasoning_gym", dataset="basic_arithmetic", size=50, seed=4)
    assert [other_seed.dataset[i]["question"] for i in range(5)] != [
        env.dataset[i]["question"] for i in range(5)
    ]


@pytest.mark.parametrize("dataset", ["basic_arithmetic", "letter_counting", "spell_backward", "gcd"])
def test_reference_answers_score_one_and_wrong_ones_less(dataset):
    env = make_env("reasoning_gym", dataset=dataset, size=20)
    rng = random.Random(1)
    for _ in range(10):
        task = env.sample(rng)
        right = env.score(task, env.demonstration(task))
        assert right.correct and right.score == 1.0
        assert env.score(task, f"thinking...<answer> {task.answer} </answer>").correct
        wrong = env.score(task, "<answer>zzz-not-it</answer>")
        assert not wrong.correct and wrong.score < 1.0 and dataset in wrong.reason


def test_a_scorer_that_raises_is_a_wrong_answer():
    env = make_env("reasoning_gym", dataset="prime_factorization", size=5)
    task = env.sample(random.Random(0))
    verdict = env.score(task, "zzz")  # its scorer calls int() on the answer
    assert not verdict.correct and "scorer rejected the answer" in verdict.reason
    assert env.score(task, task.answer).correct


def test_partial_credit_passes_through_but_is_not_correct():
    env = make_env("reasoning_gym", dataset="caesar_cipher", size=10)
    task = env.sample(random.Random(2))
    # reasoning-gym's default scorer gives len(answer)/len(response) when the answer is inside it
    partial = env.score(task, f"{task.answer} and more")
    assert 0 < partial.score < 1 and not partial.correct


def test_prompt_template_and_bad_configs():
    env = make_env("reasoning_gym", dataset="gcd", size=5, prompt_template="{question}\nAnswer: ")
    assert env.sample(random.Random(0)).prompt.endswith("\nAnswer: ")
    with pytest.raises(ValueError, match="unknown reasoning-gym dataset 'no_such'.*basic_arithmetic"):
        make_env("reasoning_gym", dataset="no_such")
    with pytest.raises(ValueError, match="bad keyword arguments"):
        make_env("reasoning_gym", dataset="gcd", not_a_gcd_option=1)


def test_datasets_without_a_reference_answer_have_no_demonstration():
    env = make_env("reasoning_gym", dataset="graph_color", size=5)
    task = env.sample(random.Random(0))
    assert task.answer == ""
    with pytest.raises(ValueError, match="no reference answer"):
        env.demonstration(task)
    assert not env.score(task, "<answer>nonsense</answer>").correct
