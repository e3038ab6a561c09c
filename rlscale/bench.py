"""`rlscale bench ...`: performance measured against a peer in the same run, as a ratio.

rollout    generation tokens/s: the vLLM rollout actor vs transformers `generate`
e2e        GRPO steps/s: rlscale's orchestrator vs TRL's GRPOTrainer, same model, prompts, settings
learner    training tokens/s and FLOP/s of the learner vs the matmul peak measured here (MFU)
breakdown  where a run's step time goes: rollout, verify, learn, sync, other
"""

from __future__ import annotations

import math
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rlscale import metric_names as M
from rlscale.metric_names import STEP_PARTS

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _opt(args, name: str, default):
    """An option of `args`, or this bench's default when it was not given (None)."""
    value = getattr(args, name, None)
    return default if value is None else value


def _threads() -> int:
    return int(os.environ.get("RLSCALE_THREADS", os.cpu_count() or 1))


def _machine() -> str:
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{platform.machine()} x{os.cpu_count()} cpus{gpu}, torch {torch.__version__}"


def _bench_model(name: str) -> Path:
    """A model directory to benchmark: `builtin:<size>` (random weights, cached) or a path."""
    from rlscale.envs import make_env
    from rlscale.models import resolve_builtin

    if not name.startswith("builtin:"):
        return Path(name)
    env = make_env("arithmetic")
    sft = {"sft_steps": 0, "sft_batch": 1, "sft_lr": 1e-3}
    return resolve_builtin(name.removeprefix("builtin:"), env, {}, sft, seed=0)


def _prompts(tokenizer, n: int) -> list[list[int]]:
    from rlscale.envs import make_env

    env, rng = make_env("arithmetic", digits=3, terms=3), random.Random(0)
    return [tokenizer.encode(env.sample(rng).prompt) for _ in range(n)]


# ---------------------------------------------------------------------------------- rollout


def _hf_generate(model, prompts, *, n, max_tokens, temperature, pad_id) -> int:
    """transformers `generate`, one batch of all prompts x n samples, left-padded."""
    width = max(map(len, prompts))
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts])
    attn = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=attn,
            do_sample=True,
            temperature=temperature,
            top_p=1.0,
            top_k=0,
            num_return_sequences=n,
            max_new_tokens=max_tokens,
            min_new_tokens=max_tokens,  # the same token count as the engine, which ignores EOS here
            pad_token_id=pad_id,
        )
    return int(out[:, width:].numel())


def bench_rollout(args) -> dict:
    """Generation tokens/s: the vLLM rollout actor vs transformers `generate`, same settings."""
    import ray
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlscale.cluster import init_ray
    from rlscale.rollout import RolloutActor, Sampling

    model_dir = _bench_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = _prompts(tokenizer, _opt(args, "prompts", 64))
    n, max_tokens, temp = _opt(args, "group_size", 8), _opt(args, "max_tokens", 32), 1.0
    init_ray(None, 1)
    threads = str(os.cpu_count())
    worker = RolloutActor.options(
        num_cpus=0, runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "VLLM_LOGGING_LEVEL": "ERROR"}}
    ).remote(str(model_dir), seed=0, max_model_len=max(map(len, prompts)) + max_tokens + 8, kv_cache_gib=1)

    def ours() -> int:
        groups = ray.get(
            worker.generate.remote(
                prompts,
                n=n,
                sampling=Sampling(temperature=temp, top_p=1.0, max_tokens=max_tokens, ignore_eos=True),
                seeds=list(range(len(prompts))),
            )
        )
        return sum(len(s.token_ids) for g in groups for s in g)

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    torch.set_num_threads(int(threads))

    def peer() -> int:
        return _hf_generate(
            model, prompts, n=n, max_tokens=max_tokens, temperature=temp, pad_id=tokenizer.pad_token_id
        )

    result = {
        "model": args.model,
        "params": sum(p.numel() for p in model.parameters()),
        "prompts": len(prompts),
        "group_size": n,
        "max_tokens": max_tokens,
        "machine": _machine(),
    }
    for name, fn in (("rlscale_vllm", ours), ("hf_generate", peer)):
        fn()  # warm-up: engine graphs, allocator
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            tokens = fn()
            rates.append(tokens / (time.perf_counter() - start))
        result[f"{name}_tokens"] = tokens
        result[f"{name}_tokens_per_s"] = sorted(rates)[len(rates) // 2]
    ray.kill(worker)
    result["ratio_vs_hf"] = result["rlscale_vllm_tokens_per_s"] / result["hf_generate_tokens_per_s"]
    print(
        f"rollout bench  model={args.model} ({result['params'] / 1e6:.1f}M params)  "
        f"{len(prompts)} prompts x {n} samples x {max_tokens} tokens\n"
        f"  rlscale (vLLM actor)   {result['rlscale_vllm_tokens_per_s']:>10.0f} tokens/s\n"
        f"  transformers generate  {result['hf_generate_tokens_per_s']:>10.0f} tokens/s\n"
        f"  ratio                  {result['ratio_vs_hf']:>10.2f}x"
    )
    return result


# -------------------------------------------------------------------------------- breakdown


def step_breakdown(frame, *, skip_first: int = 0) -> dict:
    """Shares of step time from a run's metrics: rollout, verify, learn, sync, other.

    `time/wall_s` is cumulative, so a step's total is its difference from the step before (the
    first step's total is its own value). Shares are time-weighted: sum of a part over the steps
    divided by the sum of the totals. `skip_first` leaves out warm-up steps.
    """
    wall = frame[M.WALL_S].astype(float)
    totals = wall.diff().fillna(wall.iloc[0])
    rows = slice(skip_first, None)
    total = float(totals.iloc[rows].sum())
    seconds = {part: float(frame[M.step_time(part)].iloc[rows].astype(float).sum()) for part in STEP_PARTS}
    seconds["other"] = total - sum(seconds.values())
    steps = frame["step"].iloc[rows]
    n = len(steps)
    busy = frame[M.LEARNER_BUSY_S].iloc[rows].astype(float) if M.LEARNER_BUSY_S in frame else None
    return {
        # the learner's own time; above "learn" only where the update overlapped sampling
        "learner_busy_s": float(busy.mean()) if busy is not None else math.nan,
        "steps": n,
        "first_step": int(steps.iloc[0]),
        "last_step": int(steps.iloc[-1]),
        "step_s": total / n,
        "seconds": {k: v / n for k, v in seconds.items()},  # mean per step
        "shares": {k: v / total if total > 0 else math.nan for k, v in seconds.items()},
    }


def _print_breakdown(result: dict, indent: str = "  ") -> None:
    print(
        f"{indent}steps {result['first_step']}-{result['last_step']} ({result['steps']}), "
        f"mean step {result['step_s']:.3f} s"
    )
    for part, share in result["shares"].items():
        print(f"{indent}  {part:<8} {result['seconds'][part]:>8.3f} s  {100 * share:>5.1f}%")
    hidden = result["learner_busy_s"] - result["seconds"]["learn"]
    if hidden > 1e-3:
        print(
            f"{indent}  (the update took {result['learner_busy_s']:.3f} s; {hidden:.3f} s of it ran "
            "while the next batch was sampled and is not counted above)"
        )


def bench_breakdown(args) -> dict:
    """`rlscale bench breakdown RUN_DIR`: per-step time shares of a finished (or running) run."""
    from rlscale.config import ConfigError
    from rlscale.telemetry import TelemetryError, load_metrics

    if not args.run_dir:
        raise ConfigError("rlscale bench breakdown: give a RUN_DIR")
    try:
        frame = load_metrics(args.run_dir)
    except FileNotFoundError as err:
        raise TelemetryError(str(err)) from None
    if frame.empty or M.WALL_S not in frame:
        raise TelemetryError(f"{args.run_dir}: metrics.jsonl holds no timed steps")
    result = {"run_dir": str(args.run_dir), **step_breakdown(frame, skip_first=_opt(args, "skip_steps", 0))}
    print(f"step breakdown  {args.run_dir}")
    _print_breakdown(result)
    return result


# ---------------------------------------------------------------------------------- learner


def matmul_peak(dtype: torch.dtype, device: torch.device, *, n: int, repeats: int = 5) -> float:
    """Best FLOP/s of torch.matmul on two n x n matrices (2 n^3 FLOPs), after one warm-up."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = 0.0
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first one warms up the kernels and the allocator
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def _learner_batch(tokenizer, prompts: int, group: int, max_tokens: int, vocab: int, seed: int = 0):
    """A GRPO batch: prompts x group responses of varied length (1..max_tokens), 0/1 rewards."""
    from rlscale.batch import Batch, Group, Sample

    rng = random.Random(seed)
    batch = Batch()
    for prompt in _prompts(tokenizer, prompts):
        lengths = [rng.randint(1, max_tokens) for _ in range(group)]
        samples = [Sample([rng.randrange(3, vocab) for _ in range(n)], [-1.0] * n, False) for n in lengths]
        batch.groups.append(Group(prompt, samples, [float(rng.random() < 0.5) for _ in range(group)]))
    return batch


def _attention_flops(batch, layers: int, attn_width: int) -> float:
    """Causal attention FLOPs, forward + backward, as the packed learner computes them.

    A query attends to the keys up to itself: QK^T and AV take 2 w FLOPs per (query, key) pair
    each forward, backward twice that, so 12 w per pair. A group's prompt is computed once.
    """
    pairs = 0
    for group in batch.groups:
        p = len(group.prompt)
        pairs += p * (p + 1) // 2
        for sample in group.samples:
            r = len(sample.token_ids)
            pairs += r * p + r * (r + 1) // 2
    return float(12 * layers * attn_width * pairs)


def bench_learner(args) -> dict:
    """Learner training tokens/s and FLOP/s against the matmul peak measured in the same run."""
    from transformers import AutoTokenizer

    from rlscale import accounting
    from rlscale.config import load_config
    from rlscale.learner import Learner

    cfg = load_config(_opt(args, "config", DEMO_CONFIG), [f"model={args.model}", *(args.set or [])])
    prompts, group = _opt(args, "prompts", 64), _opt(args, "group_size", 8)
    max_tokens, repeats, warmup = _opt(args, "max_tokens", 32), args.repeats, _opt(args, "warmup", 1)
    torch.set_num_threads(_threads())
    model_dir = _bench_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    learner = Learner(
        str(model_dir),
        algo=cfg.algo,
        learner=cfg.learner,
        seed=cfg.trainer.seed,
        max_tokens=max_tokens,
    )
    mcfg = learner.model.config
    batch = _learner_batch(tokenizer, prompts, group, max_tokens, mcfg.vocab_size)
    for _ in range(warmup):
        learner.update(batch)
    times, tokens = [], 0.0
    for _ in range(repeats):
        if learner.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        stats = learner.update(batch)  # ends with .item() calls: the device has finished
        times.append(time.perf_counter() - start)
        tokens += stats[M.TOKENS_TRAINED]
    elapsed = sum(times)
    # the learner's passes as the run counts them in `compute/flops` (rlscale.accounting)
    algo, n = cfg.algo, learner.n_params
    flops_6n = sum(accounting.learner_passes(algo).values()) * n * tokens
    head_dim = getattr(mcfg, "head_dim", None) or mcfg.hidden_size // mcfg.num_attention_heads
    attn = _attention_flops(batch, mcfg.num_hidden_layers, mcfg.num_attention_heads * head_dim)
    flops_attn = flops_6n + attn * algo.ppo_epochs * repeats
    dtype = next(learner.model.parameters()).dtype
    peak_n = _opt(args, "peak_size", 8192 if learner.device.type == "cuda" else 2048)
    peak = matmul_peak(dtype, learner.device, n=peak_n)
    achieved = flops_6n / elapsed
    result = {
        "model": args.model,
        "params": n,
        "device": str(learner.device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "algo": algo.name,
        "sequences": len(batch),
        "prompts": prompts,
        "group_size": group,
        "max_tokens": max_tokens,
        "tokens_per_update": tokens / repeats,
        "warmup_updates": warmup,
        "timed_updates": repeats,
        "update_s": statistics.median(times),
        "tokens_per_s": tokens / elapsed,
        "flops_counting": "rlscale.accounting.learner_passes: 6N/token forward+backward, 2N no-grad",
        "model_flops_per_update": flops_6n / repeats,
        "achieved_flops_per_s": achieved,
        "achieved_flops_per_s_with_attention": flops_attn / elapsed,
        "peak_flops_per_s": peak,
        "peak_matmul_size": peak_n,
        "mfu": achieved / peak,
        "mfu_with_attention": flops_attn / elapsed / peak,
        "machine": _machine(),
    }
    print(
        f"learner bench  model={args.model} ({n / 1e6:.2f}M params)  {result['device']} {result['dtype']}  "
        f"{len(batch)} sequences ({prompts} prompts x {group}), "
        f"{result['tokens_per_update']:.0f} tokens/update\n"
        f"  update                 {result['update_s']:>10.3f} s"
        f" (median of {repeats}, after {warmup} warm-up)\n"
        f"  training throughput    {result['tokens_per_s']:>10.0f} tokens/s\n"
        f"  achieved (6N)          {achieved / 1e9:>10.2f} GFLOP/s"
        f"   (with attention {result['achieved_flops_per_s_with_attention'] / 1e9:.2f})\n"
        f"  matmul peak            {peak / 1e9:>10.2f} GFLOP/s ({peak_n}x{peak_n} {result['dtype']})\n"
        f"  MFU                    {result['mfu']:>10.3f}"
        f"   (with attention {result['mfu_with_attention']:.3f})"
    )
    return result


# -------------------------------------------------------------------------------------- e2e

# rlscale loss aggregation -> TRL GRPOConfig.loss_type (see rlscale.losses.aggregate)
_TRL_LOSS_TYPE = {"seq-mean-token-mean": "grpo", "token-mean": "dapo", "seq-mean-token-sum-norm": "dr_grpo"}
# rlscale advantage estimator -> TRL GRPOConfig.scale_rewards
_TRL_SCALE_REWARDS = {"grpo": "group", "dr_grpo": "none"}


def _e2e_config(args, output_dir: str):
    """The run config both sides follow: `--config` (demo by default) plus the bench's overrides."""
    from rlscale.config import load_config

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
_MATH_CASES = {
    "integer": lambda n: (f"so the answer is {n}.", str(n + n % 2), n % 2 == 0),
    "fraction": lambda n: (f"\\boxed{{\\frac{{{n}}}{{4}}}}", str(n / 4), True),
    "latex": lambda n: (f"\\boxed{{(x+{n})^2}}", f"x^2+{2 * n}x+{n * n}", True),
}


def bench_verify(args) -> dict:
    """Verifications per second on this machine: math (by kind) and sandboxed code."""
    from rlscale.envs.humaneval import problems
    from rlscale.verifiers import code, math

    result = {"machine": _machine()}
    seconds = max(0.5, float(_opt(args, "seconds", 3.0)))
    for kind, case in _MATH_CASES.items():
        math.verify(*case(1)[:2])  # warm-up: worker processes, parsers
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            response, gold, expected = case(done + 2)
            verdict = math.verify(response, gold)
            assert verdict.correct == expected, (response, gold, verdict)
            done += 1
        result[f"math_{kind}_per_s"] = done / (time.perf_counter() - start)
    items = [
        (p["prompt"] + p["canonical_solution"], p["test"] + f"\ncheck({p['entry_point']})")
        for p in list(problems().values())[: int(_opt(args, "programs", 32))]
    ]
    start = time.perf_counter()
    verdicts = code.verify_many(items, max_workers=_threads())
    result["code_per_s"] = len(items) / (time.perf_counter() - start)
    result["code_passed"] = sum(v.correct for v in verdicts)
    result["code_programs"] = len(items)
    print(f"verify bench  ({result['machine']})")
    for kind in _MATH_CASES:
        print(f"  math, {kind:<9} {result[f'math_{kind}_per_s']:>10.0f} verifications/s")
    print(
        f"  code (sandbox) {result['code_per_s']:>9.1f} programs/s  "
        f"({result['code_passed']}/{len(items)} HumanEval canonical solutions passed)"
    )
    return result


BENCHES = {
    "rollout": bench_rollout,
    "e2e": bench_e2e,
    "learner": bench_learner,
    "breakdown": bench_breakdown,
    "verify": bench_verify,
}
