"""Masked token tensors reduced to scalars: padding zeroed first, `masked_mean`, and `aggregate`,
the loss aggregation modes (each citing its paper). Pure torch, no state.

Token tensors are [B, T]: B sequences, T response positions, right-padded, with a float {0, 1}
`mask` (1 = response token). Padded positions are zeroed with `torch.where` before any
arithmetic, so NaN/inf garbage in padding cannot leak into results or gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlscale.presets import LossAggregation, names


def valid_tokens(mask: Tensor) -> Tensor:
    """The response positions of `mask` as a bool tensor."""
    return mask > 0


def zero_pad(x: Tensor, valid: Tensor) -> Tensor:
    """x with every position outside `valid` set to 0 (not multiplied: garbage cannot leak)."""
    return torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x over positions where mask > 0 (0 if there are none)."""
    valid = valid_tokens(mask)
    return zero_pad(x, valid).sum() / valid.sum().clamp(min=1)


def aggregate(
    loss_mat: Tensor,
    mask: Tensor,
    mode: str,
    *,
    group_ids: Tensor | None = None,
    max_len: int | None = None,
) -> Tensor:
    """Reduce a [B, T] loss to a scalar.

    token-mean: sum / #tokens (DAPO eq. 10; TRL "dapo"/"bnpo").
    seq-mean-token-mean: mean over sequences of each one's token mean (GRPO eq. 3; TRL "grpo").
    seq-mean-token-sum: mean over sequences of each one's token sum.
    seq-mean-token-sum-norm: sum / (B * max_len), max_len defaults to T (Dr. GRPO; TRL "dr_grpo").
    prompt-level: mean over prompts of the token mean within each prompt's group (ScaleRL);
    needs group_ids LongTensor[B].
    """
    valid = valid_tokens(mask)
    lm = zero_pad(loss_mat, valid)
    ntok = valid.sum(dim=-1).to(lm.dtype)
    if mode == "token-mean":
        return lm.sum() / ntok.sum().clamp(min=1)
    if mode == "seq-mean-token-mean":
        return (lm.sum(dim=-1) / ntok.clamp(min=1)).mean()
    if mode == "seq-mean-token-sum":
        return lm.sum(dim=-1).mean()
    if mode == "seq-mean-token-sum-norm":
        # Dr. GRPO, Liu et al. 2025: a constant normaliser (MAX_TOKENS), no length bias
        return lm.sum() / (lm.shape[0] * (max_len if max_len is not None else lm.shape[-1]))
    if mode == "prompt-level":
        # ScaleRL, Khatri et al. 2025: prompt-average loss aggregation
        if group_ids is None:
            raise ValueError("prompt-level aggregation needs group_ids")
        _, inv = torch.unique(group_ids, return_inverse=True)
        n = int(inv.max()) + 1 if inv.numel() else 0
        num = lm.new_zeros(n).index_add(0, inv, lm.sum(dim=-1))
        den = lm.new_zeros(n).index_add(0, inv, ntok)
        return (num / den.clamp(min=1)).mean()
    raise ValueError(f"unknown loss aggregation {mode!r}; choose from {names(LossAggregation)}")
