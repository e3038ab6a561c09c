"""Compute accounting: FLOPs per phase, samples, tokens and device-hours, defined once.

Every x-axis of a scaling curve comes from here; the run, the benchmarks and `rlscale fit` use
these functions and nothing else counts compute.

FLOPs per token of a model with N parameters (attention excluded): 2N for a forward pass and
6N for a forward plus backward pass (Kaplan et al. 2020, "Scaling Laws for Neural Language
Models", §2.1, C_forward = 2N, training C = 6N; the same rule as nanoGPT's `estimate_mfu`).
"""

from __future__ import annotations

import os

from rlscale.config import AlgoConfig

FORWARD = 2  # FLOPs per parameter per token
FORWARD_BACKWARD = 6
PHASES = ("generation", "training", "reference", "critic")


def generation_flops(n_params: int, tokens: int) -> float:
    """Sampling: one forward pass per prompt and generated token (the KV cache saves the rest)."""
    return float(FORWARD * n_params * tokens)


def learner_passes(algo: AlgoConfig) -> dict[str, float]:
    """How many passes over each trained token the learner makes, per phase, in units of N·token.

    What the learner computes for one batch (rlscale.learner):
    - training: a forward+backward per epoch, plus one no-grad forward for frozen "old" log-probs
      when the policy moves within the batch (several epochs or mini-batches) or when the KL goes
      into the reward (that pass gives the log-probs it needs);
    - reference: one forward over the batch for KL in the reward, else one per epoch in the loss;
    - critic: one forward for the old values, then a forward+backward per epoch (a value head on
      the policy runs its trunk again, so it costs the same as a separate critic).
    """
    epochs = algo.ppo_epochs
    kl = algo.kl_coef > 0
    old_logp_pass = epochs > 1 or algo.mini_batches > 1 or (kl and algo.kl_in_reward)
    return {
        "training": FORWARD_BACKWARD * epochs + FORWARD * old_logp_pass,
        "reference": FORWARD * ((1 if algo.kl_in_reward else epochs) if kl else 0),
        "critic": (FORWARD + FORWARD_BACKWARD * epochs) if algo.critic else 0,
    }


def step_flops(algo: AlgoConfig, n_params: int, *, generated_tokens: int, trained_tokens: float) -> dict:
    """FLOPs of one step per phase (PHASES): `generated_tokens` counts prompts and responses
    sampled, `trained_tokens` what the learner's forward pass computes (a group's prompt once)."""
    passes = learner_passes(algo)
    return {
        "generation": generation_flops(n_params, generated_tokens),
        **{phase: per_token * n_params * trained_tokens for phase, per_token in passes.items()},
    }


def device_count() -> int:
    """Accelerators if there are any, else CPU cores: the unit of `compute/device_hours`."""
    import torch

    return torch.cuda.device_count() or os.cpu_count() or 1


def device_hours(wall_s: float, devices: int) -> float:
    return wall_s * devices / 3600
