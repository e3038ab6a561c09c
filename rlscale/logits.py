"""Log-probabilities and entropy from logits: full-vocabulary, in fp32, chunked over tokens so
a large vocabulary never holds [B, T, V] fp32 temporaries at once. Pure torch, no state."""

from __future__ import annotations

import torch
import torch.utils.checkpoint
from torch import Tensor


def _run_chunked(fn, logits: Tensor, *extra: Tensor, chunk_size: int | None) -> Tensor:
    """Apply fn to [N, V] row chunks of logits viewed as [B*T, V]; fp32 work stays per chunk.

    Default chunk: as many token rows as fit ~256 MiB of fp32 temporaries (copy, softmax,
    product), so a 150k vocabulary runs ~150 tokens at a time whatever B and T are.
    """
    lead, vocab = logits.shape[:-1], logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    flat_extra = [e.reshape(-1) for e in extra]
    rows = chunk_size if chunk_size is not None else (1 << 28) // max(1, vocab * 4 * 3)
    rows = max(1, rows)
    grad = torch.is_grad_enabled() and logits.requires_grad
    outs = []
    for i in range(0, flat.shape[0], rows):
        args = (flat[i : i + rows], *(e[i : i + rows] for e in flat_extra))
        if grad:  # recompute each chunk in backward rather than keep its fp32 temporaries
            outs.append(torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False))
        else:
            outs.append(fn(*args))
    if not outs:
        return flat.new_zeros(lead, dtype=torch.float32)
    return torch.cat(outs, dim=0).reshape(lead)


def _entropy_chunk(x: Tensor) -> Tensor:
    x = x.float()
    x = x - x.amax(dim=-1, keepdim=True).detach()  # shift first: lse - E[x] cancels otherwise
    lse = torch.logsumexp(x, dim=-1)
    p = torch.softmax(x, dim=-1)
    px = torch.where(p > 0, p * x, torch.zeros((), dtype=x.dtype, device=x.device))
    return lse - px.sum(dim=-1)  # H = logsumexp(x) - sum_v p_v x_v


def entropy_from_logits(logits: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """[B, T, V] -> [B, T] full-vocabulary entropy in nats, in fp32, chunked over tokens.

    chunk_size: token rows per chunk (default: what fits ~256 MiB of fp32 temporaries). With
    grad enabled each chunk is checkpointed, so backward recomputes it instead of storing it.
    """
    return _run_chunked(_entropy_chunk, logits, chunk_size=chunk_size)


def _logprob_chunk(x: Tensor, tokens: Tensor) -> Tensor:
    x = x.float()
    picked = x.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(x, dim=-1)


def logprobs_from_logits(logits: Tensor, tokens: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """[B, T, V], [B, T] -> [B, T] log pi(token) in fp32 (x_token - logsumexp x), chunked as
    entropy_from_logits is.

    Negative token ids (e.g. -100 label padding) are read as id 0; mask those positions.
    """
    return _run_chunked(_logprob_chunk, logits, tokens.clamp(min=0), chunk_size=chunk_size)
