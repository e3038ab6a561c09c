"""Checks the config schema (`rlscale.config`) runs across fields: an algorithm preset filled
in and values that would do nothing refused; an environment's kwargs checked against its
constructor. No heavy imports: `rlscale run` validates before importing ray/torch/vLLM."""

from __future__ import annotations

from pathlib import Path

from rlscale.presets import ADVANTAGE_SCALING, ALGO_PRESETS

# algo keys that only act under a condition: (condition in words, test of the resolved algo)
_APPLIES_ONLY = {
    **dict.fromkeys(
        ("gamma", "lam", "value_clip", "vf_coef", "critic_mode"),
        ("with a critic (algo.critic=true)", lambda a: a.critic),
    ),
    **dict.fromkeys(
        ("kl_estimator", "kl_in_reward", "ref_reset_every"),
        ("with a reference model (algo.kl_coef > 0)", lambda a: a.kl_coef > 0),
    ),
    "dual_clip": ("with policy_loss ppo_clip", lambda a: a.policy_loss == "ppo_clip"),
    **dict.fromkeys(
        ("clip_cov_ratio", "clip_cov_lb", "clip_cov_ub"),
        ("with policy_loss clip_cov", lambda a: a.policy_loss == "clip_cov"),
    ),
    **dict.fromkeys(
        ("kl_cov_ratio", "kl_cov_coef"), ("with policy_loss kl_cov", lambda a: a.policy_loss == "kl_cov")
    ),
    **dict.fromkeys(
        ("eps_low", "eps_high"), ("with a clipped loss (not kl_cov)", lambda a: a.policy_loss != "kl_cov")
    ),
}


def resolve_algo(algo) -> None:
    """Fill the preset into `algo` in place; refuse values that would do nothing."""
    preset = ALGO_PRESETS[algo.name]
    user_set = {k for k in algo.model_fields_set if getattr(algo, k) is not None}
    for key, value in preset.items():
        if getattr(algo, key) is None:
            object.__setattr__(algo, key, value)
    if algo.advantage == "gae":
        if not algo.critic:
            raise ValueError("algo.critic: advantage 'gae' needs a critic (algo.critic=true)")
    elif "norm_adv" not in user_set:  # the scaling the chosen estimator applies
        object.__setattr__(algo, "norm_adv", ADVANTAGE_SCALING[algo.advantage])
    elif algo.norm_adv != ADVANTAGE_SCALING[algo.advantage]:
        fits = sorted(k for k, v in ADVANTAGE_SCALING.items() if v == algo.norm_adv)
        raise ValueError(
            f"algo.norm_adv: advantage {algo.advantage!r} applies {ADVANTAGE_SCALING[algo.advantage]!r} "
            f"scaling itself; norm_adv chooses the scaling only for 'gae' (for {algo.norm_adv!r} "
            f"scaling choose advantage {' or '.join(fits)})"
        )
    for key in _set_over_preset(algo):
        if key in _APPLIES_ONLY and not _APPLIES_ONLY[key][1](algo):
            raise ValueError(f"algo.{key}: does nothing here; it is used only {_APPLIES_ONLY[key][0]}")


def _set_over_preset(algo) -> list[str]:
    """The algo keys the config set to something other than the preset's (or default) value."""
    preset = ALGO_PRESETS[algo.name]
    defaults = {k: f.default for k, f in type(algo).model_fields.items()}
    return [
        k
        for k in sorted(algo.model_fields_set)
        if getattr(algo, k) is not None and getattr(algo, k) != preset.get(k, defaults[k])
    ]


# algo keys that act only once the policy has moved away from the one that sampled the batch
_RATIO_KEYS = ("eps_low", "eps_high", "dual_clip", "kl_cov_ratio", "kl_cov_coef")


def inert_settings(cfg) -> list[str]:
    """Notes on settings a config makes that cannot act in it. Not errors: the run is valid,
    it just does not test what the setting names. With one optimiser step per rollout batch
    on-policy the learner's "old" log-probs are its own (`Learner.update`), so every PPO ratio
    is exactly 1: a clip bound never binds and KL-Cov's |log ratio| penalty and its gradient
    are 0. Only values set over the preset are noted (plain GRPO's unused clip is no news)."""
    algo = cfg.algo
    if algo.ppo_epochs * algo.mini_batches > 1 or cfg.trainer.off_policy_steps:
        return []
    over = _set_over_preset(algo)
    keys = [k for k in _RATIO_KEYS if k in over]
    if "policy_loss" in over and algo.policy_loss == "kl_cov":
        keys.insert(0, "policy_loss")
    if not keys:
        return []
    settings = " ".join(f"algo.{k}={getattr(algo, k)}" for k in keys)
    return [
        f"{settings}: no effect here: with one optimiser step per rollout batch on-policy every "
        "PPO ratio is exactly 1, so no clip binds and KL-Cov's penalty is 0; set "
        "algo.mini_batches or algo.ppo_epochs above 1, or trainer.off_policy_steps"
    ]


# constructor arguments that name a data file or directory: checked to exist at config time
_DATA_ARGS = ("path", "data_path", "data_file")


def check_env_kwargs(name: str, kwargs: dict, where: str = "env.kwargs") -> None:
    """Refuse kwargs the environment's constructor does not take, missing required ones, and
    data files that do not exist, before anything is built (one line naming the key)."""
    import inspect

    from rlscale.envs import env_class, env_names

    try:
        params = inspect.signature(env_class(name)).parameters
    except (TypeError, ValueError):  # no introspectable signature: the constructor checks
        return
    named = {k: p for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    valid = ", ".join(named) or "(none)"
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        for key in kwargs:
            if key not in named:
                raise ValueError(f"{where}.{key}: unknown argument of environment {name!r}; valid: {valid}")
    for key, p in named.items():
        if p.default is p.empty and key not in kwargs:
            raise ValueError(f"{where}.{key}: required by environment {name!r} (arguments: {valid})")
    for key in _DATA_ARGS:
        value = kwargs.get(key)
        if key in named and isinstance(value, str) and not Path(value).expanduser().exists():
            raise ValueError(f"{where}.{key}: no such file or directory: {value}")
    components = kwargs.get("components") if name == "mixture" else None
    for i, component in enumerate(components if isinstance(components, list) else []):
        if isinstance(component, dict) and isinstance(component.get("kwargs") or {}, dict):
            sub = component.get("name")
            if sub not in env_names():
                raise ValueError(
                    f"{where}.components[{i}].name: unknown environment {sub!r}; choose from {env_names()}"
                )
            check_env_kwargs(sub, component.get("kwargs") or {}, f"{where}.components[{i}].kwargs")
