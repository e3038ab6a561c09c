"""Losses against hand-computed numbers (worked out in comments), padding-garbage checks,
gradient checks, and a cross-check against TRL's GRPOTrainer loss code."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlscale.aggregation import aggregate
from rlscale.logits import entropy_from_logits, logprobs_from_logits
from rlscale.losses import (
    POLICY_LOSSES,
    cispo,
    clip_cov,
    explained_variance,
    gspo,
    kl_cov,
    kl_penalty,
    logp_adv_covariance,
    mismatch_kl,
    ppo_clip,
    truncated_is_weight,
    value_loss,
)

T = torch.tensor
NAN = float("nan")


def close(a, b, tol=1e-5):
    torch.testing.assert_close(torch.as_tensor(a).float(), torch.as_tensor(b).float(), atol=tol, rtol=0)


# A 2 x 3 batch, the second sequence padded at position 2.
MASK = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
LOGP = [[-1.0, -2.0, -0.5], [-1.5, -0.3, 0.0]]
RATIO = [[1.5, 0.5, 1.0], [1.1, 0.7, 1.0]]
ADV = T([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])


def batch(garbage=0.0):
    """logp (leaf, requires grad), old_logp, adv; `garbage` is written into the padded slot."""
    logp = T(LOGP)
    old = logp - torch.log(T(RATIO))
    adv = ADV.clone()
    logp[1, 2], old[1, 2], adv[1, 2] = garbage, -garbage, garbage
    return logp.requires_grad_(), old, adv


GARBAGE = [1e4, -1e4, NAN, float("inf")]


# ----------------------------------------------------------------------------- aggregate


def test_aggregate_modes_by_hand():
    loss = T([[-1.2, -0.5, -1.0], [1.1, 0.8, 123.0]])
    # token-mean: (-2.7 + 1.9) / 5 = -0.16
    close(aggregate(loss, MASK, "token-mean"), -0.16)
    # seq-mean-token-mean: (-2.7/3 + 1.9/2) / 2 = (-0.9 + 0.95) / 2 = 0.025
    close(aggregate(loss, MASK, "seq-mean-token-mean"), 0.025)
    # seq-mean-token-sum: (-2.7 + 1.9) / 2 = -0.4
    close(aggregate(loss, MASK, "seq-mean-token-sum"), -0.4)
    # seq-mean-token-sum-norm: -0.8 / (2 * T) = -0.8 / 6; with max_len=4: -0.8 / 8
    close(aggregate(loss, MASK, "seq-mean-token-sum-norm"), -0.8 / 6)
    close(aggregate(loss, MASK, "seq-mean-token-sum-norm", max_len=4), -0.1)
    with pytest.raises(ValueError):
        aggregate(loss, MASK, "sum")


def test_aggregate_prompt_level():
    # groups: id 7 = rows 0, 2 -> (1 + 2 + 3 + 5 + 6) / 5 = 3.4; id 3 = row 1 -> 4 / 1
    # prompt-level = (3.4 + 4) / 2 = 3.7, token-mean = 21 / 6 = 3.5
    loss = T([[1.0, 2.0, 3.0], [4.0, NAN, 1e9], [5.0, 6.0, float("inf")]])
    mask = T([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    close(aggregate(loss, mask, "prompt-level", group_ids=T([7, 3, 7])), 3.7)
    close(aggregate(loss, mask, "token-mean"), 3.5)
    with pytest.raises(ValueError):
        aggregate(loss, mask, "prompt-level")


# ----------------------------------------------------------------------------- PPO clip


def test_ppo_clip_by_hand():
    # A = +1 row: r = 1.5 -> min(1.5, 1.2) = 1.2 (high clip); r = .5 -> .5; r = 1 -> 1
    # A = -1 row: r = 1.1 -> min(-1.1, -1.1); r = .7 -> min(-.7, -.8) = -.8 (low clip)
    logp, old, adv = batch()
    loss, stats = ppo_clip(logp, old, adv, MASK)
    close(loss * MASK, [[-1.2, -0.5, -1.0], [1.1, 0.8, 0.0]])
    close(stats["clip/fraction"], 0.4)
    close(stats["clip/low_fraction"], 0.2)
    close(stats["clip/high_fraction"], 0.2)
    # k3 = r - 1 - ln r: .094535, .193147, 0, .004690, .056675 -> mean .0697713
    close(stats["kl/old"], (0.094535 + 0.193147 + 0 + 0.004690 + 0.056675) / 5)
    assert all(not v.requires_grad and v.dim() == 0 for v in stats.values())


@pytest.mark.parametrize("garbage", GARBAGE)
def test_ppo_clip_gradient_and_padding(garbage):
    # token-mean gradient wrt logp: -A r / 5 where the unclipped branch is active, else 0
    logp, old, adv = batch(garbage)
    loss, stats = ppo_clip(logp, old, adv, MASK)
    total = aggregate(loss, MASK, "token-mean")
    total.backward()
    close(total, -0.16)
    close(logp.grad, [[0.0, -0.1, -0.2], [0.22, 0.0, 0.0]])
    assert all(math.isfinite(float(v)) for v in stats.values())


def test_ppo_clip_higher_and_dual_clip():
    logp, old, adv = batch()
    loss, _ = ppo_clip(logp, old, adv, MASK, eps_low=0.2, eps_high=0.28)
    # r = 1.5 with A = +1 is now capped at 1.28
    close(loss[0, 0], -1.28)
    # dual clip c = 3: A = -1, r = 5 -> PPO loss 5, dual-clipped to 3; r = 2 -> 2 stays
    logp = T([[0.0, 0.0]], requires_grad=True)
    old = -torch.log(T([[5.0, 2.0]]))
    loss, stats = ppo_clip(logp, old, T([[-1.0, -1.0]]), torch.ones(1, 2), dual_clip=3.0)
    close(loss, [[3.0, 2.0]])
    close(stats["clip/dual_fraction"], 0.5)
    aggregate(loss, torch.ones(1, 2), "token-mean").backward()
    close(logp.grad, [[0.0, 1.0]])  # d(r)/dlogp = r = 2, times A = -1, negated, / 2 tokens


# ----------------------------------------------------------------------------- GSPO


def test_gspo_by_hand():
    # log-ratios row 0: (.3, -.3, .6) -> mean .2 -> s0 = e^.2 = 1.221403; row 1: (.1, -.1) -> s1 = 1
    logp = T([[-1.0, -2.0, -0.5], [-1.5, -0.3, 5.0]], requires_grad=True)
    old = logp.detach() - T([[0.3, -0.3, 0.6], [0.1, -0.1, 99.0]])
    adv = T([[1.0, 1.0, 1.0], [-1.0, -1.0, 1e9]])
    # default clip (3e-4, 4e-4): s0 > 1.0004 with A > 0 -> clipped; s1 = 1 -> loss 1
    loss, stats = gspo(logp, old, adv, MASK)
    close(loss * MASK, [[-1.0004] * 3, [1.0, 1.0, 0.0]])
    close(stats["clip/fraction"], 0.6)
    close(stats["gspo/seq_ratio_mean"], (math.exp(0.2) + 1.0) / 2)
    aggregate(loss, MASK, "seq-mean-token-mean").backward()
    # row 1 unclipped: d(-s A)/dlogp_t = s / |y| * (-A) = 1/2, times 1/B = 1/2 -> 0.25
    close(logp.grad, [[0.0, 0.0, 0.0], [0.25, 0.25, 0.0]])


def test_gspo_gradient_equals_sequence_level_objective():
    # wide clip: GSPO-token gradient == gradient of mean_i(-s_i A_i), s_i = exp(mean_t log r)
    # row 0: -(1/B)(1/|y|) s0 = -0.5 / 3 * 1.221403 = -0.2035672 per token
    logp = T([[-1.0, -2.0, -0.5], [-1.5, -0.3, 5.0]], requires_grad=True)
    lr = T([[0.3, -0.3, 0.6], [0.1, -0.1, 0.0]])
    old = logp.detach() - lr
    adv = T([[1.0, 1.0, 1.0], [-1.0, -1.0, 0.0]])
    loss, _ = gspo(logp, old, adv, MASK, eps_low=0.5, eps_high=0.5)
    close(loss[0], [-math.exp(0.2)] * 3)
    aggregate(loss, MASK, "seq-mean-token-mean").backward()
    close(logp.grad[0], [-0.2035672] * 3)
    close(logp.grad[1], [0.25, 0.25, 0.0])
    # and the same from the sequence-level formula directly
    logp2 = logp.detach().clone().requires_grad_()
    s = torch.exp(((logp2 - old) * MASK).sum(-1) / MASK.sum(-1))
    (-(s * T([1.0, -1.0]))).mean().backward()
    close(logp2.grad * MASK, logp.grad)


# ----------------------------------------------------------------------------- CISPO


@pytest.mark.parametrize("garbage", GARBAGE)
def test_cispo_by_hand_and_stop_gradient(garbage):
    # eps_high = .2 -> weight = min(r, 1.2): (1.2, .5, 1; 1.1, .7); loss = -w A logp:
    #   (1.2, 1.0, 0.5; -1.65, -0.21) -> token-mean 0.84 / 5 = 0.168
    # gradient (w is stop-gradient): -w A / 5 = (-.24, -.1, -.2; .22, .14)
    logp, old, adv = batch(garbage)
    loss, stats = cispo(logp, old, adv, MASK, eps_high=0.2)
    close(loss * MASK, [[1.2, 1.0, 0.5], [-1.65, -0.21, 0.0]])
    total = aggregate(loss, MASK, "token-mean")
    close(total, 0.168)
    total.backward()
    close(logp.grad, [[-0.24, -0.1, -0.2], [0.22, 0.14, 0.0]])
    close(stats["clip/fraction"], 0.2)
    close(stats["cispo/weight_mean"], (1.2 + 0.5 + 1.0 + 1.1 + 0.7) / 5)


def test_cispo_lower_bound_and_defaults():
    logp, old, adv = batch()
    # eps_low = .2: weights .5 -> .8 and .7 -> .8; gradient -w A / 5
    loss, stats = cispo(logp, old, adv, MASK, eps_low=0.2, eps_high=0.2)
    aggregate(loss, MASK, "token-mean").backward()
    close(logp.grad, [[-0.24, -0.16, -0.2], [0.22, 0.16, 0.0]])
    close(stats["clip/low_fraction"], 0.4)
    # defaults: no lower bound, cap 5 -> no ratio here is truncated; weight = r
    logp, old, adv = batch()
    loss, stats = cispo(logp, old, adv, MASK)
    aggregate(loss, MASK, "token-mean").backward()
    close(logp.grad, [[-0.3, -0.1, -0.2], [0.22, 0.14, 0.0]])
    close(stats["clip/fraction"], 0.0)


# ----------------------------------------------------------------------------- Clip-Cov, KL-Cov

# On-policy batch for the covariance losses: A = +2 (row 0), -3 (row 1), mean A = 0.
# logp valid = (-.5, -1, -3, -1, -1): mean -1.3, centred (.8, .3, -1.7, .3, .3)
# products (logp - mean)(A - mean) = (1.6, .6, -3.4, -.9, -.9)
COV_LOGP = [[-0.5, -1.0, -3.0], [-1.0, -1.0, 0.0]]
COV_ADV = T([[2.0, 2.0, 2.0], [-3.0, -3.0, 0.0]])


def cov_batch(garbage=0.0):
    logp = T(COV_LOGP)
    logp[1, 2] = garbage
    adv = COV_ADV.clone()
    adv[1, 2] = garbage
    return logp.requires_grad_(), logp.detach().clone(), adv


def test_logp_adv_covariance_by_hand():
    logp, _, adv = cov_batch(1e6)
    stats = logp_adv_covariance(logp, adv, MASK)
    close(stats["cov/mean"], -0.6)  # (1.6 + .6 - 3.4 - .9 - .9) / 5
    # sorted (-3.4, -.9, -.9, .6, 1.6); 99th pct at position .99 * 4 = 3.96 -> .6 + .96 * 1.0
    close(stats["cov/p99"], 1.56)


@pytest.mark.parametrize("garbage", GARBAGE)
def test_clip_cov_detaches_the_one_candidate(garbage):
    # only token (0, 0) has covariance in (1, 5); int(2e-4 * 5) = 0 -> at least 1 token dropped
    logp, old, adv = cov_batch(garbage)
    loss, stats = clip_cov(logp, old, adv, MASK)
    close(loss * MASK, [[-2.0, -2.0, -2.0], [3.0, 3.0, 0.0]])  # value kept
    aggregate(loss, MASK, "token-mean").backward()
    # gradient -A r / 5 with (0, 0) removed
    close(logp.grad, [[0.0, -0.4, -0.4], [0.6, 0.6, 0.0]])
    close(stats["clip_cov/fraction"], 0.2)
    close(stats["cov/mean"], -0.6)


def test_clip_cov_skips_tokens_ppo_already_clipped():
    logp, old, adv = cov_batch()
    old[0, 0] -= math.log(1.5)  # r = 1.5 with A > 0: PPO clips it, so it is no candidate
    loss, stats = clip_cov(logp, old, adv, MASK)
    close(stats["clip_cov/fraction"], 0.0)
    close(stats["clip/fraction"], 0.2)


def test_clip_cov_random_choice_is_seeded():
    # widen the band to (0.5, 5): candidates (0, 0) = 1.6 and (0, 1) = .6; one is drawn
    logp, old, adv = cov_batch()
    g = torch.Generator().manual_seed(0)
    _, stats = clip_cov(logp, old, adv, MASK, clip_cov_lb=0.5, generator=g)
    close(stats["clip_cov/fraction"], 0.2)


@pytest.mark.parametrize("garbage", GARBAGE)
def test_kl_cov_by_hand(garbage):
    # k = max(1, int(5 * .002)) = 1 -> the top-covariance token (0, 0) gets + 1.0 * |log r|
    # log-ratios (.1, 0, 0; 0, -.2): losses -A r (+ |.1| at (0, 0)):
    #   (0,0) = -2 e^.1 + .1 = -2.1103418; (1,1) = 3 e^-.2 = 2.4561922
    logp, old, adv = cov_batch(garbage)
    old[0, 0] -= 0.1
    old[1, 1] += 0.2
    loss, stats = kl_cov(logp, old, adv, MASK)
    close(loss * MASK, [[-2.1103418, -2.0, -2.0], [3.0, 2.4561922, 0.0]])
    aggregate(loss, MASK, "token-mean").backward()
    # d/dlogp: (0,0): (-2 e^.1 + 1) / 5 = -0.2420684; (1,1): 3 e^-.2 / 5 = 0.4912384
    close(logp.grad, [[-0.2420684, -0.4, -0.4], [0.6, 0.4912384, 0.0]])
    close(stats["kl_cov/fraction"], 0.2)


def test_policy_loss_registry():
    assert set(POLICY_LOSSES) == {"ppo_clip", "gspo", "cispo", "clip_cov", "kl_cov"}
    logp, old, adv = batch()
    for name, fn in POLICY_LOSSES.items():
        loss, stats = fn(logp, old, adv, MASK)
        assert loss.shape == (2, 3), name
        assert all(isinstance(float(v), float) for v in stats.values()), name


# ----------------------------------------------------------------------------- KL, TIS


def test_kl_estimators_by_hand():
    logp = T([[-1.0, -2.0]], requires_grad=True)
    ref = T([[-1.5, -1.0]])
    # log r = logp - ref = (.5, -1)
    close(kl_penalty(logp, ref, "k1"), [[0.5, -1.0]])
    close(kl_penalty(logp, ref, "k2"), [[0.125, 0.5]])
    # k3 = e^(ref - logp) - (ref - logp) - 1: e^-.5 + .5 - 1 = .1065307; e^1 - 1 - 1 = .7182818
    k3 = kl_penalty(logp, ref, "k3")
    close(k3, [[0.1065307, 0.7182818]])
    k3.sum().backward()
    close(logp.grad, [[1 - math.exp(-0.5), 1 - math.e]])  # d k3 / d logp = 1 - e^(ref - logp)
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k4")


def test_k3_clamp_and_mask():
    # log(ref / pi) = 30 is clamped to 20: e^20 - 21, finite
    k3 = kl_penalty(T([[-31.0]]), T([[-1.0]]), "k3")
    close(k3, [[math.exp(20) - 21]], tol=1e3)
    logp = T([[-1.0, NAN]], requires_grad=True)
    out = kl_penalty(logp, T([[-1.5, 3.0]]), "k3", mask=T([[1.0, 0.0]]))
    close(out, [[0.1065307, 0.0]])
    aggregate(out, T([[1.0, 0.0]]), "token-mean").backward()
    assert torch.isfinite(logp.grad).all()


def test_truncated_is_weight_and_mismatch():
    old = T([[math.log(0.5), math.log(1.5), math.log(3.0), 50.0]], requires_grad=True)
    sampler = T([[0.0, 0.0, 0.0, -50.0]])
    mask = T([[1.0, 1.0, 1.0, 0.0]])
    w = truncated_is_weight(old, sampler, mask)
    close(w, [[0.5, 1.5, 2.0, 0.0]])
    assert not w.requires_grad
    # k3 with r = pi_learner / pi_sampler: (r - 1 - ln r) = .193147, .094535, .901388
    close(mismatch_kl(old, sampler, mask), (0.193147 + 0.094535 + (2.0 - math.log(3.0))) / 3)


# ----------------------------------------------------------------------------- value


def test_value_loss_by_hand():
    # (0,0): v 1, old .8, R 1.5 -> clip keeps 1: .5 * .25 = .125
    # (0,1): v 2, old 1 -> clipped 1.2; (2-1)^2 = 1 > (1.2-1)^2 -> .5
    # (1,0): v .9, old 1.5 -> clipped 1.3; R 1: (.1)^2 = .01 < (.3)^2 = .09 -> .045 (clipped)
    values = T([[1.0, 2.0], [0.9, NAN]])
    old = T([[0.8, 1.0], [1.5, 7.0]])
    ret = T([[1.5, 1.0], [1.0, -7.0]])
    mask = T([[1.0, 1.0], [1.0, 0.0]])
    loss, stats = value_loss(values, old, ret, mask, clip=0.2)
    close(loss * mask, [[0.125, 0.5], [0.045, 0.0]])
    close(stats["vf/clip_fraction"], 1 / 3)
    # unclipped: .5 (v - R)^2 = .125, .5, .005
    loss, _ = value_loss(values, old, ret, mask, clip=None)
    close(loss * mask, [[0.125, 0.5], [0.005, 0.0]])


def test_explained_variance_by_hand():
    # R = (1.5, 1, 1): unbiased var = .083333; R - V = (.5, -1, .1): var = .603333
    # 1 - .603333 / .083333 = -6.24
    values = T([[1.0, 2.0], [0.9, 5.0]])
    ret = T([[1.5, 1.0], [1.0, -9.0]])
    mask = T([[1.0, 1.0], [1.0, 0.0]])
    close(explained_variance(values, ret, mask), -6.24, tol=1e-4)
    close(explained_variance(ret, ret, mask), 1.0)
    assert math.isnan(float(explained_variance(values, torch.ones(2, 2), mask)))


# ----------------------------------------------------------------------------- logits


def test_entropy_by_hand():
    logits = T([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -math.inf, -math.inf]]])
    # uniform over 4 -> ln 4; p = (.25, .75) -> -(.25 ln .25 + .75 ln .75) = .5623351
    close(entropy_from_logits(logits), [[math.log(4.0), 0.5623351]])
    close(entropy_from_logits(T([[[1000.0, 1000.0]]])), [[math.log(2.0)]])  # no overflow
    h = entropy_from_logits(torch.zeros(1, 1, 8, dtype=torch.bfloat16))
    assert h.dtype == torch.float32


def test_entropy_chunked_matches_reference_with_grad():
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 11, requires_grad=True)
    h = entropy_from_logits(logits, chunk_size=2)
    ref_logits = logits.detach().clone().requires_grad_()
    ref = torch.distributions.Categorical(logits=ref_logits).entropy()
    close(h, ref)
    w = torch.randn(5, 3)
    (h * w).sum().backward()
    (ref * w).sum().backward()
    close(logits.grad, ref_logits.grad)


def test_logprobs_by_hand_and_grad():
    logits = T([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    close(logprobs_from_logits(logits, T([[1, 0]])), [[math.log(0.75), math.log(0.25)]])
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 7, requires_grad=True)
    tokens = torch.randint(0, 7, (4, 3))
    lp = logprobs_from_logits(logits, tokens, chunk_size=3)
    ref_logits = logits.detach().clone().requires_grad_()
    ref = torch.log_softmax(ref_logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    close(lp, ref)
    lp.sum().backward()
    ref.sum().backward()
    close(logits.grad, ref_logits.grad)
    assert logprobs_from_logits(logits.detach().bfloat16(), tokens).dtype == torch.float32


# ----------------------------------------------------------------------------- TRL cross-check
#
# TRL's loss lives in GRPOTrainer._compute_loss (reached through compute_loss). We build a
# trainer-less GRPOTrainer (object.__new__) with the attributes _compute_loss reads and
# replace only the model forward (_get_per_token_logps_and_entropies) with one that returns
# our log-prob tensor, so TRL's own loss code runs on exactly our inputs. A second test keeps
# TRL's real forward on a tiny Qwen2 model (TRL's fused LM head) and compares gradients on the
# model's parameters with our logprobs_from_logits + loss.


def _trl_trainer(loss_type, *, eps_low, eps_high, beta=0.0, level="token", max_len=8, model=None):
    pytest.importorskip("trl")
    from accelerate import Accelerator
    from trl import GRPOTrainer

    t = object.__new__(GRPOTrainer)
    t.__dict__.update(
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        beta=beta,
        importance_sampling_level=level,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        max_completion_length=max_len,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        current_gradient_accumulation_steps=1,
        accelerator=Accelerator(cpu=True),
        model=model if model is not None else torch.nn.Linear(1, 1),
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
    )
    return t


def _trl_inputs(mask, adv_seq, old_logp, ref_logp=None, prompt=None, completion=None):
    b, t = mask.shape
    inputs = {
        "prompt_ids": prompt if prompt is not None else torch.zeros(b, 1, dtype=torch.long),
        "prompt_mask": torch.ones(b, 1 if prompt is None else prompt.shape[1], dtype=torch.long),
        "completion_ids": completion if completion is not None else torch.zeros(b, t, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": adv_seq,
        "old_per_token_logps": old_logp,
        "num_items_in_batch": mask.sum(),
    }
    if ref_logp is not None:
        inputs["ref_per_token_logps"] = ref_logp
    return inputs


def _random_batch(seed=0, b=4, t=5):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t)
    for i, n in enumerate([5, 3, 4, 1][:b]):
        mask[i, n:] = 0
    logp = -torch.rand(b, t, generator=g) * 3
    old = logp + 0.4 * torch.randn(b, t, generator=g)  # ratios well outside 1 +- 0.28
    ref = logp + 0.3 * torch.randn(b, t, generator=g)
    adv_seq = torch.randn(b, generator=g)
    # finite garbage in padding (TRL multiplies by the mask, so it needs finite values)
    logp, old, ref = (torch.where(mask > 0, x, 3.0) for x in (logp, old, ref))
    return logp, old, ref, adv_seq, mask


# (TRL loss_type, TRL epsilon_high, TRL level, our loss fn + kwargs, our aggregation, beta)
TRL_CASES = [
    ("grpo", 0.2, "token", ppo_clip, {}, "seq-mean-token-mean", 0.0),
    ("grpo", 0.2, "token", ppo_clip, {}, "seq-mean-token-mean", 0.04),
    ("bnpo", 0.28, "token", ppo_clip, {"eps_high": 0.28}, "token-mean", 0.0),
    ("dapo", 0.28, "token", ppo_clip, {"eps_high": 0.28}, "token-mean", 0.0),
    ("dapo", 0.28, "token", ppo_clip, {"eps_high": 0.28}, "token-mean", 0.04),
    ("dr_grpo", 0.2, "token", ppo_clip, {}, "seq-mean-token-sum-norm", 0.0),
    # TRL's cispo epsilon_high is the cap itself (5.0); ours is the offset (4.0)
    ("cispo", 5.0, "token", cispo, {"eps_high": 4.0}, "token-mean", 0.0),
    ("cispo", 1.1, "token", cispo, {"eps_high": 0.1}, "token-mean", 0.0),
    # GSPO: TRL's sequence-level importance sampling with the grpo (per-sequence) loss
    ("grpo", 0.2, "sequence", gspo, {"eps_low": 0.2, "eps_high": 0.2}, "seq-mean-token-mean", 0.0),
    ("grpo", 4e-4, "sequence", gspo, {}, "seq-mean-token-mean", 0.0),
]


@pytest.mark.parametrize("case", TRL_CASES, ids=lambda c: f"{c[0]}-{c[2]}-{c[1]}-beta{c[6]}")
def test_matches_trl_grpo_trainer_loss_and_grad(case):
    loss_type, trl_eps_high, level, fn, kwargs, agg, beta = case
    logp, old, ref, adv_seq, mask = _random_batch()
    eps_low = kwargs.get("eps_low", 0.2 if fn is not gspo else 3e-4)
    trainer = _trl_trainer(
        loss_type, eps_low=eps_low, eps_high=trl_eps_high, beta=beta, level=level, max_len=8
    )
    trl_logp = logp.clone().requires_grad_()
    trainer._get_per_token_logps_and_entropies = lambda *a, **k: (
        trl_logp,
        torch.zeros_like(trl_logp),
        None,
    )
    trl_loss = trainer.compute_loss(trainer.model, _trl_inputs(mask, adv_seq, old, ref))
    trl_loss.backward()

    ours_logp = logp.clone().requires_grad_()
    adv = adv_seq[:, None].expand_as(mask)
    loss_mat, stats = fn(ours_logp, old, adv, mask, **kwargs)
    if beta:
        loss_mat = loss_mat + beta * kl_penalty(ours_logp, ref, "k3", mask=mask)
    ours = aggregate(loss_mat, mask, agg, max_len=8)
    ours.backward()

    close(ours, trl_loss, tol=1e-6)
    close(ours_logp.grad, trl_logp.grad, tol=1e-6)
    assert ours_logp.grad.abs().sum() > 0
    if fn is ppo_clip:  # TRL logs the same clip fractions
        m = trainer._metrics["train"]
        close(stats["clip/low_fraction"], m["clip_ratio/low_mean"][-1])
        close(stats["clip/high_fraction"], m["clip_ratio/high_mean"][-1])
        close(stats["clip/fraction"], m["clip_ratio/region_mean"][-1])


def test_matches_trl_end_to_end_on_a_tiny_model():
    pytest.importorskip("trl")
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
    )
    model = Qwen2ForCausalLM(cfg).float()
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))  # as GRPOTrainer.__init__ does
    b, p, t = 3, 2, 4
    prompt = torch.randint(1, 32, (b, p))
    completion = torch.randint(1, 32, (b, t))
    mask = T([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    adv_seq = T([1.0, -0.5, 0.7])
    ids = torch.cat([prompt, completion], dim=1)
    attn = torch.cat([torch.ones(b, p), mask], dim=1).long()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits[:, p - 1 : -1]
        old = logprobs_from_logits(logits, completion)
        old = old + 0.3 * torch.randn(b, t)  # off-policy, so clipping is exercised

    trainer = _trl_trainer("dapo", eps_low=0.2, eps_high=0.28, model=model)
    inputs = _trl_inputs(mask, adv_seq, old, prompt=prompt, completion=completion)
    trainer.compute_loss(model, inputs).backward()
    trl_grads = [q.grad.clone() for q in model.parameters()]
    trl_entropy = trainer._metrics["train"]["entropy"][-1]
    model.zero_grad()

    logits = model(input_ids=ids, attention_mask=attn).logits[:, p - 1 : -1]
    logp = logprobs_from_logits(logits, completion)
    loss_mat, _ = ppo_clip(logp, old, adv_seq[:, None].expand_as(mask), mask, eps_high=0.28)
    aggregate(loss_mat, mask, "token-mean").backward()
    for ours, theirs in zip((q.grad for q in model.parameters()), trl_grads, strict=True):
        close(ours, theirs, tol=1e-5)
    h = entropy_from_logits(logits.detach())
    close((h * mask).sum() / mask.sum(), trl_entropy, tol=1e-5)
