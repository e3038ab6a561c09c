"""Learner: the policy (a transformers model), an optional critic, and the update, in a Ray actor.

fp32 on CPU; bf16 weights with fp32 logits on CUDA. The math lives in `losses`, `aggregation`,
`logits` and `advantages`, the batch's tensors in `learner_inputs`, LoRA in `lora`; this file
packs tokens, turns rewards into advantages (it holds the reference and critic models those
need), runs forward/backward and steps AdamW.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import ray
import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as transformers_logging

from rlscale import advantages as adv_lib
from rlscale import losses
from rlscale import metric_names as M
from rlscale.aggregation import aggregate
from rlscale.batch import Batch
from rlscale.config import AlgoConfig, LearnerConfig
from rlscale.learner_inputs import Tensors, batch_tensors, policy_loss_options
from rlscale.logits import entropy_from_logits, logprobs_from_logits
from rlscale.lora import ADAPTER_DIR, merged_weights, save_merged_and_adapters, with_adapters
from rlscale.models import resolve_dtype
from rlscale.packing import Packed, pack
from rlscale.rollout import FlatWeights

LEARNER_STATE = "learner_state.pt"


class Learner:
    def __init__(
        self,
        model_dir: str,
        *,
        algo: AlgoConfig,
        learner: LearnerConfig,
        seed: int,
        max_tokens: int,
        off_policy: bool = False,
        base_dir: str | None = None,
    ):
        """`model_dir` may be a checkpoint: optimizer, schedule, critic and RNG state are restored.

        `off_policy`: batches come from an older policy, so the PPO ratio's "old" policy is the
        sampler (its log-probs) rather than the current weights.
        `base_dir`: with LoRA, the frozen base model a checkpoint's adapters were trained on
        (the checkpoint's own model files are the merged weights)."""
        # transformers' own progress bars (e.g. "Writing model shards" at each checkpoint) reach the
        # driver through Ray's log forwarding, late: one after `rlscale`'s last line on a SIGINT
        transformers_logging.disable_progress_bar()
        torch.manual_seed(seed)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        adapter = Path(model_dir) / ADAPTER_DIR if learner.lora else None
        if adapter is not None and adapter.is_dir():  # resuming LoRA: the base, then its adapters
            if base_dir is None:
                raise ValueError(f"{model_dir} holds LoRA adapters; the learner needs their base_dir")
            load_from = base_dir
        else:
            load_from, adapter = model_dir, None
        self.model = AutoModelForCausalLM.from_pretrained(load_from, dtype=resolve_dtype(learner.dtype))
        self.model.to(self.device).train()
        self.n_params = sum(p.numel() for p in self.model.parameters())  # the base model's
        self.pad_id = self.model.config.pad_token_id or 0
        self.algo, self.max_tokens, self.off_policy = algo, max_tokens, off_policy
        self.ref = None
        if algo.kl_coef > 0:
            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.critic_trunk = self.value_head = None
        if algo.critic:
            # "separate": its own copy of the trunk; "head": a value head on the policy's trunk
            # (with LoRA a separate critic is copied before the adapters: it trains in full)
            trunk = self.model.get_decoder()
            self.critic_trunk = copy.deepcopy(trunk) if algo.critic_mode == "separate" else trunk
            self.value_head = torch.nn.Linear(self.model.config.hidden_size, 1).to(self.device)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)
        self.lora = learner.lora
        if self.lora is not None:
            self.model = with_adapters(self.model, self.lora, adapter)
        self._wrap(Path(model_dir))
        params = [p for p in self.model.parameters() if p.requires_grad]  # with LoRA: the adapters
        self.n_lora = sum(p.numel() for p in params) if self.lora is not None else 0
        if algo.critic:
            if algo.critic_mode == "separate":
                params += list(self.critic_trunk.parameters())
            params += list(self.value_head.parameters())
        self.params = params
        self.learner_cfg = learner
        self.opt = self._optimizer()
        warmup = learner.warmup_steps
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.grad_clip = learner.grad_clip
        self.updates = 0
        self._restore(Path(model_dir))

    def _wrap(self, model_dir: Path) -> None:
        """Before the optimizer sees the parameters: a sharded learner shards its models here."""

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.learner_cfg
        return torch.optim.AdamW(
            self.params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )

    def _restore(self, model_dir: Path) -> None:
        state_file = model_dir / LEARNER_STATE
        if not state_file.is_file():
            return
        state = torch.load(state_file, map_location=self.device, weights_only=False)
        if self.value_head is not None and state.get("critic") is not None:
            self.value_head.load_state_dict(state["critic"]["head"])
            if state["critic"]["trunk"] is not None:
                self.critic_trunk.load_state_dict(state["critic"]["trunk"])
        if self.ref is not None and state.get("ref") is not None:
            self.ref.load_state_dict(state["ref"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.updates = state["updates"]
        torch.set_rng_state(state["torch_rng"])

    # -- batching ------------------------------------------------------------------------
    def _pack(self, t: Tensors, rows: torch.Tensor) -> Packed:
        """The sequences `rows` packed for a forward pass (see `pack`), on the device."""
        rows = rows.tolist()
        packed = pack(
            [t.prompts[b] for b in rows],
            [t.responses[b] for b in rows],
            t.group_ids[rows].tolist(),
            row_tokens=self.learner_cfg.pack_tokens,
            pad_id=self.pad_id,
            response_width=t.tokens.shape[1],
            dtype=self.model.dtype,
        )
        return packed.to(self.device)

    @staticmethod
    def _hidden(trunk, packed: Packed) -> torch.Tensor:
        """Hidden states at the positions that predict each response token: [b, T, H]."""
        hidden = trunk(
            input_ids=packed.input_ids,
            position_ids=packed.position_ids,
            attention_mask=packed.attention_mask,
        ).last_hidden_state
        return hidden.flatten(0, 1)[packed.gather]

    def _logits(self, model, packed: Packed) -> torch.Tensor:
        return model.get_output_embeddings()(self._hidden(model.get_decoder(), packed)).float()

    def _values(self, packed: Packed) -> torch.Tensor:
        return self.value_head(self._hidden(self.critic_trunk, packed).float()).squeeze(-1)

    # -- rewards -> advantages -----------------------------------------------------------
    def _advantages(self, t: Tensors, stats: dict, everything: Packed) -> None:
        """Per-token advantages from sequence rewards, with KL-in-reward and overlong shaping.

        `everything`: the whole batch packed, for the passes some algorithms need here."""
        algo, mask = self.algo, t.mask
        several_updates = algo.ppo_epochs > 1 or algo.mini_batches > 1
        kl_in_reward = self.ref is not None and algo.kl_in_reward
        with torch.no_grad():
            logp = None  # an extra forward pass, only when the algorithm needs it
            if several_updates or kl_in_reward:
                logp = logprobs_from_logits(self._logits(self.model, everything), t.tokens)
            seq_rewards = t.rewards.clone()
            if algo.overlong_buffer:
                # DAPO's buffer is in tokens of a 20k budget; scale it to this run's budget
                buffer = min(algo.overlong_buffer, max(1, self.max_tokens // 4))
                lengths = mask.sum(-1)
                shaping = adv_lib.overlong_penalty(lengths, max_len=self.max_tokens, buffer_len=buffer)
                seq_rewards += shaping
                stats["reward/overlong_penalty"] = float(shaping.mean())
            token_rewards = torch.zeros_like(mask)
            if kl_in_reward:
                ref_logp = logprobs_from_logits(self._logits(self.ref, everything), t.tokens)
                kl = losses.kl_penalty(logp, ref_logp, algo.kl_estimator) * mask
                token_rewards -= algo.kl_coef * kl
                stats[M.KL_REF] = float(kl.sum() / mask.sum().clamp(min=1))
            if algo.advantage == "gae":
                positions = torch.arange(mask.shape[1], device=mask.device)
                last = (positions * (mask > 0)).argmax(-1)  # the policy's last token
                token_rewards[torch.arange(len(last)), last] += seq_rewards
                t.old_values = self._values(everything) * mask
                adv, t.returns = adv_lib.gae(
                    token_rewards, t.old_values, mask, gamma=algo.gamma, lam=algo.lam
                )
                if algo.norm_adv == "batch":
                    adv = adv_lib.batch_normalized(adv, mask=mask)
            else:
                seq_rewards += token_rewards.sum(-1)  # KL in the reward, summed per sequence
                groups = seq_rewards.view(-1, t.group_size)
                adv = adv_lib.ADVANTAGE_ESTIMATORS[algo.advantage](groups).reshape(-1, 1) * mask
            t.advantages = adv
            if several_updates:
                t.old_logp = logp  # the policy moves between mini-batches: freeze "old"
            if self.off_policy:
                t.old_logp = t.sampler_logp

    # -- update --------------------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, float]:
        algo, start = self.algo, time.perf_counter()
        t = batch_tensors(batch, self.pad_id, self.device)
        n = len(t.prompts)
        stats: dict[str, float] = {}
        everything = self._pack(t, torch.arange(n))
        self._advantages(t, stats, everything)
        collected: dict[str, list[float]] = {}
        skipped = computed = 0
        for epoch in range(algo.ppo_epochs):
            order = torch.randperm(n) if algo.mini_batches > 1 else torch.arange(n)
            for chunk in order.chunk(algo.mini_batches):
                rows = self._rows(t, chunk)  # one learner: the chunk; a sharded one: its share
                packed = everything if algo.mini_batches == 1 and rows is chunk else self._pack(t, rows)
                computed += packed.tokens if epoch == 0 else 0
                step_stats, ok = self._step(t, rows.to(self.device), packed)
                skipped += not ok
                for k, v in step_stats.items():
                    collected.setdefault(k, []).append(v)
        stats.update({k: sum(v) / len(v) for k, v in collected.items()})
        stats[M.SKIPPED_IN_UPDATE] = float(skipped)
        stats[M.LR] = self.sched.get_last_lr()[0]
        self.sched.step()
        self.updates += 1
        stats[M.TOKENS_TRAINED] = float(computed)  # what one forward pass computes (prompts shared)
        stats[M.LEARNER_BUSY_S] = time.perf_counter() - start
        if algo.ref_reset_every and self.ref is not None and self.updates % algo.ref_reset_every == 0:
            self.reset_reference()
            stats["kl/ref_reset"] = 1.0
        return stats

    # hooks a sharded learner (`learner_group.ShardedLearner`) overrides; here, one learner
    def _rows(self, t: Tensors, chunk: torch.Tensor) -> torch.Tensor:
        """The rows of `chunk` (a mini-batch) this learner computes."""
        return chunk

    def _aggregate(self, mat: torch.Tensor, mask: torch.Tensor, mode: str, **agg) -> torch.Tensor:
        """`aggregate` of this learner's rows (a sharded one: its part of the whole's)."""
        return aggregate(mat, mask, mode, **agg)

    def _backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def _clip(self) -> float:
        return float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip))

    def _reduce_stats(self, stats: dict[str, float]) -> dict[str, float]:
        return stats

    def _loss_value(self, loss: torch.Tensor) -> float:
        return float(loss.detach())

    def _step(self, t: Tensors, rows: torch.Tensor, packed: Packed) -> tuple[dict[str, float], bool]:
        algo = self.algo
        logits = self._logits(self.model, packed)
        mask, adv = t.mask[rows], t.advantages[rows]
        logp = logprobs_from_logits(logits, t.tokens[rows])
        entropy = entropy_from_logits(logits.detach())
        old_logp = logp.detach() if t.old_logp is None else t.old_logp[rows]
        loss_mat, pg_stats = losses.POLICY_LOSSES[algo.policy_loss](
            logp, old_logp, adv, mask, **policy_loss_options(algo)
        )
        if algo.tis_cap:
            loss_mat = loss_mat * losses.truncated_is_weight(
                old_logp, t.sampler_logp[rows], mask, cap=algo.tis_cap
            )
        agg = dict(group_ids=t.group_ids[rows], max_len=self.max_tokens)
        loss = self._aggregate(loss_mat, mask, algo.loss_agg, **agg)
        stats = {M.LOSS_POLICY: float(loss.detach())}
        if self.ref is not None and not algo.kl_in_reward:
            with torch.no_grad():
                ref_logp = logprobs_from_logits(self._logits(self.ref, packed), t.tokens[rows])
            kl_mat = losses.kl_penalty(logp, ref_logp, algo.kl_estimator)
            kl = self._aggregate(kl_mat, mask, algo.loss_agg, **agg)
            loss = loss + algo.kl_coef * kl
            stats[M.KL_REF] = float(kl.detach())
        if algo.entropy_coef:
            bonus = self._aggregate(entropy_from_logits(logits), mask, algo.loss_agg, **agg)
            loss = loss - algo.entropy_coef * bonus
        if self.value_head is not None:
            values = self._values(packed)
            v_mat, v_stats = losses.value_loss(
                values, t.old_values[rows], t.returns[rows], mask, clip=algo.value_clip
            )
            v_loss = self._aggregate(v_mat, mask, "token-mean")
            loss = loss + algo.vf_coef * v_loss
            stats["value/loss"] = float(v_loss.detach())
            stats["value/explained_variance"] = float(
                losses.explained_variance(values, t.returns[rows], mask)
            )
            stats.update({k: float(v) for k, v in v_stats.items()})
        denom = mask.sum().clamp(min=1)
        stats[M.ENTROPY] = float((entropy * mask).sum() / denom)
        # off-policy, old is the sampler: compare the current policy with it (the policy's lag)
        lagging = logp if self.off_policy else old_logp
        stats[M.MISMATCH_KL] = float(losses.mismatch_kl(lagging, t.sampler_logp[rows], mask))
        cov = losses.logp_adv_covariance(logp.detach(), adv, mask)
        stats.update({k: float(v) for k, v in {**pg_stats, **cov}.items()})

        stats = self._reduce_stats(stats)
        self.opt.zero_grad(set_to_none=True)
        self._backward(loss)
        grad_norm = self._clip()
        stats[M.GRAD_NORM] = grad_norm
        if not (math.isfinite(grad_norm) and math.isfinite(self._loss_value(loss))):
            self.opt.zero_grad(set_to_none=True)  # a NaN/inf update is skipped, never applied
            return stats, False
        self.opt.step()
        return stats, True

    def reset_reference(self) -> None:
        """ProRL (Liu et al. 2025): the reference becomes the current policy; optimizer restarts."""
        if self.lora is not None:  # the policy is base + adapters: the reference takes it merged
            with torch.no_grad():
                for name, tensor in self._named_weights():
                    self.ref.get_parameter(name).copy_(tensor)
        else:
            self.ref.load_state_dict(self.model.state_dict())
        self.opt.state.clear()

    # -- weights -------------------------------------------------------------------------
    def num_parameters(self) -> int:
        """The base model's parameters (LoRA adapters not counted: see `lora_parameters`)."""
        return self.n_params

    def lora_parameters(self) -> int:
        """The trained adapters' parameters; 0 without LoRA."""
        return self.n_lora

    def _named_weights(self) -> list[tuple[str, torch.Tensor]]:
        """The policy's parameters under the base model's names; with LoRA, the adapters merged in
        (`lora.merged_weights`): vLLM's `load_weights` and the HF files see a plain model."""
        if self.lora is None:
            return list(self.model.named_parameters())
        return merged_weights(self.model)

    def weights(self) -> FlatWeights:
        # parameters, not the state dict: tied embeddings go once (vLLM ties them itself)
        return FlatWeights.of(self._named_weights())

    def save(self, path: str) -> None:
        """HF model files plus everything needed to continue training exactly. With LoRA the
        model files are the merged weights and `adapter/` the adapters (`lora.save_merged_and_adapters`)."""
        if self.lora is not None:
            save_merged_and_adapters(self.model, path)
        else:
            self.model.save_pretrained(path)
        critic = None
        if self.value_head is not None:
            separate = self.algo.critic_mode == "separate"
            critic = {
                "head": self.value_head.state_dict(),
                "trunk": self.critic_trunk.state_dict() if separate else None,
            }
        state = {
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "updates": self.updates,
            "critic": critic,
            "ref": self.ref.state_dict() if self.ref is not None and self.algo.ref_reset_every else None,
        }
        torch.save(state, Path(path) / LEARNER_STATE)

    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """Log-prob of every token after the first under the current weights (fp32)."""
        with torch.no_grad():
            out = []
            for seq in sequences:
                ids = torch.tensor([seq], device=self.device)
                logits = self.model(input_ids=ids).logits[0, :-1].float()
                out.append(logprobs_from_logits(logits[None], ids[:, 1:])[0].tolist())
            return out


LearnerActor = ray.remote(Learner)
