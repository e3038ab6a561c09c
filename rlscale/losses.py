"""Policy and value losses, KL estimators and importance weights. Pure torch, no state.

Token tensors are [B, T]: B sequences, T response positions, right-padded, with a float {0, 1}
`mask` (1 = response token). Advantages are per token [B, T] (a [B] tensor is broadcast).
Each policy loss returns `(loss_mat [B, T], stats)`; `rlscale.aggregation.aggregate` turns
`loss_mat` into the scalar to minimise; log-probs and entropy come from `rlscale.logits`.
Padded positions never reach the result or the gradient: inputs are zeroed there first
(`torch.where`, so NaN/inf garbage in padding cannot leak into gradients). Stats are
detached 0-dim tensors (`float(v)` works).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlscale import metric_names as M
from rlscale.aggregation import masked_mean, valid_tokens, zero_pad
from rlscale.presets import PolicyLossName, check_registry

# --------------------------------------------------------------------------- helpers


def _as_tokens(adv: Tensor, like: Tensor) -> Tensor:
    if adv.dim() == 1:
        adv = adv.unsqueeze(-1)
    return adv.expand_as(like)


def _k3(log_ratio: Tensor) -> Tensor:
    # Schulman 2020, "Approximating KL divergence": k3 = (r - 1) - log r, r = p/q, x ~ q
    return torch.expm1(log_ratio) - log_ratio


def _detached(stats: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().float() for k, v in stats.items()}


def _clip_stats(low: Tensor, high: Tensor, log_ratio: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Shares of tokens clipped below / above / either (as TRL counts them), and kl/old = the k3
    estimate of KL(pi_old || pi): what every clipped loss reports."""
    return {
        M.CLIP_FRACTION: masked_mean((low | high).float(), mask),
        M.CLIP_LOW: masked_mean(low.float(), mask),
        M.CLIP_HIGH: masked_mean(high.float(), mask),
        M.KL_OLD: masked_mean(_k3(log_ratio), mask),
    }


# --------------------------------------------------------------------------- policy losses


def ppo_clip(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate -min(r A, clip(r, 1-eps_low, 1+eps_high) A), r = pi/pi_old per token.

    eps_high > eps_low is DAPO's clip-higher. dual_clip=c (> 1) also bounds the loss of
    negative-advantage tokens by -c A (dual-clip PPO, Ye et al. 2020).
    stats: clip/fraction, clip/low_fraction, clip/high_fraction (tokens whose gradient the clip
    removed, as TRL counts them) and kl/old = k3 estimate of KL(pi_old || pi), masked means.
    """
    # PPO, Schulman et al. 2017, eq. 7; clip-higher, DAPO, Yu et al. 2025, eq. 10
    valid = valid_tokens(mask)
    log_ratio = zero_pad(logp - old_logp, valid)
    adv = zero_pad(_as_tokens(adv, logp), valid)
    ratio = torch.exp(log_ratio)
    surr1 = ratio * adv
    surr2 = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.min(surr1, surr2)
    stats = {}
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError("dual_clip must be > 1")
        dual = (adv < 0) & (loss > -dual_clip * adv)
        loss = torch.where(adv < 0, torch.min(loss, -dual_clip * adv), loss)
        stats["clip/dual_fraction"] = masked_mean(dual.float(), mask)
    low = (ratio < 1.0 - eps_low) & (adv < 0)
    high = (ratio > 1.0 + eps_high) & (adv > 0)
    stats.update(_clip_stats(low, high, log_ratio, mask))
    return loss, _detached(stats)


def gspo(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    eps_low: float = 3e-4,
    eps_high: float = 4e-4,
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO: PPO clip on the length-normalised sequence ratio s_i = exp(mean_t log r_t).

    Written in the GSPO-token form s_it = sg[s_i] * pi_t / sg[pi_t], whose value is s_i at every
    token and whose gradient equals GSPO's when the advantage is per sequence; aggregate with
    "seq-mean-token-mean". Defaults are the paper's clip range (3e-4, 4e-4).
    """
    # GSPO, Zheng et al. 2025, eq. 7: s_i = (pi(y_i|x) / pi_old(y_i|x))^(1/|y_i|); GSPO-token form
    valid = valid_tokens(mask)
    log_ratio = zero_pad(logp - old_logp, valid)
    logp_v = zero_pad(logp, valid)
    adv = zero_pad(_as_tokens(adv, logp), valid)
    n = valid.sum(dim=-1).clamp(min=1)
    log_s = log_ratio.sum(dim=-1) / n  # [B]
    log_s_tok = log_s.detach().unsqueeze(-1) + logp_v - logp_v.detach()
    s = torch.exp(log_s_tok)
    surr1 = s * adv
    surr2 = s.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.min(surr1, surr2)
    low = (s < 1.0 - eps_low) & (adv < 0)
    high = (s > 1.0 + eps_high) & (adv > 0)
    has_tokens = valid.any(dim=-1)
    stats = _clip_stats(low, high, log_ratio, mask)
    stats["gspo/seq_ratio_mean"] = (
        torch.exp(log_s)[has_tokens].mean() if has_tokens.any() else log_s.new_ones(())
    )
    return loss, _detached(stats)


def cispo(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    eps_low: float | None = None,
    eps_high: float | None = 4.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO: -sg[clip(r, 1-eps_low, 1+eps_high)] * A * log pi. Every token keeps a gradient.

    Defaults: no lower bound (MiniMax-M1 sets none; ScaleRL truncates from above only) and an
    upper cap 1 + eps_high = 5 = ScaleRL's eps_max (the value TRL's GRPOConfig documents for
    loss_type="cispo"; TRL's epsilon_high is the cap itself, ours is the offset from 1, as in
    MiniMax-M1 eq. 5 and verl).
    """
    # CISPO, MiniMax-M1 2025 (arXiv 2506.13585), eq. 4; clipped IS weight eq. 5
    valid = valid_tokens(mask)
    log_ratio = zero_pad(logp - old_logp, valid)
    logp_v = zero_pad(logp, valid)
    adv = zero_pad(_as_tokens(adv, logp), valid)
    ratio = torch.exp(log_ratio)
    lo = None if eps_low is None else 1.0 - eps_low
    hi = None if eps_high is None else 1.0 + eps_high
    weight = (ratio if lo is None and hi is None else ratio.clamp(min=lo, max=hi)).detach()
    loss = -weight * adv * logp_v
    low = ratio < lo if lo is not None else torch.zeros_like(valid)
    high = ratio > hi if hi is not None else torch.zeros_like(valid)
    stats = _clip_stats(low, high, log_ratio, mask)
    stats["cispo/weight_mean"] = masked_mean(weight, mask)
    return loss, _detached(stats)


def _centred_cov(logp: Tensor, adv: Tensor, valid: Tensor) -> Tensor:
    """Per-token (logp - mean logp)(A - mean A) over valid tokens; 0 at padding. Detached."""
    logp = zero_pad(logp.detach().float(), valid)
    adv = zero_pad(adv.detach().float(), valid)
    n = valid.sum().clamp(min=1)
    prod = (logp - logp.sum() / n) * (adv - adv.sum() / n)
    return zero_pad(prod, valid)


def logp_adv_covariance(logp: Tensor, adv: Tensor, mask: Tensor, *, q: float = 0.99) -> dict:
    """Mean and q-quantile of the per-token centred product (logp - mean)(A - mean).

    The mean is Cov(log pi, A) over the batch; Cui et al. 2025 show entropy change follows
    -Cov(log pi, A) and that a few high-covariance tokens dominate it (hence the quantile).
    """
    # Cui et al. 2025 (arXiv 2505.22617): dH ~ -Cov(log pi(a|s), A(s, a))
    valid = valid_tokens(mask)
    prod = _centred_cov(logp, _as_tokens(adv, logp), valid)
    vals = prod[valid]
    if vals.numel() == 0:
        zero = prod.new_zeros(())
        return {"cov/mean": zero, f"cov/p{q * 100:g}": zero}
    return {"cov/mean": vals.mean(), f"cov/p{q * 100:g}": torch.quantile(vals, q)}


def clip_cov(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    clip_ratio: float = 0.0002,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clip-Cov: PPO clip, plus the gradient of a random clip_ratio share of tokens removed,
    drawn among the not-already-clipped tokens whose centred covariance lies in (lb, ub).

    Defaults are the paper's (r = 2e-4, omega in (1, 5)); at least one token is drawn.
    """
    # Clip-Cov, Cui et al. 2025 (arXiv 2505.22617): detach tokens with Cov in (w_low, w_high)
    valid = valid_tokens(mask)
    adv_t = _as_tokens(adv, logp)
    loss, stats = ppo_clip(logp, old_logp, adv_t, mask, eps_low=eps_low, eps_high=eps_high)
    with torch.no_grad():
        ratio = torch.exp(zero_pad(logp - old_logp, valid))
        a = zero_pad(adv_t, valid)
        clipped = ((ratio < 1.0 - eps_low) & (a < 0)) | ((ratio > 1.0 + eps_high) & (a > 0))
        cov = _centred_cov(logp, adv_t, valid)
        cand = valid & ~clipped & (cov > clip_cov_lb) & (cov < clip_cov_ub)
        idx = torch.nonzero(cand.flatten()).squeeze(-1)
        n_clip = max(int(clip_ratio * int(valid.sum())), 1)
        perm = torch.randperm(idx.numel(), generator=generator, device="cpu").to(idx.device)
        drop = torch.zeros_like(valid)
        drop.view(-1)[idx[perm[:n_clip]]] = True
    loss = torch.where(drop, loss.detach(), loss)  # value kept, gradient removed
    stats.update(logp_adv_covariance(logp, adv_t, mask))
    stats["clip_cov/fraction"] = masked_mean(drop.float(), mask)
    return loss, _detached(stats)


def kl_cov(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    *,
    k_ratio: float = 0.002,
    ppo_kl_coef: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """KL-Cov: unclipped -r A, plus ppo_kl_coef * |log pi - log pi_old| on the top k_ratio share
    of tokens by centred covariance (at least one). Defaults are the paper's (k = 2e-3, beta = 1).
    """
    # KL-Cov, Cui et al. 2025 (arXiv 2505.22617): L = -r A + beta |log pi - log pi_old| on top-k Cov
    valid = valid_tokens(mask)
    adv_t = zero_pad(_as_tokens(adv, logp), valid)
    log_ratio = zero_pad(logp - old_logp, valid)
    ratio = torch.exp(log_ratio)
    loss = -ratio * adv_t
    with torch.no_grad():
        n_valid = int(valid.sum())
        sel = torch.zeros_like(valid)
        if n_valid > 0:
            cov = _centred_cov(logp, adv_t, valid)
            k = max(1, int(n_valid * k_ratio))
            scores = torch.where(valid, cov, torch.full_like(cov, -torch.inf)).flatten()
            sel.view(-1)[torch.topk(scores, k).indices] = True
    loss = loss + torch.where(sel, ppo_kl_coef * log_ratio.abs(), torch.zeros_like(loss))
    stats = logp_adv_covariance(logp, adv_t, mask)
    stats["kl_cov/fraction"] = masked_mean(sel.float(), mask)
    stats[M.KL_OLD] = masked_mean(_k3(log_ratio), mask)
    stats["kl/old_abs"] = masked_mean(log_ratio.abs(), mask)
    return loss, _detached(stats)


POLICY_LOSSES = {
    "ppo_clip": ppo_clip,
    "gspo": gspo,
    "cispo": cispo,
    "clip_cov": clip_cov,
    "kl_cov": kl_cov,
}
check_registry("policy loss", POLICY_LOSSES, PolicyLossName)


# --------------------------------------------------------------------------- KL and IS


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: str = "k3", *, mask: Tensor | None = None) -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi, [B, T].

    k1 = log r, k2 = (log r)^2 / 2, k3 = exp(-log r) + log r - 1 with log r = logp - ref_logp
    (k3 is unbiased and >= 0; DeepSeekMath eq. 4). The log-ratio inside k3 is clamped to
    [-20, 20] so exp cannot overflow (verl's low_var_kl does the same); verl's further clamp of
    k3 to [-10, 10] is not applied, since it would cut the gradient exactly when the policy has
    drifted furthest. Pass `mask` to zero padded positions before any arithmetic.
    """
    # Schulman 2020, "Approximating KL divergence" (k1, k2, k3)
    diff = logp - ref_logp
    if mask is not None:
        diff = zero_pad(diff, valid_tokens(mask))
    if kind == "k1":
        return diff
    if kind == "k2":
        return 0.5 * diff.square()
    if kind == "k3":
        d = (-diff).clamp(-20.0, 20.0)  # log(pi_ref / pi)
        return torch.expm1(d) - d
    raise ValueError(f"unknown KL estimator {kind!r}; choose k1, k2 or k3")


def truncated_is_weight(old_logp: Tensor, sampler_logp: Tensor, mask: Tensor, *, cap: float = 2.0) -> Tensor:
    """Detached min(pi_learner / pi_sampler, cap) per token, 0 at padding.

    Multiplies the policy loss to correct the sampler-vs-learner mismatch (vLLM vs torch).
    cap = 2 is the paper's C (TRL's token_truncate mode defaults to 3).
    """
    # TIS, Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL"
    valid = valid_tokens(mask)
    d = zero_pad(old_logp.detach() - sampler_logp.detach(), valid)
    return zero_pad(torch.exp(d).clamp(max=cap), valid)


def mismatch_kl(old_logp: Tensor, sampler_logp: Tensor, mask: Tensor) -> Tensor:
    """k3 estimate of KL(sampler || learner) over response tokens (the `mismatch/kl` metric)."""
    valid = valid_tokens(mask)
    d = zero_pad(old_logp.detach() - sampler_logp.detach(), valid).clamp(-20.0, 20.0)
    return masked_mean(_k3(d), mask)


# --------------------------------------------------------------------------- value


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *, clip: float | None = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped value loss 0.5 * max((V - R)^2, (V_old + clip(V - V_old, +-c) - R)^2), [B, T]."""
    # PPO value clipping, as in OpenAI baselines ppo2 / TRL PPOTrainer / verl compute_value_loss
    valid = valid_tokens(mask)
    v = zero_pad(values, valid)
    v_old = zero_pad(old_values, valid)
    ret = zero_pad(returns, valid)
    l1 = (v - ret).square()
    if clip is None:
        loss = 0.5 * l1
        frac = masked_mean(torch.zeros_like(l1), mask)
    else:
        v_clip = v_old + (v - v_old).clamp(-clip, clip)
        l2 = (v_clip - ret).square()
        loss = 0.5 * torch.max(l1, l2)
        frac = masked_mean((l2 > l1).float(), mask)
    stats = {"vf/clip_fraction": frac, "vf/explained_variance": explained_variance(v, ret, mask)}
    return loss, _detached(stats)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 - Var[R - V] / Var[R] over response tokens; NaN when Var[R] = 0."""
    valid = valid_tokens(mask)
    r = returns.detach().float()[valid]
    v = values.detach().float()[valid]
    if r.numel() < 2:
        return torch.tensor(float("nan"))
    var_r = r.var()
    if var_r == 0:
        return torch.tensor(float("nan"))
    return 1.0 - (r - v).var() / var_r
