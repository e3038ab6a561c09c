"""GRPO steps/s end to end: rlscale (Ray + vLLM + learner) vs TRL's GRPOTrainer on the same work."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rlscale import metric_names as M
from rlscale.bench.breakdown import _print_breakdown, step_breakdown
from rlscale.bench.common import DEMO_CONFIG, _machine, _opt, _threads

# rlscale loss aggregation -> TRL GRPOConfig.loss_type (see rlscale.aggregation.aggregate)
_TRL_LOSS_TYPE = {"seq-mean-token-mean": "grpo", "token-mean": "dapo", "seq-mean-token-sum-norm": "dr_grpo"}
# rlscale advantage estimator -> TRL GRPOConfig.scale_rewards
_TRL_SCALE_REWARDS = {"grpo": "group", "dr_grpo": "none"}


def _e2e_config(args, output_dir: str):
    """The run config both sides follow: `--config` (demo by default) plus the bench's overrides."""
    from rlscale.config_io import load_config

    overrides = [f"model={args.model}", f"trainer.steps={_opt(args, 'steps', 200)}"]
    options = {"prompts_per_step": "prompts", "group_size": "group_size", "max_tokens": "max_tokens"}
    for key, name in options.items():
        if getattr(args, name, None) is not None:
            overrides.append(f"rollout.{key}={getattr(args, name)}")
    # no external sinks (TRL reports to none); the run lives in a temporary directory
    overrides += [*(args.set or []), "telemetry.sinks=[]", f"output_dir={output_dir}", "name=bench-e2e"]
    return load_config(_opt(args, "config", DEMO_CONFIG), overrides)


def trl_settings(cfg) -> dict:
    """GRPOConfig keyword arguments equal to `cfg`; ConfigError for what TRL cannot mirror."""
    from rlscale.config import ConfigError

    algo, r, lr = cfg.algo, cfg.rollout, cfg.learner
    unmatched = []
    if algo.policy_loss != "ppo_clip":
        unmatched.append(f"algo.policy_loss={algo.policy_loss} (compared: ppo_clip)")
    if algo.loss_agg not in _TRL_LOSS_TYPE:
        unmatched.append(f"algo.loss_agg={algo.loss_agg} (compared: {sorted(_TRL_LOSS_TYPE)})")
    if algo.advantage not in _TRL_SCALE_REWARDS or (algo.advantage == "grpo") != (algo.norm_adv == "group"):
        unmatched.append(f"algo.advantage={algo.advantage}/norm_adv={algo.norm_adv}")
    if algo.kl_coef and (algo.kl_in_reward or algo.kl_estimator != "k3"):
        unmatched.append("KL other than k3 in the loss")
    for key, neutral in (
        ("ppo_epochs", 1),
        ("mini_batches", 1),
        ("dynamic_sampling", False),
        ("overlong_buffer", 0),
        ("critic", False),
        ("entropy_coef", 0.0),
        ("tis_cap", None),
    ):
        if getattr(algo, key) != neutral:
            unmatched.append(f"algo.{key}={getattr(algo, key)} (compared: {neutral})")
    if r.temperature != 1.0:  # TRL divides the training logits by it too; our learner does not
        unmatched.append(f"rollout.temperature={r.temperature} (compared: 1.0)")
    if unmatched:
        raise ConfigError("bench e2e: TRL's GRPOTrainer cannot mirror " + "; ".join(unmatched))
    batch = r.prompts_per_step * r.group_size
    from rlscale.models import resolve_dtype

    cuda = torch.cuda.is_available()
    return dict(
        num_generations=r.group_size,
        per_device_train_batch_size=batch,  # one optimizer step per generation batch, like ours
        gradient_accumulation_steps=1,
        generation_batch_size=batch,
        max_completion_length=r.max_tokens,
        temperature=r.temperature,
        top_p=r.top_p,
        top_k=0,
        learning_rate=lr.lr,
        weight_decay=lr.weight_decay,
        adam_beta1=lr.betas[0],
        adam_beta2=lr.betas[1],
        max_grad_norm=lr.grad_clip,
        warmup_steps=lr.warmup_steps,
        beta=algo.kl_coef,
        epsilon=algo.eps_low,
        epsilon_high=algo.eps_high,
        loss_type=_TRL_LOSS_TYPE[algo.loss_agg],
        scale_rewards=_TRL_SCALE_REWARDS[algo.advantage],
        num_iterations=1,
        max_steps=cfg.trainer.steps,
        seed=cfg.trainer.seed,
        shuffle_dataset=False,  # prompts in the order our orchestrator draws them
        gradient_checkpointing=False,  # ours keeps activations; TRL's default would recompute them
        use_cpu=not cuda,
        bf16=resolve_dtype(lr.dtype) == torch.bfloat16,  # the learner's dtype: fp32 on CPU, bf16 on GPUs
        use_vllm=False,
    )


def _step_tasks(cfg, env) -> list:
    """The tasks our orchestrator draws, step after step (same env, seed and per-step RNG)."""
    from rlscale.collect import derived_seed

    tasks = []
    for step in range(1, cfg.trainer.steps + 1):
        rng = random.Random(derived_seed(cfg.trainer.seed, "tasks", step))
        tasks += [env.sample(rng) for _ in range(cfg.rollout.prompts_per_step)]
    return tasks


def build_trl_trainer(cfg, model_dir: Path, output_dir: str, callbacks=()):
    """TRL's GRPOTrainer on our model, prompts (plain text), verifier, optimizer and schedule."""
    import warnings

    # TRL warns at import that it was tested with older vLLM; its vLLM path is not used here
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from rlscale.envs import make_env

    env = make_env(cfg.env.name, **cfg.env.kwargs)
    tasks = _step_tasks(cfg, env)
    dataset = Dataset.from_dict({"prompt": [t.prompt for t in tasks], "task_index": list(range(len(tasks)))})

    def env_reward(prompts, completions, task_index, **_):
        """Our environment's verifier; a verifier crash scores 0, as in the orchestrator."""
        scores = []
        for i, completion in zip(task_index, completions):
            try:
                scores.append(float(env.score(tasks[i], completion).score))
            except Exception:
                scores.append(0.0)
        return scores

    settings = trl_settings(cfg)
    args = GRPOConfig(
        output_dir=output_dir,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        **settings,
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if settings["bf16"] else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # ours: AdamW with a linear warm-up reaching lr at update `warmup` (HF's starts one step later, at 0)
    lr = cfg.learner
    opt = torch.optim.AdamW(model.parameters(), lr=lr.lr, betas=tuple(lr.betas), weight_decay=lr.weight_decay)
    warmup = lr.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=env_reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        optimizers=(opt, sched),
    )


def _steps_per_s(step_ends: list[float]) -> float:
    """Steps/s from the end of the first step to the end of the last: startup and step 1 left out."""
    return (len(step_ends) - 1) / (step_ends[-1] - step_ends[0])


def _step_seconds(step_ends: list[float]) -> list[float]:
    """Durations of steps 2..N (each from the end of the step before)."""
    return [b - a for a, b in zip(step_ends, step_ends[1:])]


def _window(steps: int) -> int:
    return max(1, steps // 5)


def run_trl(cfg, model_dir: Path) -> dict:
    """TRL's GRPOTrainer for cfg.trainer.steps steps: step end times and per-step mean reward."""
    from tqdm import tqdm
    from transformers import PrinterCallback, TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends, self.rewards = [], {}
            self.bar = tqdm(total=cfg.trainer.steps, desc="TRL", unit="step", leave=False)

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())
            self.bar.update()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                self.rewards[state.global_step] = logs["reward"]

    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="rlscale-bench-trl-") as out:
        trainer = build_trl_trainer(cfg, model_dir, out, callbacks=[clock])
        trainer.remove_callback(PrinterCallback)  # a dict per step on stdout; the bar says enough
        trainer.train()
    clock.bar.close()
    rewards = [clock.rewards[s] for s in sorted(clock.rewards)]
    return {"step_ends": clock.ends, "rewards": rewards}


def run_ours(cfg) -> dict:
    """rlscale's orchestrator (Ray actors, vLLM engine, learner) for cfg.trainer.steps steps."""
    from tqdm import tqdm

    from rlscale.orchestrator import Orchestrator
    from rlscale.telemetry import load_metrics

    orch = Orchestrator(cfg)
    ends, rewards = [], []
    try:
        for step in tqdm(range(1, cfg.trainer.steps + 1), desc="rlscale", unit="step", leave=False):
            rewards.append(orch.step(step)[M.REWARD])
            ends.append(time.perf_counter())
        orch.metrics.close()
        orch.sinks.close()
    finally:
        orch.shutdown()
    breakdown = step_breakdown(load_metrics(cfg.run_dir), skip_first=1 if len(ends) > 1 else 0)
    return {
        "step_ends": ends,
        "rewards": rewards,
        "model_dir": orch.model_dir,
        "params": orch.n_params,
        "breakdown": breakdown,
    }


def bench_e2e(args) -> dict:
    """GRPO steps/s: rlscale (Ray + vLLM + learner) vs TRL's GRPOTrainer on the same work."""
    from rlscale.config import ConfigError

    with tempfile.TemporaryDirectory(prefix="rlscale-bench-e2e-") as tmp:
        cfg = _e2e_config(args, tmp)
        settings = trl_settings(cfg)  # refuse unmatched settings before any work
        if cfg.trainer.steps < 2:
            raise ConfigError("bench e2e: --steps must be at least 2 (steps/s is timed after step 1)")
        torch.set_num_threads(_threads())
        ours = run_ours(cfg)
        trl = run_trl(cfg, ours["model_dir"])
    k, r = _window(cfg.trainer.steps), cfg.rollout
    result = {
        "ours_steps_per_s": _steps_per_s(ours["step_ends"]),
        "trl_steps_per_s": _steps_per_s(trl["step_ends"]),
        "ours_reward_first": statistics.fmean(ours["rewards"][:k]),
        "ours_reward_last": statistics.fmean(ours["rewards"][-k:]),
        "trl_reward_first": statistics.fmean(trl["rewards"][:k]),
        "trl_reward_last": statistics.fmean(trl["rewards"][-k:]),
        "reward_window_steps": k,
        # medians resist load spikes on a shared machine; the means above are the headline
        "ours_step_s_median": statistics.median(_step_seconds(ours["step_ends"])),
        "trl_step_s_median": statistics.median(_step_seconds(trl["step_ends"])),
        "timing": "from the end of step 1 to the end of the last step (startup and step 1 excluded)",
        "model": cfg.model,
        "model_dir": str(ours["model_dir"]),
        "params": ours["params"],
        "env": cfg.env.name,
        "env_kwargs": cfg.env.kwargs,
        "algo": cfg.algo.name,
        "loss_agg": cfg.algo.loss_agg,
        "off_policy_steps": cfg.trainer.off_policy_steps,
        "pack_tokens": cfg.learner.pack_tokens,
        "steps": cfg.trainer.steps,
        "seed": cfg.trainer.seed,
        "prompts_per_step": r.prompts_per_step,
        "batch_sequences": r.prompts_per_step * r.group_size,
        "threads": torch.get_num_threads(),
        "trl_settings": settings,
        "ours_rewards": ours["rewards"],
        "trl_rewards": trl["rewards"],
        "ours_step_s": _step_seconds(ours["step_ends"]),
        "trl_step_s": _step_seconds(trl["step_ends"]),
        "ours_breakdown": ours["breakdown"],
        "machine": _machine(),
    }
    result["ratio_vs_trl"] = result["ours_steps_per_s"] / result["trl_steps_per_s"]
    result["ratio_vs_trl_median"] = result["trl_step_s_median"] / result["ours_step_s_median"]
    print(
        f"e2e bench  model={cfg.model} ({ours['params'] / 1e6:.2f}M params)  env={cfg.env.name}  "
        f"{cfg.algo.name} ({settings['loss_type']} loss, beta={settings['beta']})\n"
        f"  {cfg.trainer.steps} steps x {r.prompts_per_step} prompts x {r.group_size} samples, "
        f"max {r.max_tokens} tokens; rlscale "
        f"{'one-step off-policy' if cfg.trainer.off_policy_steps else 'synchronous (on-policy)'}\n"
        f"  {'':<30} {'steps/s':>9} {f'reward first {k}':>16} {f'last {k}':>8}\n"
        f"  {'rlscale (Ray + vLLM + learner)':<30} {result['ours_steps_per_s']:>9.3f} "
        f"{result['ours_reward_first']:>16.3f} {result['ours_reward_last']:>8.3f}\n"
        f"  {'TRL GRPOTrainer (HF generate)':<30} {result['trl_steps_per_s']:>9.3f} "
        f"{result['trl_reward_first']:>16.3f} {result['trl_reward_last']:>8.3f}\n"
        f"  ratio {result['ratio_vs_trl']:.2f}x  (timed from the end of step 1 to the end of step "
        f"{cfg.trainer.steps}; median step {result['ours_step_s_median']:.3f} s vs "
        f"{result['trl_step_s_median']:.3f} s = {result['ratio_vs_trl_median']:.2f}x)\n"
        "  rlscale step breakdown:"
    )
    _print_breakdown(ours["breakdown"], indent="    ")
    return result


# n -> (response, gold, expected verdict); every case distinct, so no verdict cache helps
