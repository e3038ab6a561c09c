"""Advantage estimators against hand-computed numbers (worked out in the comments)."""

import math

import pytest
import torch

from rlscale.advantages import (
    ADVANTAGE_ESTIMATORS,
    batch_normalized,
    gae,
    group_normalized,
    normalize,
    overlong_penalty,
    reinforce_pp,
    rloo,
    zero_variance_groups,
)
from rlscale.aggregation import aggregate
from rlscale.losses import POLICY_LOSSES
from rlscale.presets import ALGO_PRESETS

T = torch.tensor


def close(a, b, tol=1e-5):
    torch.testing.assert_close(torch.as_tensor(a).float(), torch.as_tensor(b).float(), atol=tol, rtol=0)


# ----------------------------------------------------------------------------- group / GRPO


def test_grpo_single_group():
    # mean 0.5; unbiased std = sqrt(4 * 0.25 / 3) = 0.577350; 0.5 / 0.577350 = 0.866025
    adv = group_normalized(T([[1.0, 0.0, 0.0, 1.0]]))
    close(adv, [[0.866025, -0.866025, -0.866025, 0.866025]])


def test_grpo_groups_are_independent():
    # group 2 has zero variance -> 0; group 3: mean 0.75, deviations (-.75, -.75, -.75, 2.25),
    # unbiased var = (3 * .5625 + 5.0625) / 3 = 2.25 -> std 1.5 -> (-.5, -.5, -.5, 1.5)
    r = T([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 3.0]])
    close(
        group_normalized(r),
        [[0.866025, -0.866025, -0.866025, 0.866025], [0, 0, 0, 0], [-0.5, -0.5, -0.5, 1.5]],
    )


def test_dr_grpo_only_centres():
    r = T([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    close(group_normalized(r, scale_by_std=False), [[0.5, -0.5, -0.5, 0.5], [-0.75] * 3 + [2.25]])
    close(ADVANTAGE_ESTIMATORS["dr_grpo"](r), [[0.5, -0.5, -0.5, 0.5], [-0.75] * 3 + [2.25]])


def test_grpo_group_of_one_is_zero():
    close(group_normalized(T([[3.0], [1.0]])), [[0.0], [0.0]])


# ----------------------------------------------------------------------------- RLOO


def test_rloo():
    # 1 - (0 + 0 + 1)/3 = 2/3; 0 - (1 + 0 + 1)/3 = -2/3
    close(rloo(T([[1.0, 0.0, 0.0, 1.0]])), [[2 / 3, -2 / 3, -2 / 3, 2 / 3]])
    # 3 - 1 = 2, 1 - 3 = -2; and G/(G-1) * (r - mean) on a 3-group: (0.5 - (0.2 + 0.8)/2) = 0
    close(rloo(T([[3.0, 1.0], [0.0, 2.0]])), [[2.0, -2.0], [-2.0, 2.0]])
    close(rloo(T([[0.5, 0.2, 0.8]])), [[0.0, -0.45, 0.45]])
    with pytest.raises(ValueError):
        rloo(T([[1.0]]))


# ----------------------------------------------------------------------------- REINFORCE++


def test_reinforce_pp_global_batch_norm():
    # rewards 1, 0, 0, 0: mean .25, unbiased var (.5625 + 3 * .0625)/3 = .25 -> std .5
    close(reinforce_pp(T([[1.0, 0.0], [0.0, 0.0]]), baseline=False), [[1.5, -0.5], [-0.5, -0.5]])
    close(
        ADVANTAGE_ESTIMATORS["reinforce_pp"](T([[1.0, 0.0], [0.0, 0.0]])),
        [[1.5, -0.5], [-0.5, -0.5]],
    )


def test_reinforce_pp_baseline():
    # group-centred: .5, -.5, 0, 0; batch mean 0; unbiased var (.25 + .25)/3 = 1/6 -> std .408248
    # .5 / .408248 = 1.224745
    out = reinforce_pp(T([[1.0, 0.0], [0.0, 0.0]]), baseline=True)
    close(out, [[1.224745, -1.224745], [0.0, 0.0]])
    close(ADVANTAGE_ESTIMATORS["reinforce_pp_baseline"](T([[1.0, 0.0], [0.0, 0.0]])), out)


# ----------------------------------------------------------------------------- batch / normalize


def test_batch_normalized_dense_and_masked():
    # 1, 3, 5: mean 3, unbiased std 2
    close(batch_normalized(T([1.0, 3.0, 5.0])), [-1.0, 0.0, 1.0])
    adv = T([[1.0, 3.0, 999.0], [5.0, float("nan"), -1e9]])
    mask = T([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    close(batch_normalized(adv, mask=mask), [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_normalize_modes():
    r = T([[1.0, 0.0], [0.0, 0.0]])
    # group: (1, 0) -> mean .5, unbiased std .707107 -> +-.707107; (0, 0) -> 0
    close(normalize(r, "group"), [[0.707107, -0.707107], [0.0, 0.0]])
    close(normalize(r, "none"), [[0.5, -0.5], [0.0, 0.0]])
    close(normalize(r, "batch"), [[1.224745, -1.224745], [0.0, 0.0]])
    close(ADVANTAGE_ESTIMATORS["batch_norm"](r), normalize(r, "batch"))
    with pytest.raises(ValueError):
        normalize(r, "prompt")


def test_zero_variance_groups():
    r = T([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.6]])
    assert zero_variance_groups(r).tolist() == [True, False, True, False]


# ----------------------------------------------------------------------------- GAE


def test_gae_hand_computed_with_padding():
    # gamma = lam = 0.5, so gamma * lam = 0.25.
    # seq 0, r = (0, 0, 1), V = (.5, .2, .4), full length:
    #   d2 = 1 - .4 = .6                A2 = .6
    #   d1 = 0 + .5 * .4 - .2 = 0       A1 = 0 + .25 * .6 = .15
    #   d0 = 0 + .5 * .2 - .5 = -.4     A0 = -.4 + .25 * .15 = -.3625
    #   returns = A + V = (.1375, .35, 1.0)
    # seq 1, r = (0, 2, pad), V = (1, .5, pad):
    #   d1 = 2 - .5 = 1.5               A1 = 1.5
    #   d0 = 0 + .5 * .5 - 1 = -.75     A0 = -.75 + .25 * 1.5 = -.375
    #   returns = (.625, 2.0, 0)
    rewards = T([[0.0, 0.0, 1.0], [0.0, 2.0, 7.0]])
    values = T([[0.5, 0.2, 0.4], [1.0, 0.5, 9.0]])
    mask = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.5, lam=0.5)
    close(adv, [[-0.3625, 0.15, 0.6], [-0.375, 1.5, 0.0]])
    close(ret, [[0.1375, 0.35, 1.0], [0.625, 2.0, 0.0]])
    # garbage in the padded slot changes nothing
    rewards[1, 2], values[1, 2] = -1e6, float("nan")
    adv2, ret2 = gae(rewards, values, mask, gamma=0.5, lam=0.5)
    close(adv2, adv)
    close(ret2, ret)


def test_gae_monte_carlo_limit():
    # gamma = lam = 1: A_t = sum_{k >= t} r_k - V_t
    rewards = T([[1.0, 2.0, 3.0]])
    values = T([[0.5, 1.0, 1.5]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    close(adv, [[6.0 - 0.5, 5.0 - 1.0, 3.0 - 1.5]])
    close(ret, [[6.0, 5.0, 3.0]])


# ----------------------------------------------------------------------------- overlong


def test_overlong_penalty():
    # L_max = 20, L_cache = 4 -> free up to 16, linear to -1 at 20, -1 beyond
    lengths = T([10, 16, 17, 18, 20, 25])
    close(
        overlong_penalty(lengths, max_len=20, buffer_len=4),
        [0.0, 0.0, -0.25, -0.5, -1.0, -1.0],
    )
    close(
        overlong_penalty(lengths, max_len=20, buffer_len=4, penalty=2.0),
        [0.0, 0.0, -0.5, -1.0, -2.0, -2.0],
    )
    close(overlong_penalty(lengths, max_len=20, buffer_len=0), torch.zeros(6))
    with pytest.raises(ValueError):
        overlong_penalty(lengths, max_len=20, buffer_len=4096)


# ----------------------------------------------------------------------------- registry, presets


def test_registry_names():
    for name in ["grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "batch_norm"]:
        out = ADVANTAGE_ESTIMATORS[name](T([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]]))
        assert out.shape == (2, 4) and torch.isfinite(out).all()


PRESET_KEYS = {
    "advantage", "policy_loss", "loss_agg", "eps_low", "eps_high", "kl_coef", "kl_estimator",
    "kl_in_reward", "entropy_coef", "dynamic_sampling", "overlong_buffer", "critic", "gamma",
    "lam", "value_clip", "norm_adv", "ppo_epochs", "mini_batches",
}  # fmt: skip


def test_presets_are_complete_and_resolve():
    expected = {
        "grpo",
        "dr_grpo",
        "dapo",
        "gspo",
        "cispo",
        "ppo",
        "rloo",
        "reinforce_pp",
        "scalerl",
    }
    assert expected <= set(ALGO_PRESETS)
    r = T([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    for name, p in ALGO_PRESETS.items():
        assert set(p) == PRESET_KEYS, name
        assert p["policy_loss"] in POLICY_LOSSES, name
        assert p["kl_estimator"] in ("k1", "k2", "k3"), name
        assert p["norm_adv"] in ("group", "batch", "none"), name
        assert p["critic"] == (p["advantage"] == "gae"), name
        aggregate(torch.ones(2, 3), torch.ones(2, 3), p["loss_agg"], group_ids=T([0, 0]))
        if p["advantage"] != "gae":
            est = ADVANTAGE_ESTIMATORS[p["advantage"]]
            if p["advantage"] in ("grpo", "dr_grpo", "batch_norm", "reinforce_pp_baseline"):
                # norm_adv names the scaling the estimator applies
                close(est(r), normalize(r, p["norm_adv"]))
    assert ALGO_PRESETS["dapo"]["eps_high"] == 0.28
    assert ALGO_PRESETS["gspo"]["eps_low"] == 3e-4 and ALGO_PRESETS["gspo"]["eps_high"] == 4e-4
    assert math.isclose(1 + ALGO_PRESETS["scalerl"]["eps_high"], 5.0)
