"""LoRA on the learner's policy (Hu et al. 2021, with peft): adapters added or loaded to continue
training, the policy's weights with the adapters merged in (what vLLM and the checkpoint's model
files get), and a checkpoint's two parts (merged model files, `adapter/`)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from rlscale.config_sections import LoraConfig

ADAPTER_DIR = "adapter"  # in a LoRA checkpoint: the adapters (peft's save_pretrained)


def with_adapters(model, cfg: LoraConfig, adapter: Path | None):
    """The policy with LoRA adapters (peft): new ones, or a checkpoint's to continue training."""
    import peft

    if adapter is not None:
        return peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    target = cfg.target_modules
    return peft.get_peft_model(
        model,
        peft.LoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            target_modules=target if isinstance(target, str) else list(target),
            lora_dropout=cfg.dropout,
            bias="none",
            task_type="CAUSAL_LM",
        ),
    )


def merged_weights(model) -> list[tuple[str, torch.Tensor]]:
    """The parameters of a peft model under the base model's names, each adapted weight merged on
    the fly, W + (alpha / r) B A (peft's `get_delta_weight`), and the adapters' own tensors left
    out, so vLLM's `load_weights` and the HF files see a plain model."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    with torch.no_grad():
        deltas = {
            f"{name}.base_layer.weight": module.get_delta_weight(module.active_adapters[0])
            for name, module in base.named_modules()
            if isinstance(module, LoraLayer)
        }
        return [
            (name.replace(".base_layer.", "."), p + deltas[name] if name in deltas else p)
            for name, p in base.named_parameters()
            if ".lora_" not in name
        ]


def save_merged_and_adapters(model, path: str) -> None:
    """The merged weights as the model files of `path` (transformers and vLLM load them as a plain
    model) and the adapters in `path/adapter` (`peft.PeftModel.from_pretrained(base, path/adapter)`)."""
    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(path)
    model.save_pretrained(Path(path) / ADAPTER_DIR)
