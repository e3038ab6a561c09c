"""Learner: the policy (a transformers model) and its update, hosted in a Ray actor.

fp32 on CPU; bf16 weights with fp32 logits on CUDA. The loss math lives in `losses` and
`advantages`; this file only batches tokens, runs forward/backward and steps AdamW.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import ray
import torch
from transformers import AutoModelForCausalLM

from rlscale import losses


@dataclass
class Batch:
    """Sequences to train on; advantages are per sequence and broadcast over its tokens."""

    prompts: list[list[int]]
    responses: list[list[int]]
    sampler_logprobs: list[list[float]]
    advantages: list[float]
    group_ids: list[int]


@dataclass
class _Tensors:
    input_ids: torch.Tensor  # [B, L] prompt + response, right-padded
    gather_idx: torch.Tensor  # [B, T] position whose logits predict response token t
    tokens: torch.Tensor  # [B, T] response tokens
    mask: torch.Tensor  # [B, T] 1.0 on response tokens
    advantages: torch.Tensor  # [B, T]
    sampler_logp: torch.Tensor  # [B, T]
    group_ids: torch.Tensor  # [B]


def _pad(rows: list[list], value, dtype) -> torch.Tensor:
    width = max(1, max(map(len, rows)))
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=dtype)


LEARNER_STATE = "learner_state.pt"


class LearnerCore:
    def __init__(self, model_dir: str, *, algo: dict, learner: dict, seed: int, max_tokens: int):
        """`model_dir` may be a checkpoint: its optimizer, schedule and RNG state are restored."""
        torch.manual_seed(seed)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = learner.get("dtype", "auto")
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        self.model.to(self.device).train()
        self.pad_id = self.model.config.pad_token_id or 0
        self.algo, self.max_tokens = algo, max_tokens
        self.ref = None
        if algo["kl_coef"] > 0:
            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(
            self.model.parameters(),
            lr=learner["lr"],
            betas=tuple(learner["betas"]),
            weight_decay=learner["weight_decay"],
        )
        warmup = learner["warmup_steps"]
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.grad_clip = learner["grad_clip"]
        self.n_params = sum(p.numel() for p in self.model.parameters())
        state_file = Path(model_dir) / LEARNER_STATE
        if state_file.is_file():
            state = torch.load(state_file, map_location=self.device, weights_only=False)
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"])

    # -- batching ------------------------------------------------------------------------
    def _tensors(self, batch: Batch) -> _Tensors:
        rows = [p + r for p, r in zip(batch.prompts, batch.responses)]
        gather = [[len(p) - 1 + t for t in range(len(r))] for p, r in zip(batch.prompts, batch.responses)]
        dev = self.device
        mask = _pad([[1.0] * len(r) for r in batch.responses], 0.0, torch.float32)
        adv = torch.tensor(batch.advantages, dtype=torch.float32)[:, None] * mask
        return _Tensors(
            input_ids=_pad(rows, self.pad_id, torch.long).to(dev),
            gather_idx=_pad(gather, 0, torch.long).to(dev),
            tokens=_pad(batch.responses, self.pad_id, torch.long).to(dev),
            mask=mask.to(dev),
            advantages=adv.to(dev),
            sampler_logp=_pad(batch.sampler_logprobs, 0.0, torch.float32).to(dev),
            group_ids=torch.tensor(batch.group_ids, dtype=torch.long, device=dev),
        )

    def _response_logits(self, model, t: _Tensors, rows: slice | torch.Tensor) -> torch.Tensor:
        """fp32 logits at the positions that predict each response token: [b, T, V]."""
        # right padding under a causal mask never reaches real tokens: no attention mask needed
        hidden = model.get_decoder()(input_ids=t.input_ids[rows]).last_hidden_state
        idx = t.gather_idx[rows]
        hidden = hidden.gather(1, idx[..., None].expand(-1, -1, hidden.shape[-1]))
        return model.get_output_embeddings()(hidden).float()

    # -- update --------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, float]:
        algo = self.algo
        t = self._tensors(batch)
        n = t.input_ids.shape[0]
        epochs, minis = algo["ppo_epochs"], algo["mini_batches"]
        on_policy = epochs == 1 and minis == 1
        old_logp = None
        if not on_policy:  # the update changes the policy between mini-batches: freeze "old"
            with torch.no_grad():
                old_logp = losses.logprobs_from_logits(
                    self._response_logits(self.model, t, slice(None)), t.tokens
                )
        stats: dict[str, list[float]] = {}
        skipped = 0
        for _ in range(epochs):
            order = torch.randperm(n) if minis > 1 else torch.arange(n)
            for chunk in order.chunk(minis):
                s, ok = self._step(t, chunk.to(self.device), old_logp)
                skipped += not ok
                for k, v in s.items():
                    stats.setdefault(k, []).append(v)
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        out["learner/skipped_updates"] = float(skipped)
        out["lr"] = self.sched.get_last_lr()[0]
        self.sched.step()
        out["tokens/trained"] = float(t.input_ids.ne(self.pad_id).sum())
        return out

    def _step(self, t: _Tensors, rows: torch.Tensor, old_logp_all: torch.Tensor | None):
        algo = self.algo
        logits = self._response_logits(self.model, t, rows)
        mask, adv = t.mask[rows], t.advantages[rows]
        logp = losses.logprobs_from_logits(logits, t.tokens[rows])
        entropy = losses.entropy_from_logits(logits.detach())
        old_logp = logp.detach() if old_logp_all is None else old_logp_all[rows]
        loss_fn = losses.POLICY_LOSSES[algo["policy_loss"]]
        loss_mat, pg_stats = loss_fn(
            logp, old_logp, adv, mask, eps_low=algo["eps_low"], eps_high=algo["eps_high"]
        )
        agg = dict(group_ids=t.group_ids[rows], max_len=self.max_tokens)
        loss = losses.aggregate(loss_mat, mask, algo["loss_agg"], **agg)
        stats = {"loss/policy": float(loss.detach())}
        if self.ref is not None:
            with torch.no_grad():
                ref_logp = losses.logprobs_from_logits(
                    self._response_logits(self.ref, t, rows), t.tokens[rows]
                )
            kl = losses.aggregate(
                losses.kl_penalty(logp, ref_logp, algo["kl_estimator"]), mask, algo["loss_agg"], **agg
            )
            loss = loss + algo["kl_coef"] * kl
            stats["kl/ref"] = float(kl.detach())
        if algo["entropy_coef"]:
            loss = loss - algo["entropy_coef"] * losses.aggregate(
                losses.entropy_from_logits(logits), mask, algo["loss_agg"], **agg
            )
        denom = mask.sum().clamp(min=1)
        stats["entropy/mean"] = float((entropy * mask).sum() / denom)
        # KL(sampler || learner) on the sampled tokens, k3 estimator: r - 1 - log r, r = p/q
        log_r = old_logp - t.sampler_logp[rows]
        stats["mismatch/kl"] = float(((log_r.exp() - 1 - log_r) * mask).sum() / denom)
        stats.update({k: float(v) for k, v in pg_stats.items()})

        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip))
        stats["grad_norm"] = grad_norm
        if not (math.isfinite(grad_norm) and math.isfinite(float(loss.detach()))):
            self.opt.zero_grad(set_to_none=True)  # a NaN/inf update is skipped, never applied
            return stats, False
        self.opt.step()
        return stats, True

    def num_parameters(self) -> int:
        return self.n_params

    # -- weights -------------------------------------------------------------------------
    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu") for k, v in self.model.state_dict().items()}

    def save(self, path: str) -> None:
        """HF model files plus everything needed to continue training exactly."""
        self.model.save_pretrained(path)
        state = {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        torch.save(state, Path(path) / LEARNER_STATE)

    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """Log-prob of every token after the first under the current weights (fp32)."""
        with torch.no_grad():
            out = []
            for seq in sequences:
                ids = torch.tensor([seq], device=self.device)
                logits = self.model(input_ids=ids).logits[0, :-1].float()
                out.append(losses.logprobs_from_logits(logits[None], ids[:, 1:])[0].tolist())
            return out


Learner = ray.remote(LearnerCore)
