"""The learner's update on a real tiny transformers model, in process (no Ray)."""

from __future__ import annotations

import math

import pytest
import torch

from rlscale.learner import Batch, LearnerCore
from rlscale.presets import ALGO_PRESETS

LEARNER = dict(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, warmup_steps=0, grad_clip=1.0)


@pytest.fixture
def learner(tiny_model_dir):
    return LearnerCore(
        str(tiny_model_dir),
        algo=dict(ALGO_PRESETS["grpo"], kl_coef=0.0),
        learner=LEARNER,
        seed=0,
        max_tokens=4,
    )


def _batch(tok, advantages=(1.0, -1.0)):
    prompt = tok.encode("1+1=")
    good, bad = tok.encode("2") + [tok.eos_token_id], tok.encode("3") + [tok.eos_token_id]
    return prompt, good, bad, Batch([prompt, prompt], [good, bad], [[0.0] * 2] * 2, list(advantages), [0, 0])


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
    assert stats["learner/skipped_updates"] == 0 and stats["tokens/trained"] == 12
    assert stats["entropy/mean"] > 0 and math.isfinite(stats["grad_norm"])


def test_on_policy_first_step_has_unit_ratio_and_exact_loss(learner, tiny_model_dir):
    """Ratio 1 on-policy: the GRPO loss is -mean_seq(mean_tok(A)) = -(1 + -1)/2 = 0, kl/old = 0."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    stats = learner.update(_batch(tok, advantages=(1.0, 0.5))[3])
    assert stats["loss/policy"] == pytest.approx(-0.75, abs=1e-6)
    assert stats["kl/old"] == pytest.approx(0.0, abs=1e-7) and stats["clip/fraction"] == 0.0


def test_nan_update_is_skipped_and_weights_kept(learner, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    before = learner.weights()
    stats = learner.update(_batch(tok, advantages=(float("nan"), 1.0))[3])
    assert stats["learner/skipped_updates"] == 1
    after = learner.weights()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_sequence_logprobs_match_a_plain_forward(learner, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    seq = [5, 9, 13, 20, 1]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([seq])).logits[0, :-1], -1)
    expected = logp.gather(1, torch.tensor(seq[1:])[:, None])[:, 0]
    assert torch.allclose(torch.tensor(learner.sequence_logprobs([seq])[0]), expected, atol=1e-6)
