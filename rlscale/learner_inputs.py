"""What the learner's update takes in: a grouped `Batch` as right-padded [B, T] tensors, group
by group, and the keyword options of the configured policy loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlscale.batch import Batch
from rlscale.config import AlgoConfig


@dataclass
class Tensors:
    prompts: list[list[int]]
    responses: list[list[int]]
    tokens: torch.Tensor  # [B, T] response tokens
    mask: torch.Tensor  # [B, T] 1.0 on response tokens the loss sees
    sampler_logp: torch.Tensor  # [B, T]
    rewards: torch.Tensor  # [B]
    group_ids: torch.Tensor  # [B]
    group_size: int
    advantages: torch.Tensor | None = None  # [B, T], filled by the learner (`Learner._advantages`)
    returns: torch.Tensor | None = None  # [B, T], critic targets (GAE)
    old_values: torch.Tensor | None = None  # [B, T]
    old_logp: torch.Tensor | None = None  # [B, T], frozen when several updates per batch


def _pad(rows: list[list], value, dtype) -> torch.Tensor:
    width = max(1, max(map(len, rows)))
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=dtype)


def policy_loss_options(algo: AlgoConfig) -> dict:
    """The keyword options of `algo.policy_loss`, from the typed config (every option settable)."""
    clip = {"eps_low": algo.eps_low, "eps_high": algo.eps_high}
    return {
        "ppo_clip": {**clip, "dual_clip": algo.dual_clip},
        "gspo": clip,
        "cispo": clip,
        "clip_cov": {
            **clip,
            "clip_ratio": algo.clip_cov_ratio,
            "clip_cov_lb": algo.clip_cov_lb,
            "clip_cov_ub": algo.clip_cov_ub,
        },
        "kl_cov": {"k_ratio": algo.kl_cov_ratio, "ppo_kl_coef": algo.kl_cov_coef},
    }[algo.policy_loss]


def batch_tensors(batch: Batch, pad_id: int, device: torch.device) -> Tensors:
    """The batch's groups as right-padded [B, T] tensors on `device`, group by group."""
    samples = [(g.prompt, s, r) for g in batch.groups for s, r in zip(g.samples, g.rewards)]
    responses = [s.token_ids for _, s, _ in samples]
    return Tensors(
        prompts=[p for p, _, _ in samples],
        responses=responses,
        tokens=_pad(responses, pad_id, torch.long).to(device),
        mask=_pad([s.mask() for _, s, _ in samples], 0.0, torch.float32).to(device),
        sampler_logp=_pad([s.logprobs for _, s, _ in samples], 0.0, torch.float32).to(device),
        rewards=torch.tensor([r for _, _, r in samples], dtype=torch.float32, device=device),
        group_ids=torch.tensor(
            [i for i, g in enumerate(batch.groups) for _ in g.samples], dtype=torch.long, device=device
        ),
        group_size=batch.group_size,
    )
