"""`rlscale bench ...`: performance measured against a peer in the same run, as a ratio."""

from __future__ import annotations

import os
import platform
import random
import time
from pathlib import Path

import torch


def _bench_model(name: str) -> Path:
    """A model directory to benchmark: `builtin:<size>` (random weights, cached) or a path."""
    from envs import make_env
    from rlscale.models import resolve_builtin

    if not name.startswith("builtin:"):
        return Path(name)
    env = make_env("arithmetic")
    sft = {"sft_steps": 0, "sft_batch": 1, "sft_lr": 1e-3}
    return resolve_builtin(name.removeprefix("builtin:"), env, {}, sft, seed=0)


def _prompts(tokenizer, n: int) -> list[list[int]]:
    from envs import make_env

    env, rng = make_env("arithmetic", digits=3, terms=3), random.Random(0)
    return [tokenizer.encode(env.sample(rng).prompt) for _ in range(n)]


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

    from rlscale.orchestrator import init_ray
    from rlscale.rollout import RolloutWorker

    model_dir = _bench_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompts = _prompts(tokenizer, args.prompts)
    n, max_tokens, temp = args.group_size, args.max_tokens, 1.0
    init_ray(None, 1)
    threads = str(os.cpu_count())
    worker = RolloutWorker.options(
        num_cpus=0, runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "VLLM_LOGGING_LEVEL": "ERROR"}}
    ).remote(str(model_dir), seed=0, max_model_len=max(map(len, prompts)) + max_tokens + 8, kv_cache_gib=1)

    def ours() -> int:
        groups = ray.get(
            worker.generate.remote(
                prompts,
                n=n,
                temperature=temp,
                top_p=1.0,
                max_tokens=max_tokens,
                seeds=list(range(len(prompts))),
                ignore_eos=True,
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
        "machine": f"{platform.machine()} x{os.cpu_count()} cpus, torch {torch.__version__}",
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


BENCHES = {"rollout": bench_rollout}
