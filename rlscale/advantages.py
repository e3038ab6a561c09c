"""Advantage estimators: rewards in, advantages out. Pure torch, no state.

Sequence-level estimators take `rewards` of shape [P, G] (P prompts x G samples each) and
return advantages of the same shape; the learner broadcasts them over response tokens.
Token-level helpers (`gae`, masked `batch_normalized`) take right-padded [B, T] tensors and
a float {0, 1} `mask` (1 = response token).

Standard deviations are unbiased (Bessel-corrected, torch's default `.std()`), as in TRL's
GRPOTrainer (`nanstd`) and verl (`torch.std`, `masked_whiten`). TRL adds 1e-4 to the std,
verl 1e-6; we default to verl's 1e-6.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from rlscale.presets import AdvantageName, check_registry


def _check_groups(rewards: Tensor) -> None:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [P, G], got shape {tuple(rewards.shape)}")


def group_normalized(rewards: Tensor, *, scale_by_std: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO advantage: (r - mean_group) / (std_group + eps); Dr. GRPO drops the division."""
    # GRPO, Shao et al. 2024 (DeepSeekMath), §4.1.2: A_i = (r_i - mean(r)) / std(r)
    # Dr. GRPO, Liu et al. 2025 (arXiv 2503.20783): A_i = r_i - mean(r)  (scale_by_std=False)
    _check_groups(rewards)
    rewards = rewards.float()
    adv = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale_by_std:
        return adv
    # unbiased std, as TRL's GRPOTrainer; a group of one has std 0 and advantage 0
    if rewards.shape[1] > 1:
        std = rewards.std(dim=1, keepdim=True)
    else:
        std = torch.zeros_like(adv)
    return adv / (std + eps)


def rloo(rewards: Tensor) -> Tensor:
    """REINFORCE leave-one-out: r_i - mean_{j != i} r_j = G/(G-1) * (r_i - mean(r))."""
    # RLOO, Ahmadian et al. 2024 (arXiv 2402.14740): A_i = r_i - 1/(G-1) * sum_{j != i} r_j
    _check_groups(rewards)
    g = rewards.shape[1]
    if g < 2:
        raise ValueError("rloo needs at least 2 samples per prompt")
    rewards = rewards.float()
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
    return rewards - others


def batch_normalized(adv: Tensor, eps: float = 1e-6, *, mask: Tensor | None = None) -> Tensor:
    """Whiten advantages over the whole batch: (adv - mean) / (std + eps), unbiased std.

    With `mask` ([B, T] token tensors, e.g. GAE output) the statistics use response tokens
    only and padded positions come back as 0.
    """
    # ScaleRL, Khatri et al. 2025 (arXiv 2510.13786): batch-level advantage normalisation;
    # PPO advantage whitening (verl masked_whiten)
    adv = adv.float()
    if mask is None:
        if adv.numel() < 2:
            return adv - adv.mean()
        return (adv - adv.mean()) / (adv.std() + eps)
    m = mask.bool()
    vals = adv[m]
    if vals.numel() < 2:
        return torch.where(m, adv - (vals.mean() if vals.numel() else 0.0), 0.0)
    out = (adv - vals.mean()) / (vals.std() + eps)
    return torch.where(m, out, 0.0)


def reinforce_pp(rewards: Tensor, *, baseline: bool = True, eps: float = 1e-6) -> Tensor:
    """REINFORCE++ with (group-mean baseline, then batch whitening) or without (batch whitening)."""
    # REINFORCE++, Hu 2025 (arXiv 2501.03262): A = (R - mean_batch(R)) / std_batch(R);
    # "-baseline" variant first subtracts the group mean: R_i - mean_group(R).
    # Outcome rewards with gamma=1, so the return is the reward; the batch statistics are
    # over samples (verl whitens over tokens, which weights a sample by its length).
    _check_groups(rewards)
    rewards = rewards.float()
    if baseline:
        rewards = rewards - rewards.mean(dim=1, keepdim=True)
    return batch_normalized(rewards, eps)


def normalize(rewards: Tensor, mode: str, *, eps: float = 1e-6) -> Tensor:
    """Group-mean baseline with a named scaling, TRL's `scale_rewards` semantics.

    "group": divide by each group's std (GRPO); "batch": whiten over the batch (ScaleRL,
    = REINFORCE++-baseline); "none": mean-centred only (Dr. GRPO).
    """
    if mode == "group":
        return group_normalized(rewards, scale_by_std=True, eps=eps)
    if mode == "batch":
        return reinforce_pp(rewards, baseline=True, eps=eps)
    if mode == "none":
        return group_normalized(rewards, scale_by_std=False)
    raise ValueError(f"unknown normalisation mode {mode!r}; choose group, batch or none")


def zero_variance_groups(rewards: Tensor) -> Tensor:
    """BoolTensor[P]: groups whose G rewards are all equal (no learning signal)."""
    # DAPO, Yu et al. 2025, dynamic sampling (keep 0 < #correct < G);
    # ScaleRL, Khatri et al. 2025, zero-variance filtering
    _check_groups(rewards)
    return (rewards == rewards[:, :1]).all(dim=1)


@torch.no_grad()
def gae(
    token_rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation on right-padded [B, T] tensors -> (advantages, returns).

    Padded positions are skipped: the value after a sequence's last token is 0 (terminal), and
    advantages/returns are 0 there. Returns = advantages + values (the critic's target).
    """
    # GAE, Schulman et al. 2016, eq. 16: A_t = sum_l (gamma*lam)^l delta_{t+l},
    # with the TD residual delta_t = r_t + gamma V(s_{t+1}) - V(s_t)
    m = mask.float()
    r = torch.where(m > 0, token_rewards.float(), 0.0)
    v = torch.where(m > 0, values.float(), 0.0)
    b, t_len = r.shape
    next_value = torch.zeros(b, device=r.device)
    last_adv = torch.zeros(b, device=r.device)
    adv = torch.zeros_like(r)
    for t in reversed(range(t_len)):
        delta = r[:, t] + gamma * next_value - v[:, t]
        a_t = delta + gamma * lam * last_adv
        # on padding, carry the (zero) future through unchanged
        last_adv = torch.where(m[:, t] > 0, a_t, last_adv)
        next_value = torch.where(m[:, t] > 0, v[:, t], next_value)
        adv[:, t] = a_t * m[:, t]
    returns = (adv + v) * m
    return adv, returns


def overlong_penalty(lengths: Tensor, *, max_len: int, buffer_len: int, penalty: float = 1.0) -> Tensor:
    """DAPO soft overlong punishment, added to the reward; 0 inside L_max - L_cache.

    R = 0 if |y| <= L_max - L_cache; ((L_max - L_cache) - |y|) / L_cache * penalty inside the
    buffer; -penalty beyond L_max.  buffer_len == 0 turns it off.
    """
    # DAPO, Yu et al. 2025, eq. 13 (soft overlong punishment), L_max = max_len, L_cache = buffer_len
    lengths = lengths.float()
    if buffer_len <= 0:
        return torch.zeros_like(lengths)
    if buffer_len > max_len:
        raise ValueError(
            f"overlong buffer ({buffer_len}) is longer than the length budget ({max_len}); "
            "scale the buffer to the budget (DAPO uses 4096 of 20480)"
        )
    expected = max_len - buffer_len
    frac = ((expected - lengths) / buffer_len).clamp(min=-1.0, max=0.0)
    return frac * penalty


ADVANTAGE_ESTIMATORS = {
    "grpo": group_normalized,
    "dr_grpo": partial(group_normalized, scale_by_std=False),
    "rloo": rloo,
    "reinforce_pp": partial(reinforce_pp, baseline=False),
    "reinforce_pp_baseline": partial(reinforce_pp, baseline=True),
    "batch_norm": partial(normalize, mode="batch"),  # ScaleRL: group mean, batch std
}
"""Sequence-level estimators by name: rewards [P, G] -> advantages [P, G]. GAE is `gae`."""
check_registry("advantage", ADVANTAGE_ESTIMATORS, AdvantageName)
