"""Multi-turn environments (gymnasium API, text in and out), guess_number, and run_episodes."""

from __future__ import annotations

import random
import re
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

from rlscale.envs import make_env
from rlscale.envs.base import Environment, MultiTurnEnvironment, SingleTurnEpisode, Task, as_episode
from rlscale.envs.episodes import run_episodes
from rlscale.verifiers import Verdict


def binary_search_policy(transcripts):
    """A scripted player: halve the interval the transcript still allows."""
    actions = []
    for transcript in transcripts:
        if not transcript.prompt.startswith("guess 1-"):  # a single-turn task: reply with its answer
            actions.append(transcript.prompt.removeprefix("answer:"))
            continue
        low, high = 1, int(re.match(r"guess 1-(\d+):", transcript.prompt)[1])
        for turn in transcript.turns:
            guess = int(turn.action)
            low, high = (guess + 1, high) if "higher" in turn.observation else (low, guess - 1)
        actions.append((str((low + high) // 2), {"interval": (low, high)}))
    return actions


class Echo(Environment):
    """A single-turn env for the tests: the right response is the text after 'answer:'."""

    def sample(self, rng):
        word = rng.choice(["cat", "dog"])
        return Task(prompt=f"answer:{word}", answer=word)

    def score(self, task, response):
        return Verdict.right() if response == task.answer else Verdict.wrong(f"expected {task.answer}")


def test_guess_number_follows_the_gymnasium_api():
    env = make_env("guess_number", high=20)
    assert isinstance(env, gymnasium.Env) and isinstance(env, MultiTurnEnvironment)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no spec, cannot test render modes"
        check_env(env)  # gymnasium's own conformance checks: seeding, spaces, step/reset signatures
    observation, info = env.reset(seed=3)
    assert observation == "guess 1-20:" and env.reset(seed=3)[1]["target"] == info["target"]
    targets = {env.reset(seed=s)[1]["target"] for s in range(40)}
    assert len(targets) > 10 and targets <= set(range(1, 21))


def test_higher_lower_and_reward_when_found():
    env = make_env("guess_number", high=100)
    env.reset(options={"task": Task("", "37", {"target": 37})})
    assert env.step("50") == ("\nlower:", 0.0, False, False, {})
    assert env.step("I guess 20") == ("\nhigher:", 0.0, False, False, {})
    assert env.step("abc")[0] == "\nnot a number:"
    observation, reward, terminated, truncated, info = env.step("37")
    assert (observation, reward, terminated, truncated) == ("\ncorrect", 1.0, True, False)
    assert info["verdict"].correct and info["verdict"].reason == "found in 4 turns"


def test_running_out_of_turns_loses_and_shaping_rewards_consistent_guesses():
    env = make_env("guess_number", high=100, max_turns=3, shaping=0.1)
    env.reset(options={"task": Task("", "80", {"target": 80})})
    assert env.step("50")[1] == 0.1  # inside [1, 100]
    assert env.step("40")[1] == 0.0  # already ruled out by "higher"
    observation, reward, terminated, _, info = env.step("90")
    assert terminated and reward == 0.1 and observation == "\nlower"
    assert not info["verdict"].correct and "not found in 3 turns (it was 80)" in info["verdict"].reason
    assert make_env("guess_number", high=100).max_turns == 7  # enough for binary search
    with pytest.raises(ValueError):
        make_env("guess_number", high=1)


def test_demonstration_is_a_winning_binary_search_transcript():
    env = make_env("guess_number", high=100)
    for target in range(1, 101):
        task = Task(env._prompt(), str(target), {"target": target})
        demo = env.demonstration(task)
        assert demo.endswith(f"{target}\ncorrect")
        guesses = re.findall(r"(?:^|:)(\d+)", demo)
        # each action ends where the env's reply starts, at its action_stop
        assert all(demo.count(guess + env.action_stop[0]) for guess in guesses)
        # replaying its guesses through the env reproduces the demonstration exactly
        env.reset(options={"task": task})
        replay = ""
        for guess in guesses:
            observation, reward, terminated, *_ = env.step(guess)
            replay += guess + observation
        assert replay == demo and terminated and reward == 1.0


def test_single_turn_env_is_a_one_step_episode():
    task = Task("answer:cat", "cat")
    episode = as_episode(Echo(), task)
    assert isinstance(episode, SingleTurnEpisode)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(episode, skip_render_check=True)
    assert episode.reset() == ("answer:cat", {"task": task})
    observation, reward, terminated, truncated, info = episode.step("dog")
    assert (reward, terminated, truncated) == (0.0, True, False) and info["verdict"].reason == "expected cat"


def test_as_episode_gives_each_multi_turn_episode_its_own_state():
    env = make_env("guess_number", high=10)
    task = env.sample(random.Random(0))
    first, second = as_episode(env, task), as_episode(env, task)
    assert (
        first.reset()[1]["target"] == second.reset(options={"task": None})[1]["target"] == task.meta["target"]
    )
    first.step("1" if task.meta["target"] != 1 else "2")
    assert first.unwrapped.turns == 1 and second.unwrapped.turns == 0 and env.target is None


def test_run_episodes_mixes_multi_and_single_turn_with_a_batched_policy():
    guess, echo = make_env("guess_number", high=100), Echo()
    rng = random.Random(5)
    pairs = [(guess, guess.sample(rng)) for _ in range(6)] + [(echo, echo.sample(rng)) for _ in range(3)]
    batch_sizes = []

    def policy(transcripts):
        batch_sizes.append(len(transcripts))
        return binary_search_policy(transcripts)

    results = run_episodes(pairs, policy, max_turns=10)
    assert len(results) == 9 and batch_sizes[0] == 9  # every episode's first action in one batch
    assert batch_sizes == sorted(batch_sizes, reverse=True) and batch_sizes[1] <= 6  # single-turn done
    for (env, task), result in zip(pairs, results):
        assert result.done and result.correct and result.reward == 1.0 and result.error is None
        if env is echo:
            assert result.text() == task.prompt + task.answer and result.turn_rewards == [1.0]
        else:
            assert result.text() == task.prompt + guess.demonstration(task)  # binary search = the demo
            assert result.turn_rewards[-1] == 1.0 and sum(result.turn_rewards[:-1]) == 0
            assert result.turns[0].payload == {"interval": (1, 100)}  # the policy's payload is kept


def test_run_episodes_caps_turns_and_survives_environment_errors():
    guess = make_env("guess_number", high=1000, max_turns=50, shaping=0.1)
    task = guess.sample(random.Random(1))
    capped = run_episodes([(guess, task)], lambda ts: ["1"] * len(ts), max_turns=3)[0]
    assert not capped.correct and capped.verdict.reason == "no result within 3 turns"
    assert len(capped.turns) == 3 and capped.turn_rewards == [0.1, 0.0, 0.0]

    class Broken(Echo):
        def score(self, task, response):
            raise RuntimeError("boom")

    broken = run_episodes([(Broken(), Task("answer:x", "x"))], lambda ts: ["x"], max_turns=1)[0]
    assert broken.error == "RuntimeError('boom')" and broken.reward == 0.0 and not broken.correct
    with pytest.raises(ValueError, match="returned 0 actions for 1"):
        run_episodes([(Echo(), Task("answer:x", "x"))], lambda ts: [], max_turns=1)
    with pytest.raises(ValueError, match="max_turns"):
        run_episodes([], binary_search_policy, max_turns=0)


def test_an_episode_ended_without_a_verdict_is_judged_by_its_last_reward():
    class TwoSteps(MultiTurnEnvironment):
        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.turns = 0
            return "go:", {}

        def step(self, action):
            self.turns += 1
            return f"[{self.turns}]", 0.5, False, self.turns >= 2, {}  # truncated, no verdict in info

    result = run_episodes([(TwoSteps(), Task("", ""))], lambda ts: ["a"] * len(ts), max_turns=5)[0]
    assert result.text() == "go:a[1]a[2]" and result.turn_rewards == [0.5, 0.5] and result.reward == 1.0
    assert result.verdict == Verdict(0.5, False, "episode truncated")
