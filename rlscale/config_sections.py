"""The sections of the run config (`rlscale.config.RunConfig`): env, algo, rollout, learner
(and its LoRA), trainer, eval, scaling, telemetry, verify, prompt, builtin, ray. Each is a
pydantic model with unknown keys forbidden; every field has a default and a description
(`rlscale config show` prints them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rlscale.metric_names import X_AXES
from rlscale.presets import AdvantageName, AdvantageScaling, LossAggregation, PolicyLossName

XAxis = Literal[tuple(X_AXES)]  # the names of rlscale.metric_names.X_AXES


class StrictModel(BaseModel):
    """Unknown keys refused; assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EnvConfig(StrictModel):
    name: str = Field(
        "arithmetic",
        description="environment registered under this name (`rlscale envs`); `mixture` combines several",
    )  # several with weights: name "mixture", kwargs {components: [...]}
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the environment's constructor, checked against its signature",
    )
    # R1-style <think>..</think><answer>..</answer> format reward added to the accuracy reward;
    # the format score is logged as `reward/format` whatever its weight
    format_weight: float = Field(
        0.0,
        ge=0,
        description="weight of the R1 <think>/<answer> format reward added to the accuracy reward",
    )


class AlgoConfig(StrictModel):
    """`name` picks a preset (rlscale.presets); any other field set here overrides it.

    Names are checked against the registries (unknown ones are refused with the valid list), and
    a value set where it does nothing (a critic option without a critic, a Clip-Cov option with
    another loss, ...) is refused rather than silently ignored.
    """

    name: str = Field(
        "grpo", description="algorithm preset (`rlscale presets`); the algo keys below override it"
    )
    advantage: AdvantageName | None = Field(
        None,
        description="advantage estimator (grpo, rloo, ..., gae: with a critic); None: the preset's",
    )
    policy_loss: PolicyLossName | None = Field(
        None, description="policy loss (ppo_clip, gspo, cispo, clip_cov, kl_cov); None: the preset's"
    )
    loss_agg: LossAggregation | None = Field(
        None,
        description="how token losses are averaged (token-mean, ...); None: the preset's",
    )
    eps_low: float | None = Field(
        None, ge=0, description="lower clip offset: ratio >= 1 - eps_low; None: the preset's"
    )
    eps_high: float | None = Field(
        None,
        ge=0,
        description="upper clip offset: ratio <= 1 + eps_high (DAPO clip-higher); None: the preset's",
    )
    kl_coef: float | None = Field(
        None, ge=0, description="weight of KL(pi || pi_ref); 0: no reference model; None: the preset's"
    )
    kl_estimator: Literal["k1", "k2", "k3"] | None = Field(
        None, description="KL estimator k1, k2 or k3 (Schulman); None: the preset's"
    )
    kl_in_reward: bool | None = Field(
        None, description="true: -kl_coef*KL added to the reward; false: +kl_coef*KL in the loss"
    )
    entropy_coef: float | None = Field(
        None, description="weight of the entropy bonus (loss -= entropy_coef * H); None: the preset's"
    )
    dynamic_sampling: bool | None = Field(
        None, description="drop groups whose rewards are all equal and refill (DAPO); None: the preset's"
    )
    overlong_buffer: int | None = Field(
        None, ge=0, description="DAPO overlong penalty window in tokens; 0: off; None: the preset's"
    )
    critic: bool | None = Field(
        None, description="train a value model (needed by advantage gae); None: the preset's"
    )
    gamma: float | None = Field(None, ge=0, le=1, description="discount factor of GAE (with a critic)")
    lam: float | None = Field(None, ge=0, le=1, description="GAE lambda (with a critic)")
    value_clip: float | None = Field(None, ge=0, description="PPO value-loss clip (with a critic)")
    norm_adv: AdvantageScaling | None = Field(
        None, description="advantage scaling: group, batch or none; chosen freely only for gae"
    )
    ppo_epochs: int | None = Field(
        None, ge=1, description="passes over each rollout batch; None: the preset's"
    )
    mini_batches: int | None = Field(
        None,
        ge=1,
        description="optimiser steps per pass (the batch split this many ways); None: the preset's",
    )
    # not part of the presets: off or neutral unless set
    critic_mode: Literal["separate", "head"] = Field(
        "separate", description="separate: a critic model; head: a value head on the policy"
    )  # a critic model, or a head on the policy
    vf_coef: float = Field(0.5, ge=0, description="weight of the value loss (with a critic)")
    tis_cap: float | None = Field(
        None, gt=0, description="truncated importance sampling cap for sampler/learner mismatch; None: off"
    )  # truncated IS for sampler/learner mismatch
    ref_reset_every: int = Field(
        0, ge=0, description="ProRL: reference <- policy every N updates; 0: never"
    )  # ProRL: reference <- policy every N updates
    dual_clip: float | None = Field(
        None, gt=1, description="dual-clip PPO bound c > 1 (Ye et al. 2020; ppo_clip only); None: off"
    )  # ppo_clip: dual-clip PPO (Ye et al. 2020)
    clip_cov_ratio: float = Field(
        2e-4, gt=0, le=1, description="clip_cov: share of tokens whose gradient is detached"
    )  # clip_cov: share of tokens detached
    clip_cov_lb: float = Field(
        1.0, description="clip_cov: lower end of the covariance window of the detached tokens"
    )  # clip_cov: covariance window (lb, ub) of the detached tokens
    clip_cov_ub: float = Field(
        5.0, description="clip_cov: upper end of the covariance window of the detached tokens"
    )
    kl_cov_ratio: float = Field(
        2e-3, gt=0, le=1, description="kl_cov: share of tokens penalised"
    )  # kl_cov: share of tokens penalised
    kl_cov_coef: float = Field(
        1.0, ge=0, description="kl_cov: weight of |log pi - log pi_old| on those tokens"
    )  # kl_cov: weight of |log pi - log pi_old|


class RolloutConfig(StrictModel):
    workers: int = Field(1, ge=1, description="rollout actors, each hosting one vLLM engine")
    group_size: int = Field(8, ge=1, description="responses sampled per prompt (G)")
    prompts_per_step: int = Field(32, ge=1, description="prompts per training step")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling threshold")
    max_tokens: int = Field(16, ge=1, description="tokens per response at most")
    kv_cache_gib: float = Field(0.5, gt=0, description="KV cache of each vLLM engine, GiB")
    max_refill_rounds: int = Field(
        2, ge=0, description="dynamic sampling: extra generation rounds per step at most"
    )  # dynamic sampling: extra generation rounds per step
    max_turns: int = Field(
        8, ge=1, description="multi-turn environments: actions per episode at most"
    )  # multi-turn environments: actions per episode at most
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs each vLLM engine splits its model over (tensor parallel); GPUs only"
    )
    colocate: bool = Field(
        False,
        description="engines and learner ranks share GPUs, one of each per GPU; vLLM sleeps during "
        "each update (CUDA only; on-policy, tensor_parallel_size 1, workers = learner.world_size)",
    )


class LoraConfig(StrictModel):
    """LoRA adapters (Hu et al. 2021) trained with peft; the base weights stay frozen."""

    rank: int = Field(8, ge=1, description="adapter rank r")
    alpha: float = Field(16.0, gt=0, description="scale: the update is alpha / rank * B A")
    target_modules: str | list[str] = Field(
        "all-linear", description="peft module names; all-linear: every linear layer but the head"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="adapter dropout")


class LearnerConfig(StrictModel):
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up, in updates")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clip")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="learner weights: auto (bf16 on GPU, fp32 on CPU), float32 or bfloat16"
    )
    # rows of this many tokens, a group's prompt computed once per row; 0: one padded row per sequence
    pack_tokens: int = Field(
        64,
        ge=0,
        description="rows packed to this many tokens, a group's prompt once; 0: a padded row per sequence",
    )
    lora: LoraConfig | None = Field(
        None, description="LoRA adapters (rank, alpha, target_modules); null: full fine-tuning"
    )
    world_size: int = Field(
        1,
        ge=1,
        description="learner processes (Ray actors, a GPU each where there are GPUs) sharding the "
        "models with FSDP2 and splitting each batch by groups; 1: one plain learner",
    )

    @model_validator(mode="after")
    def _check_world_size(self) -> LearnerConfig:
        if self.world_size > 1 and self.lora is not None:
            raise ValueError("learner.world_size: a sharded learner (world_size > 1) does not take LoRA yet")
        return self


class TrainerConfig(StrictModel):
    steps: int = Field(100, ge=1, description="training steps (one step: sample, verify, update, sync)")
    seed: int = Field(0, description="seed of tasks, sampling and initialisation")
    checkpoint_every: int = Field(
        100, ge=1, description="steps between checkpoints (the last step is always saved)"
    )
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept on disk (the newest)")
    max_consecutive_skips: int = Field(
        5, ge=1, description="NaN/inf updates in a row before the run stops"
    )  # NaN/inf updates in a row before the run stops
    max_worker_restarts: int = Field(
        3, ge=0, description="restarts per step of rollout actors that died"
    )  # per step, for rollout actors that died
    # k: the rollout side runs up to k updates ahead of the learner (PipelineRL-style; no batch is
    # trained more than k updates stale; the PPO ratio is taken against the sampler's log-probs)
    off_policy_steps: int = Field(
        0,
        ge=0,
        le=8,
        description="k: sample up to k updates ahead of the learner (k stale at most); 0: on-policy",
    )


class EvalConfig(StrictModel):
    """Evaluation on a fixed task set drawn with its own seed (rlscale.evaluation).

    Before step s's update when (s - 1) % every == 0 (step 1: the base model, at zero training
    compute), more often early when early_every/early_until are set, and after the last update.
    Logged on that step's row: eval/pass@k, eval/mean@n, eval/train_flops (the training compute
    the evaluated weights had: the x of a fit) and compute/eval_flops (never on the training axis).
    """

    every: int = Field(
        0, ge=0, description="steps between evaluations; 0: off"
    )  # steps between evaluations; 0 = off
    tasks: int = Field(
        32, ge=1, description="fixed evaluation tasks (drawn with their own seed)"
    )  # 256 x 8 samples: mean@8 has a standard error of about 0.01
    samples: int = Field(
        8, ge=1, description="samples per task: pass@k for k up to this"
    )  # n per task: pass@k for k up to n
    temperature: float = Field(1.0, gt=0, description="sampling temperature of evaluation")
    early_every: int = Field(
        0, ge=0, description="denser early evaluation: every this many steps ..."
    )  # denser early: every this many steps ...
    early_until: int = Field(0, ge=0, description="... up to this step")  # ... up to this step
    final: bool = Field(
        True, description="also evaluate after the last update"
    )  # also evaluate after the last update
    # training never draws an evaluation task (for environments with far more tasks than a run sees)
    held_out: bool = Field(False, description="training never draws an evaluation task")
    # not trainer.seed: seeds of one config are evaluated on the same tasks, so their spread (the
    # margin compare_recipes decides by) is training noise, not the luck of each seed's task draw
    seed: int = Field(0, description="seed of the evaluation task set, the same for every trainer.seed")

    def due(self, step: int) -> bool:
        """Whether to evaluate before step `step`'s update."""
        if not self.every:
            return False
        early = self.early_every and step <= self.early_until and (step - 1) % self.early_every == 0
        return bool(early) or (step - 1) % self.every == 0


class ScalingConfig(StrictModel):
    """The run refits its own curves every `refit_every` steps (rlscale.live_refit)."""

    refit_every: int = Field(
        0, ge=0, description="steps between live refits of the run's own curves; 0: off"
    )  # 0 = off
    x: XAxis = Field(
        "flops", description="compute axis of the refit: flops, hours, steps, tokens, samples or wall"
    )
    metric: str | None = Field(
        None,
        description="metrics column the refit fits; None: the eval mean if logged, else reward/mean",
    )
    early_stop_min_gain: float | None = Field(
        None,
        ge=0,
        description="stop when the asymptote is identified and the gain from doubling the compute so far "
        "is below this (the top of its interval); None: never",
    )


class TelemetryConfig(StrictModel):
    sinks: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list,
        description="extra metric sinks besides metrics.jsonl: tensorboard, mlflow, wandb",
    )


class VerifyConfig(StrictModel):
    # per response, from when its check starts (not from when it was queued); past it: score 0
    timeout_s: float = Field(
        30.0, gt=0, description="seconds per response from when its check starts; past it: score 0"
    )
    workers: int = Field(4, ge=1, description="verifier worker processes")
    # code environments refuse to start without the bubblewrap sandbox unless this is true
    allow_unsandboxed: bool = Field(
        False, description="let code environments run without the bubblewrap sandbox"
    )


class PromptConfig(StrictModel):
    """How a task becomes the tokens the model sees (rlscale.prompts)."""

    # auto: the tokenizer's chat template when it has one, else raw text; chat: the template
    # (an error without one); raw: the task's text as it is; r1_zero: DeepSeek-R1-Zero's
    # base-model template with <think>/<answer>
    template: Literal["auto", "chat", "raw", "r1_zero"] = Field(
        "auto",
        description="auto (chat template if the tokenizer has one, else raw), chat, raw or r1_zero",
    )
    system: str | None = Field(
        None, description="system message (chat) or preamble (raw, r1_zero); None: none"
    )  # a system message (chat) or preamble (raw, r1_zero)


class BuiltinModelConfig(StrictModel):
    """How `builtin:<size>` models are warm-started (supervised pass on the env's tasks)."""

    sft_steps: int = Field(
        150,
        ge=0,
        description="supervised warm-start steps of builtin:<size> models on the env's tasks (cached)",
    )
    sft_batch: int = Field(64, ge=1, description="warm-start batch size")
    sft_lr: float | None = Field(
        None,
        gt=0,
        description="warm-start learning rate; None: the size's own (rlscale.models.warm_start_lr, 1/width)",
    )
    sft_seed: int | None = Field(
        None,
        ge=0,
        description="seed of the warm start (initial weights, supervised batches); None: the run's "
        "trainer.seed. A fixed seed gives every RL seed the same base model, as one pretrained "
        "checkpoint does",
    )


class RayConfig(StrictModel):
    address: str | None = Field(
        None, description="None: start Ray on this machine; auto or ray://host:port: join that cluster"
    )  # None: start Ray on this machine; "auto" or "ray://host:port"
    worker_cpus: float = Field(1.0, ge=0, description="Ray CPUs per rollout actor")
    learner_cpus: float = Field(1.0, ge=0, description="Ray CPUs of the learner actor")
