"""Compute accounting: FLOPs per phase, samples, tokens and device-hours, defined once.

Every x-axis of a scaling curve comes from here; the run, the benchmarks and `rlscale fit` use
these functions and nothing else counts compute.

FLOPs per token of a model with N parameters (attention excluded): 2N for a forward pass and
6N for a forward plus backward pass (Kaplan et al. 2020, "Scaling Laws for Neural Language
Models", §2.1, C_forward = 2N, training C = 6N; the same rule as nanoGPT's `estimate_mfu`).

LoRA (`learner.lora`; N base parameters frozen, N_lora adapter parameters trained), per trained
token (`lora_training_per_token`):
- forward: 2N through the base weights plus 2·N_lora through the adapters (x A^T, then B);
- backward, activations' gradients: the chain rule still runs through every frozen matrix
  (dL/dx = dL/dy · W), 2N, plus 2·N_lora through the adapters;
- backward, weights' gradients: only for the adapters, 2·N_lora; the frozen W gets none (the 2N
  a full update spends on dL/dW = dL/dy^T x is not computed).
So 4N + 6·N_lora instead of 6N. Sampling runs the merged weights (2N, as without LoRA); the
reference is the base model (2N); a separate critic trains in full (6N).
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


def lora_training_per_token(algo: AlgoConfig, n_params: int, lora_params: int) -> float:
    """The "training" phase's FLOPs per trained token with LoRA (reasoning in the module doc):
    4N + 6·N_lora per forward+backward, 2(N + N_lora) for a no-grad pass over the policy."""
    passes = learner_passes(algo)
    no_grad_passes = (passes["training"] - FORWARD_BACKWARD * algo.ppo_epochs) / FORWARD
    per_update = 4 * n_params + 6 * lora_params
    return per_update * algo.ppo_epochs + FORWARD * (n_params + lora_params) * no_grad_passes


def step_flops(
    algo: AlgoConfig,
    n_params: int,
    *,
    generated_tokens: int,
    trained_tokens: float,
    lora_params: int = 0,
) -> dict:
    """FLOPs of one step per phase (PHASES): `generated_tokens` counts prompts and responses
    sampled, `trained_tokens` what the learner's forward pass computes (a group's prompt once);
    `lora_params`: the adapters' parameters when the learner trains LoRA (0: full training)."""
    passes = learner_passes(algo)
    per_token = {phase: passes_ * n_params for phase, passes_ in passes.items()}
    if lora_params:
        per_token["training"] = lora_training_per_token(algo, n_params, lora_params)
        if algo.critic and algo.critic_mode == "head":  # the value head's trunk is the LoRA policy's
            per_token["critic"] = FORWARD * (n_params + lora_params) + algo.ppo_epochs * (
                4 * n_params + 6 * lora_params
            )
    return {
        "generation": generation_flops(n_params, generated_tokens),
        **{phase: value * trained_tokens for phase, value in per_token.items()},
    }


def device_count() -> int:
    """Accelerators if there are any, else CPU cores: the unit of `compute/device_hours`."""
    import torch

    return torch.cuda.device_count() or os.cpu_count() or 1


def device_hours(wall_s: float, devices: int) -> float:
    return wall_s * devices / 3600
