"""Algorithm presets: pure data. `algo.name` picks one; any `algo.<key>` in a config overrides it.

Keys (every preset has all of them):
  advantage        ADVANTAGE_ESTIMATORS name (rewards [P, G] -> advantages), or "gae" (critic)
  policy_loss      POLICY_LOSSES name
  loss_agg         aggregation.aggregate mode
  eps_low/eps_high clip offsets from 1 (ratio in [1 - eps_low, 1 + eps_high]); None = no bound
  kl_coef          weight of KL(pi || pi_ref); 0 = no reference model
  kl_estimator     "k1" | "k2" | "k3" (losses.kl_penalty)
  kl_in_reward     True: -kl_coef * KL is added to the reward; False: +kl_coef * KL in the loss
  entropy_coef     weight of the entropy bonus (loss -= entropy_coef * H)
  dynamic_sampling drop zero-variance groups (advantages.zero_variance_groups)
  overlong_buffer  DAPO L_cache in tokens (advantages.overlong_penalty); 0 = off
  critic           train a value head (needed by "gae")
  gamma, lam       discount and GAE lambda (used by "gae")
  value_clip       PPO value-loss clip (used with a critic)
  norm_adv         the scaling the advantage applies: "group" (group std), "batch" (whitened over
                   the batch; for "gae", whiten the token advantages), "none" (centred only)
  ppo_epochs       passes over each rollout batch
  mini_batches     optimiser steps per pass (the batch is split this many ways)

eps values are in the loss's own convention: for gspo they bound the sequence ratio s_i, for
cispo the truncated IS weight (eps_high = 4 -> weight <= 5).
"""

from __future__ import annotations

from typing import Literal, get_args

# The registered names (rlscale.advantages, rlscale.losses), here because config validation must
# not import torch; the registries check at import that they implement exactly these.
AdvantageName = Literal[
    "grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "batch_norm", "gae"
]
PolicyLossName = Literal["ppo_clip", "gspo", "cispo", "clip_cov", "kl_cov"]
LossAggregation = Literal[
    "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm", "prompt-level"
]
AdvantageScaling = Literal["group", "batch", "none"]

# The scaling each sequence-level estimator applies itself; `norm_adv` chooses it only for "gae"
ADVANTAGE_SCALING: dict[str, str] = {
    "grpo": "group",
    "dr_grpo": "none",
    "rloo": "none",
    "reinforce_pp": "batch",
    "reinforce_pp_baseline": "batch",
    "batch_norm": "batch",
}


def names(literal) -> tuple[str, ...]:
    return get_args(literal)


def check_registry(what: str, registry: dict, literal) -> None:
    """A registry implements exactly the names the config accepts (checked when it is imported)."""
    expected = set(names(literal)) - {"gae"}  # GAE needs a critic: the learner calls it directly
    if set(registry) != expected:
        raise RuntimeError(f"{what} registry {sorted(registry)} != config names {sorted(expected)}")


_BASE = dict(
    advantage="grpo",
    policy_loss="ppo_clip",
    loss_agg="token-mean",
    eps_low=0.2,  # PPO, Schulman et al. 2017; TRL/verl default clip 0.2
    eps_high=0.2,
    kl_coef=0.0,  # TRL GRPOConfig.beta default 0.0
    kl_estimator="k3",
    kl_in_reward=False,
    entropy_coef=0.0,  # TRL and verl default: no entropy bonus
    dynamic_sampling=False,
    overlong_buffer=0,
    critic=False,
    gamma=1.0,  # verl defaults for outcome rewards
    lam=1.0,
    value_clip=0.2,  # TRL PPOConfig.cliprange_value
    norm_adv="group",
    ppo_epochs=1,  # TRL GRPOConfig.num_iterations = 1
    mini_batches=1,
)

ALGO_PRESETS: dict[str, dict] = {
    # GRPO, Shao et al. 2024 (DeepSeekMath): eq. 3 averages tokens per sequence, beta = 0.04 with
    # the k3 estimator (eq. 4) in the loss, one update per rollout; TRL loss_type="grpo"
    "grpo": {**_BASE, "loss_agg": "seq-mean-token-mean", "kl_coef": 0.04},
    # Dr. GRPO, Liu et al. 2025 (arXiv 2503.20783): no std scaling, constant token normaliser,
    # no KL; TRL loss_type="dr_grpo", scale_rewards="none"
    "dr_grpo": {
        **_BASE,
        "advantage": "dr_grpo",
        "loss_agg": "seq-mean-token-sum-norm",
        "norm_adv": "none",
    },
    # DAPO, Yu et al. 2025 (arXiv 2503.14476): clip-higher 0.2/0.28, token-level loss, no KL,
    # dynamic sampling, overlong buffer L_cache = 4096 (of L_max = 20480), 16 gradient steps
    # per rollout batch (prompt batch 512, mini-batch 512 x 16 samples)
    "dapo": {
        **_BASE,
        "eps_high": 0.28,
        "dynamic_sampling": True,
        "overlong_buffer": 4096,
        "mini_batches": 16,
    },
    # GSPO, Zheng et al. 2025 (arXiv 2507.18071): sequence ratio clipped to (3e-4, 4e-4),
    # per-sequence averaging, no KL, rollout batch split into 4 mini-batches
    "gspo": {
        **_BASE,
        "policy_loss": "gspo",
        "loss_agg": "seq-mean-token-mean",
        "eps_low": 3e-4,
        "eps_high": 4e-4,
        "mini_batches": 4,
    },
    # CISPO, MiniMax-M1 2025 (arXiv 2506.13585): eq. 4 normalises by all tokens of the group,
    # no lower bound on the IS weight, no KL; cap 1 + 4 = 5 = ScaleRL's eps_max (TRL's value)
    "cispo": {
        **_BASE,
        "policy_loss": "cispo",
        "eps_low": None,
        "eps_high": 4.0,
    },
    # PPO, Schulman et al. 2017 with a critic and GAE (Schulman et al. 2016); RLHF settings of
    # TRL's PPOConfig: gamma 1, lam 0.95, k1 KL (coef 0.05) in the reward, whitened advantages,
    # value clip 0.2, 4 PPO epochs, 1 mini-batch
    "ppo": {
        **_BASE,
        "advantage": "gae",
        "kl_coef": 0.05,
        "kl_estimator": "k1",
        "kl_in_reward": True,
        "critic": True,
        "lam": 0.95,
        "norm_adv": "batch",
        "ppo_epochs": 4,
    },
    # RLOO, Ahmadian et al. 2024 (arXiv 2402.14740): leave-one-out baseline, sequence-level
    # REINFORCE (token log-probs summed per sequence), k1 KL in the reward; TRL RLOOConfig:
    # beta 0.05, epsilon 0.2, normalize_advantages False
    "rloo": {
        **_BASE,
        "advantage": "rloo",
        "loss_agg": "seq-mean-token-sum",
        "kl_coef": 0.05,
        "kl_estimator": "k1",
        "kl_in_reward": True,
        "norm_adv": "none",
    },
    # REINFORCE++, Hu 2025 (arXiv 2501.03262): no critic, no group baseline, rewards whitened
    # over the global batch, PPO clip 0.2, token-level k1 KL in the reward (coef 0.01 as in
    # OpenRLHF's REINFORCE++ examples); "reinforce_pp_baseline" is the group-baseline variant
    "reinforce_pp": {
        **_BASE,
        "advantage": "reinforce_pp",
        "kl_coef": 0.01,
        "kl_estimator": "k1",
        "kl_in_reward": True,
        "norm_adv": "batch",
    },
    # ScaleRL, Khatri et al. 2025 (arXiv 2510.13786): CISPO loss (eps_max = 5), prompt-level
    # loss aggregation, group-mean baseline with batch-level std, zero-variance filtering,
    # no KL, no length penalty (ScaleRL uses interruptions)
    "scalerl": {
        **_BASE,
        "advantage": "batch_norm",
        "policy_loss": "cispo",
        "loss_agg": "prompt-level",
        "eps_low": None,
        "eps_high": 4.0,
        "dynamic_sampling": True,
        "norm_adv": "batch",
    },
}
