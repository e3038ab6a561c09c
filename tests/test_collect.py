"""The collect stage without Ray or vLLM: a scripted generator, real environments and verifiers."""

from __future__ import annotations

import time

import pytest
import torch

from rlscale.batch import Sample
from rlscale.collect import Collector, derived_seed, step_bounded
from rlscale.config_io import build_config
from rlscale.envs import make_env
from rlscale.models import build_tokenizer
from rlscale.prompts import PromptRenderer


class ScriptedGenerator:
    """Answers each request with `answers(prompt_text)`; records every call."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.calls = tokenizer, answers, []

    def __call__(self, prompts, *, n, sampling, seeds):
        self.calls.append({"prompts": prompts, "n": n, "seeds": seeds, "stop": sampling.stop})
        groups = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt)
            outs = [self.tokenizer.encode(a) for a in self.answers(text, n)]
            groups.append([Sample(ids, [-0.5] * len(ids), False) for ids in outs])
        return groups


def _config(**sections):
    base = {"env": {"name": "arithmetic", "kwargs": {"digits": 1, "ops": "+"}}, "algo": {"kl_coef": 0.0}}
    return build_config({**base, **sections}, source="test")


def _collector(cfg, answers):
    tok = build_tokenizer()
    env = make_env(cfg.env.name, **cfg.env.kwargs)
    gen = ScriptedGenerator(tok, answers)
    return Collector(env, PromptRenderer(cfg.prompt, tok), tok, gen, cfg=cfg), gen, tok


def _right_then_wrong(text, n):
    """Half the group right, half wrong: "a+b=" -> the sum, then the sum + 1."""
    a, b = text.rstrip("=").split("+")
    right = str(int(a) + int(b))
    return [right if j % 2 == 0 else str(int(right) + 1) for j in range(n)]


def test_single_turn_groups_one_request_per_prompt_and_rewards_from_the_verifier():
    cfg = _config(rollout={"group_size": 4, "prompts_per_step": 3, "max_tokens": 4})
    collector, gen, tok = _collector(cfg, _right_then_wrong)
    got = collector.collect(step=7)
    # one generation call: each prompt once, n = G, seeds derived from (seed, step, refill, prompt)
    assert len(gen.calls) == 1 and gen.calls[0]["n"] == 4 and len(gen.calls[0]["prompts"]) == 3
    assert gen.calls[0]["seeds"] == [derived_seed(0, "sample", 7, 0, i) for i in range(3)]
    assert len(got.batch.groups) == 3 and got.batch.group_size == 4
    for group, task in zip(got.batch.groups, got.tasks):
        assert tok.decode(group.prompt) == task.prompt  # the prompt once per group
        assert group.rewards == [1.0, 0.0, 1.0, 0.0]
        assert all(s.mask() == [1.0] * len(s.token_ids) for s in group.samples)
    assert got.scores.rewards.tolist() == [[1.0, 0.0, 1.0, 0.0]] * 3
    assert got.scores.correct.sum() == 6 and got.scores.errors.sum() == 0


def test_dynamic_sampling_refills_until_enough_groups_carry_signal():
    """Tasks whose first operand is even get all-right groups (no signal): DAPO drops them and
    draws more, up to max_refill_rounds; at most prompts_per_step groups go to the learner."""

    def answers(text, n):
        a, b = text.rstrip("=").split("+")
        if int(a) % 2 == 0:
            return [str(int(a) + int(b))] * n
        return _right_then_wrong(text, n)

    cfg = _config(
        algo={"name": "dapo", "overlong_buffer": 2},
        rollout={"group_size": 2, "prompts_per_step": 6, "max_tokens": 4, "max_refill_rounds": 3},
    )
    collector, gen, _ = _collector(cfg, answers)
    got = collector.collect(step=1)
    kept = got.keep.nonzero().flatten().tolist()
    assert len(gen.calls) >= 2  # refilled
    assert len(got.batch.groups) == min(6, len(kept)) and len(kept) <= 6
    assert all(len(set(g.rewards)) == 2 for g in got.batch.groups)  # every kept group has signal
    assert torch.equal(got.keep, ~(got.scores.rewards == got.scores.rewards[:, :1]).all(1) & got.keep)


def test_multi_turn_episodes_keep_their_tokens_and_mask_the_environment():
    """guess_number with high=4: always guessing 2, then 3 ... the env's replies are masked."""
    cfg = build_config(
        {
            "env": {"name": "guess_number", "kwargs": {"high": 4}},
            "algo": {"kl_coef": 0.0},
            "rollout": {"group_size": 2, "prompts_per_step": 2, "max_tokens": 4, "max_turns": 3},
        },
        source="test",
    )

    def guesses(text, n):  # the turn is the number of answers the context holds so far
        turn = text.count("higher") + text.count("lower")
        return [["2\n", "3\n", "1\n"][turn]] * n

    collector, gen, tok = _collector(cfg, guesses)
    got = collector.collect(step=1)
    assert gen.calls[0]["n"] == 2 and gen.calls[0]["stop"] == ("\n",)  # turn 0: one request per group
    assert all(call["n"] == 1 for call in gen.calls[1:])  # later turns: one sample per episode
    for group, task in zip(got.batch.groups, got.tasks):
        target = task.meta["target"]
        for sample, reward in zip(group.samples, group.rewards):
            text = tok.decode(sample.token_ids)
            assert reward == (1.0 if target in (1, 2, 3) else 0.0)
            assert text.startswith("2\n")
            masked = tok.decode([t for t, m in zip(sample.token_ids, sample.mask()) if m == 0.0])
            trained = tok.decode([t for t, m in zip(sample.token_ids, sample.mask()) if m == 1.0])
            assert "higher" in masked or "lower" in masked or masked == ""  # the env's words only
            assert set(trained) <= set("123\n")  # the policy's guesses only
            assert len(sample.logprobs) == len(sample.token_ids)


class _Slow:
    def __init__(self, seconds):
        self.seconds = seconds

    def step(self, action):
        time.sleep(self.seconds)
        return "", 1.0, True, False, {}


def test_verify_timeouts_count_from_each_check_s_start_not_from_the_queue():
    """Two workers, a 0.3 s limit: two hung checks time out and give up their slots, so the
    six quick checks queued behind them finish and pass; the whole call takes ~0.3 s, not 1 s."""
    steps = [(_Slow(1.0), "a"), (_Slow(1.0), "b")] + [(_Slow(0.05), str(i)) for i in range(6)]
    start = time.monotonic()
    results = step_bounded(steps, workers=2, timeout_s=0.3)
    elapsed = time.monotonic() - start
    assert [isinstance(outcome, TimeoutError) for outcome, _ in results] == [True, True] + [False] * 6
    assert all(outcome[1] == 1.0 for outcome, _ in results[2:])
    assert 0.3 <= elapsed < 0.8


def test_a_crashing_step_is_returned_not_raised():
    class Broken:
        def step(self, action):
            raise RuntimeError("verifier bug")

    [(outcome, seconds)] = step_bounded([(Broken(), "x")], workers=1, timeout_s=1.0)
    assert isinstance(outcome, RuntimeError) and seconds < 1.0


@pytest.mark.parametrize("workers", [1, 4])
def test_results_keep_input_order(workers):
    steps = [(_Slow(0.01 * (5 - i)), str(i)) for i in range(5)]
    results = step_bounded(steps, workers=workers, timeout_s=5.0)
    assert [outcome[1] for outcome, _ in results] == [1.0] * 5
