"""Generation tokens/s: the vLLM rollout actor vs transformers `generate`, same settings."""

from __future__ import annotations

import os
import time

import torch

from rlscale.bench.common import _bench_model, _machine, _opt, _prompts


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
