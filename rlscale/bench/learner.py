"""The learner's training tokens/s and FLOP/s against the matmul peak measured in the same run (MFU)."""

from __future__ import annotations

import random
import statistics
import time

import torch

from rlscale import metric_names as M
from rlscale.bench.common import DEMO_CONFIG, _bench_model, _machine, _opt, _prompts, _threads


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
    from rlscale.config_io import load_config
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
