"""Built-in models: character tokenizer, sizes, warm start, the on-disk cache."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from safetensors.torch import load_file

from rlscale.envs import make_env
from rlscale.envs.base import sample_outside
from rlscale.models import (
    BUILTIN_SIZES,
    build_model,
    build_tokenizer,
    builtin_params,
    builtin_spec,
    param_count,
    resolve_builtin,
    warm_start_lr,
)


def test_character_tokenizer_round_trips_every_char():
    tok = build_tokenizer()
    text = "12+34=46 <think>x</think>\nThe answer is \\boxed{-7/2}."
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert tok.decode(ids) == text
    assert tok.decode([*ids, tok.eos_token_id], skip_special_tokens=True) == text


def test_saved_builtin_reloads_with_the_same_ids_in_transformers_and_vllm(tmp_path):
    """A saved Qwen2 directory is reloaded as Qwen2Tokenizer (by AutoTokenizer and by vLLM),
    which once dropped every space and newline: code and multi-line answers were garbled."""
    from transformers import AutoTokenizer
    from vllm.tokenizers import get_tokenizer

    tok = build_tokenizer()
    build_model(BUILTIN_SIZES["tiny"], len(tok), 0).config.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    text = "def f(x):\n    return x  + 1\nprint(f(2))"
    for reloaded in (AutoTokenizer.from_pretrained(tmp_path), get_tokenizer(str(tmp_path))):
        assert reloaded.encode(text) == tok.encode(text) and len(tok.encode(text)) == len(text)
        assert reloaded.decode(tok.encode(text)) == text
        assert reloaded.eos_token_id == tok.eos_token_id and reloaded.pad_token_id == tok.pad_token_id


def test_sizes_span_two_orders_of_magnitude():
    vocab = len(build_tokenizer())
    counts = {
        name: sum(p.numel() for p in build_model(size, vocab, 0).parameters())
        for name, size in BUILTIN_SIZES.items()
        if name != "medium"
    }
    assert 0.2e6 < counts["tiny"] < 0.4e6
    assert 0.8e6 < counts["mini"] < 1.5e6
    assert 2.5e6 < counts["small"] < 5e6
    assert 8e6 < counts["mid"] < 12e6
    assert counts["mid"] / counts["tiny"] >= 30  # the CPU ladder spans >= 30x
    for name, n in counts.items():  # the count the ladder's report uses, without building
        assert param_count(BUILTIN_SIZES[name]) == n == builtin_params(f"builtin:{name}")
    assert builtin_params("builtin:nope") is None and builtin_params("/some/hf/dir") is None
    assert list(BUILTIN_SIZES) == sorted(BUILTIN_SIZES, key=lambda k: param_count(BUILTIN_SIZES[k]))
    for size in BUILTIN_SIZES.values():
        assert size.hidden // size.heads in (32, 64, 128) and size.hidden % size.heads == 0


def test_builtin_is_warm_started_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("RLSCALE_CACHE", str(tmp_path))
    env = make_env("arithmetic", digits=1, ops="+")
    sft = {"sft_steps": 60, "sft_batch": 32, "sft_lr": 3e-3}
    path = resolve_builtin("tiny", env, {"digits": 1}, sft, seed=0, log=lambda _: None)
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    again = resolve_builtin("tiny", env, {"digits": 1}, sft, seed=0, log=lambda _: None)
    assert again == path and (path / "model.safetensors").stat().st_mtime_ns == stamp
    other = resolve_builtin("tiny", env, {"digits": 1}, {**sft, "sft_steps": 1}, seed=0, log=lambda _: None)
    assert other != path
    held = frozenset({repr("1+1=")})  # a warm start that never saw the evaluation is another model
    tiny_sft = {**sft, "sft_steps": 1}
    assert resolve_builtin("tiny", env, {"digits": 1}, tiny_sft, seed=0, held_out=held, log=print) != other

    # the warm start taught the answer format: the loss is well below a uniform guess

    spec = json.loads((path / "rlscale_spec.json").read_text())
    assert spec["sft_final_loss"] < 0.5 * math.log(len(build_tokenizer()))  # well below uniform


def test_warm_start_rate_defaults_to_the_size_own_and_is_in_the_cache_key():
    # tiny keeps the rate it was tuned at (so its cached models keep their keys); wider sizes scale
    # as 1/width: mini 128 -> 1.5e-3, small 192 -> 1e-3, mid 256 -> 7.5e-4
    assert [warm_start_lr(BUILTIN_SIZES[n]) for n in ("tiny", "mini", "small", "mid")] == pytest.approx(
        [3e-3, 1.5e-3, 1e-3, 7.5e-4]
    )
    default = {"sft_steps": 10, "sft_batch": 8, "sft_lr": None}
    assert builtin_spec("tiny", "arithmetic", {}, default, 0)["sft"]["sft_lr"] == 3e-3
    assert builtin_spec("mid", "arithmetic", {}, default, 0)["sft"]["sft_lr"] == pytest.approx(7.5e-4)
    assert builtin_spec("tiny", "arithmetic", {}, default, 0) == builtin_spec(
        "tiny", "arithmetic", {}, {**default, "sft_lr": 3e-3}, 0
    )  # the same model as the explicit rate: one cache entry
    assert builtin_spec("mid", "arithmetic", {}, {**default, "sft_lr": 2e-4}, 0)["sft"]["sft_lr"] == 2e-4
    with pytest.raises(ValueError, match="unknown builtin size 'huge'"):
        builtin_spec("huge", "arithmetic", {}, default, 0)


def test_a_fixed_warm_start_seed_gives_every_run_seed_one_base_model(monkeypatch, tmp_path):
    monkeypatch.setenv("RLSCALE_CACHE", str(tmp_path))
    env = make_env("arithmetic", digits=1, ops="+")
    default = {"sft_steps": 2, "sft_batch": 4, "sft_lr": None, "sft_seed": None}
    # None follows the run's seed, with the key a config without the field had (caches survive)
    assert builtin_spec("tiny", "arithmetic", {}, default, 5)["seed"] == 5
    assert builtin_spec("tiny", "arithmetic", {}, default, 5) == builtin_spec(
        "tiny", "arithmetic", {}, {"sft_steps": 2, "sft_batch": 4, "sft_lr": None}, 5
    )
    fixed = {**default, "sft_seed": 0}
    paths = {resolve_builtin("tiny", env, {}, fixed, seed=s, log=lambda _: None) for s in (0, 1, 2)}
    assert len(paths) == 1  # three RL seeds, one base model
    assert json.loads((paths.pop() / "rlscale_spec.json").read_text())["seed"] == 0
    own = resolve_builtin("tiny", env, {}, default, seed=1, log=lambda _: None)
    shared = resolve_builtin("tiny", env, {}, fixed, seed=1, log=lambda _: None)
    weights = [load_file(path / "model.safetensors") for path in (own, shared)]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # seed 1's own init


def test_warm_start_draws_never_include_held_out_prompts():
    env = make_env("arithmetic", digits=1, ops="+")  # 100 distinct prompts
    rng = random.Random(0)
    held = frozenset(repr(env.sample(rng).prompt) for _ in range(300))  # most of them
    assert 40 < len(held) < 100
    rng = random.Random(1)
    drawn = [sample_outside(env, rng, held) for _ in range(500)]
    assert len(drawn) == 500 and not {repr(t.prompt) for t in drawn} & held
    everything = frozenset(repr(f"{a}+{b}=") for a in range(10) for b in range(10))
    assert held < everything
    with pytest.raises(RuntimeError, match="eval.held_out"):
        sample_outside(env, random.Random(1), everything)
