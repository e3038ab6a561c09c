"""The learner's update on a real tiny transformers model, in process (no Ray)."""

from __future__ import annotations

import math

import pytest
import torch

from rlscale.batch import Batch, Group, Sample
from rlscale.config import LearnerConfig
from rlscale.config_io import build_config
from rlscale.learner import Learner

LEARNER = LearnerConfig(lr=1e-3, warmup_steps=0, grad_clip=1.0)


def _grouped(prompts, responses, logprobs, rewards, group_ids) -> Batch:
    """The batch of per-sequence lists whose sequences sit contiguous by group."""
    batch = Batch()
    for i, (prompt, response, lp, reward, group) in enumerate(
        zip(prompts, responses, logprobs, rewards, group_ids)
    ):
        if i == 0 or group != group_ids[i - 1]:
            batch.groups.append(Group(prompt, [], []))
        batch.groups[-1].samples.append(Sample(response, lp, False))
        batch.groups[-1].rewards.append(reward)
    return batch


def _snapshot(learner) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in learner.weights().tensors()}


def _algo(**overrides):
    """A preset resolved exactly as a config resolves it."""
    return build_config({"algo": {"name": "grpo", **overrides}}).algo


@pytest.fixture
def learner(tiny_model_dir):
    return Learner(
        str(tiny_model_dir),
        algo=_algo(kl_coef=0.0),
        learner=LEARNER,
        seed=0,
        max_tokens=4,
    )


def _batch(tok, rewards=(1.0, 0.0)):
    prompt = tok.encode("1+1=")
    good, bad = tok.encode("2") + [tok.eos_token_id], tok.encode("3") + [tok.eos_token_id]
    return prompt, good, bad, _grouped([prompt, prompt], [good, bad], [[0.0] * 2] * 2, list(rewards), [0, 0])


def _response_logp(learner, prompt, response) -> float:
    return sum(learner.sequence_logprobs([prompt + response])[0][len(prompt) - 1 :])


def test_grpo_update_raises_the_good_response_and_lowers_the_bad(learner, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt, good, bad, batch = _batch(tok)
    good0, bad0 = _response_logp(learner, prompt, good), _response_logp(learner, prompt, bad)
    for _ in range(10):
        stats = learner.update(batch)
    assert _response_logp(learner, prompt, good) > good0 + 1.0
    assert _response_logp(learner, prompt, bad) < bad0 - 1.0
    # the group's prompt (4 tokens) is computed once, then both 2-token responses: 8, not 12
    assert stats["learner/skipped_updates"] == 0 and stats["tokens/trained"] == 8
    assert stats["entropy/mean"] > 0 and math.isfinite(stats["grad_norm"])


def test_on_policy_loss_matches_hand_computation(tiny_model_dir):
    """Rewards (1, 0) in one group: mean 0.5, unbiased std 0.7071, so A = (+0.7071, -0.7071).
    On-policy the ratio is 1; token-mean over a 2-token and a 3-token response gives
    -(2 * 0.7071 - 3 * 0.7071) / 5 = 0.141421, and kl/old = 0."""
    from transformers import AutoTokenizer

    algo = _algo(kl_coef=0.0, loss_agg="token-mean")
    learner = Learner(str(tiny_model_dir), algo=algo, learner=LEARNER, seed=0, max_tokens=4)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tok.encode("1+1=")
    short, long = tok.encode("2") + [tok.eos_token_id], tok.encode("33") + [tok.eos_token_id]
    stats = learner.update(_grouped([prompt] * 2, [short, long], [[0.0] * 2, [0.0] * 3], [1.0, 0.0], [0, 0]))
    assert stats["loss/policy"] == pytest.approx(0.7071068 / 5, abs=1e-6)
    assert stats["kl/old"] == pytest.approx(0.0, abs=1e-7) and stats["clip/fraction"] == 0.0


def test_nan_update_is_skipped_and_weights_kept(learner, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = _snapshot(learner)
    stats = learner.update(_batch(tok, rewards=(float("nan"), 1.0))[3])
    assert stats["learner/skipped_updates"] == 1
    after = dict(learner.weights().tensors())
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_sequence_logprobs_match_a_plain_forward(learner, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    seq = [5, 9, 13, 20, 1]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([seq])).logits[0, :-1], -1)
    expected = logp.gather(1, torch.tensor(seq[1:])[:, None])[:, 0]
    assert torch.allclose(torch.tensor(learner.sequence_logprobs([seq])[0]), expected, atol=1e-6)


@pytest.mark.parametrize(
    "preset", ["grpo", "dr_grpo", "dapo", "gspo", "cispo", "ppo", "rloo", "reinforce_pp", "scalerl"]
)
def test_every_preset_updates_with_finite_losses(preset, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    algo = _algo(name=preset, tis_cap=2.0)
    learner = Learner(str(tiny_model_dir), algo=algo, learner=LEARNER, seed=0, max_tokens=4)
    prompt = tok.encode("1+1=")
    answers = ["2", "3", "22", "1"] * 2
    responses = [tok.encode(a) + [tok.eos_token_id] for a in answers]
    rewards = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    batch = _grouped(
        [prompt] * 8, responses, [[-2.0] * len(r) for r in responses], rewards, [0] * 4 + [1] * 4
    )
    before = _snapshot(learner)
    stats = learner.update(batch)
    assert all(math.isfinite(v) for k, v in stats.items() if k != "value/explained_variance"), stats
    assert stats["learner/skipped_updates"] == 0
    after = dict(learner.weights().tensors())
    assert any(not torch.equal(before[k], after[k]) for k in before)
    if algo.critic:
        assert "value/loss" in stats and stats["value/loss"] > 0
    if algo.kl_coef:
        assert stats["kl/ref"] == pytest.approx(0.0, abs=1e-6)  # the policy still is the reference
    assert {"cov/mean", "cov/p99", "mismatch/kl"} <= stats.keys()


def test_off_policy_ratio_is_taken_against_the_sampler(tiny_model_dir):
    """The sampler gave every token half the current probability: ratio r = 2 on every token.
    A = (+0.7071, -0.7071). PPO-clip with eps_high 0.28: the good 2-token response is clipped
    at 1.28 A; the bad 3-token one keeps r A = 2 A. Token-mean:
    (2 * -1.28 * 0.7071 + 3 * 2 * 0.7071) / 5 = 0.486489. On-policy the ratio is 1: 0.141421."""
    from transformers import AutoTokenizer

    algo = _algo(kl_coef=0.0, loss_agg="token-mean", eps_high=0.28)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tok.encode("1+1=")
    short, long = tok.encode("2") + [tok.eos_token_id], tok.encode("33") + [tok.eos_token_id]
    losses_by_mode = {}
    for off_policy in (False, True):
        learner = Learner(
            str(tiny_model_dir), algo=algo, learner=LEARNER, seed=0, max_tokens=4, off_policy=off_policy
        )
        current = [learner.sequence_logprobs([prompt + r])[0][len(prompt) - 1 :] for r in (short, long)]
        sampler = [[lp - math.log(2.0) for lp in seq] for seq in current]
        batch = _grouped([prompt] * 2, [short, long], sampler, [1.0, 0.0], [0, 0])
        losses_by_mode[off_policy] = learner.update(batch)["loss/policy"]
    assert losses_by_mode[False] == pytest.approx(0.7071068 / 5, abs=1e-5)
    assert losses_by_mode[True] == pytest.approx((-2 * 1.28 + 3 * 2) * 0.7071068 / 5, abs=1e-4)
