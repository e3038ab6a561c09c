"""Built-in tiny models (the wind tunnel), model resolution and the dtype a model runs in.

`builtin:<size>` is a Qwen2-architecture transformers model with a character tokenizer,
warm-started by a short supervised pass on the environment's own tasks, so that RL starts
from a non-zero success rate. Built once per spec and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import string
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tqdm import tqdm
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

from rlscale.envs.base import sample_outside

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
CHARS = string.digits + string.ascii_letters + string.punctuation + " \n"
MAX_POSITIONS = 512


@dataclass(frozen=True)
class ModelSize:
    hidden: int
    layers: int
    heads: int  # head_dim = hidden / heads must be a size vLLM's CPU attention supports
    intermediate: int


# In size order. tiny, mini, small and mid train on CPU and span 34x in parameters (the
# scaling ladder, experiments/ladder.yaml); "mid" sits between small and medium.
BUILTIN_SIZES = {
    "tiny": ModelSize(hidden=64, layers=4, heads=2, intermediate=256),  # ~0.28M params
    "mini": ModelSize(hidden=128, layers=4, heads=2, intermediate=512),  # ~1.1M
    "small": ModelSize(hidden=192, layers=6, heads=3, intermediate=768),  # ~3.6M
    "mid": ModelSize(hidden=256, layers=9, heads=4, intermediate=1024),  # ~9.5M
    "medium": ModelSize(hidden=512, layers=8, heads=8, intermediate=2048),  # ~34M
}


# Adam's update size does not shrink with width, so one warm-start rate for every size is too high
# for the wider ones; muP's rule for Adam on hidden weights scales it as 1/width, from the rate
# the tiny model was tuned at (the loss curves behind this are in the commit that added it).
TINY_WARM_START_LR = 3e-3


def warm_start_lr(size: ModelSize) -> float:
    """The default warm-start learning rate of a built-in size: tiny's, scaled as 1/width."""
    return TINY_WARM_START_LR * (BUILTIN_SIZES["tiny"].hidden / size.hidden)


def param_count(size: ModelSize, vocab_size: int | None = None) -> int:
    """Parameters of `build_model(size, vocab_size)` without building it: per layer the
    attention (q, k, v with biases, o without), the SwiGLU MLP and two RMSNorms; untied input
    and output embeddings; the final norm. Default vocabulary: the character tokenizer's."""
    vocab = len(CHARS) + 3 if vocab_size is None else vocab_size  # PAD, EOS, UNK + one per char
    h, i = size.hidden, size.intermediate
    kv = h // size.heads * size.heads  # num_key_value_heads == heads
    layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * i + 2 * h
    return size.layers * layer + 2 * vocab * h + h


def builtin_params(model: str) -> int | None:
    """Parameter count of a `builtin:<size>` model string; None for anything else."""
    name = model.removeprefix("builtin:") if isinstance(model, str) and model.startswith("builtin:") else None
    return param_count(BUILTIN_SIZES[name]) if name in BUILTIN_SIZES else None


def build_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character. A BPE model with no merges splits text into characters.

    The vocabulary is written in GPT-2's byte-level alphabet (space is "Ġ", newline "Ċ")
    because the saved directory is a Qwen2 model, and AutoTokenizer (and so vLLM) reloads
    any Qwen2 directory as a byte-level Qwen2Tokenizer whatever tokenizer_config.json says:
    with plain " " and "\n" in the vocabulary that reload silently dropped every space and
    newline. In this alphabet the reloaded tokenizer gives the same ids as this one.
    """
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    symbol = {c: byte_level.pre_tokenize_str(c)[0][0] for c in CHARS}
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *(symbol[c] for c in CHARS)])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=EOS, unk_token=UNK
    )


def build_model(size: ModelSize, vocab_size: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        torch_dtype="float32",
    )
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def warm_start(
    model, tokenizer, env, *, steps: int, batch: int, lr: float, seed: int, held_out: frozenset = frozenset()
) -> float:
    """Supervised pass on (prompt, demonstration) pairs; loss on the response only. Tasks whose
    prompt is in `held_out` (repr, the evaluation's: eval.held_out) are never drawn.

    Returns the last loss. Kept short on purpose: RL should start above zero, not solved.
    """
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in tqdm(range(steps), desc="warm start (supervised)", unit="step", leave=False):
        rows, masks = [], []
        for task in (sample_outside(env, rng, held_out) for _ in range(batch)):
            prompt = tokenizer.encode(task.prompt)
            response = tokenizer.encode(env.demonstration(task)) + [tokenizer.eos_token_id]
            rows.append(prompt + response)
            masks.append([0] * len(prompt) + [1] * len(response))
        width = max(map(len, rows))
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        mask = torch.tensor([m + [0] * (width - len(m)) for m in masks], dtype=torch.float32)
        logits = model(input_ids=ids).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="none"
        ).view_as(mask[:, 1:])
        loss = (nll * mask[:, 1:]).sum() / mask[:, 1:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    model.eval()
    return float(loss.detach())


def cache_root() -> Path:
    return Path(os.environ.get("RLSCALE_CACHE", Path.home() / ".cache" / "rlscale"))


def builtin_spec(size_name: str, env_name: str, env_kwargs: dict, sft: dict, seed: int) -> dict:
    if size_name not in BUILTIN_SIZES:
        raise ValueError(f"model: unknown builtin size {size_name!r}; choose from {list(BUILTIN_SIZES)}")
    lr = sft.get("sft_lr") or warm_start_lr(BUILTIN_SIZES[size_name])
    # the rate and seed used, resolved before the cache key so a default and its value share one
    recipe = dict(sft)
    sft_seed = recipe.pop("sft_seed", None)
    return {
        "size": asdict(BUILTIN_SIZES[size_name]),
        "chars": CHARS,
        "env": env_name,
        "env_kwargs": env_kwargs,
        "sft": {**recipe, "sft_lr": lr},
        "seed": seed if sft_seed is None else sft_seed,
        "format": 2,  # bump when the build recipe changes (2: byte-level symbols in the vocabulary)
    }


def resolve_builtin(
    size_name: str, env, env_kwargs: dict, sft: dict, seed: int, held_out: frozenset = frozenset(), log=print
) -> Path:
    """Path of the cached warm-started model for this spec, building it on first use. The warm
    start never sees a `held_out` prompt, so an evaluation held out from RL is held out from it too."""
    spec = builtin_spec(size_name, env.name, env_kwargs, sft, seed)
    sft = spec["sft"]
    if held_out:  # a digest, not the prompts: the same spec with the same evaluation hits the cache
        spec["held_out"] = hashlib.sha256("\n".join(sorted(held_out)).encode()).hexdigest()[:16]
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_root() / "models" / f"{size_name}-{env.name}-{key}"
    if (target / "config.json").is_file():
        return target
    log(f"building builtin:{size_name} warm-started on {env.name} ({sft['sft_steps']} steps) -> {target}")
    tokenizer = build_tokenizer()
    model = build_model(BUILTIN_SIZES[size_name], len(tokenizer), spec["seed"])
    loss = warm_start(
        model,
        tokenizer,
        env,
        steps=sft["sft_steps"],
        batch=sft["sft_batch"],
        lr=sft["sft_lr"],
        seed=spec["seed"],
        held_out=frozenset(held_out),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "rlscale_spec.json").write_text(json.dumps({**spec, "sft_final_loss": loss}, indent=1))
    try:
        tmp.rename(target)
    except OSError:  # another process built the same spec first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(cfg, env, held_out: set = frozenset(), log=print) -> Path:
    """The model directory a run starts from: `builtin:<size>` built (or found in the cache) for
    the run's environment, its warm start kept off the `held_out` prompts (repr), or the local
    Hugging Face directory the config names."""
    if cfg.model.startswith("builtin:"):
        sft = cfg.builtin.model_dump()
        return resolve_builtin(
            cfg.model.removeprefix("builtin:"),
            env,
            cfg.env.kwargs,
            sft,
            cfg.trainer.seed,
            held_out=frozenset(held_out),
            log=log,
        )
    return Path(cfg.model)


def resolve_dtype(name: str = "auto") -> torch.dtype:
    """`auto`: bf16 on GPUs, fp32 on CPUs (these CPUs have no native bf16: measured 500x slower)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return getattr(torch, name)
