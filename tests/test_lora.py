"""LoRA (`learner.lora`): only the adapters train, the engines get merged weights under the base
model's names, checkpoints hold the adapters and the merged model, FLOPs count what LoRA computes."""

from __future__ import annotations

import pytest
import torch

from rlscale import accounting
from rlscale.batch import Batch, Group, Sample
from rlscale.config import ConfigError
from rlscale.config_io import build_config
from rlscale.config_sections import LearnerConfig, LoraConfig
from rlscale.learner import Learner
from rlscale.lora import ADAPTER_DIR

LORA = LearnerConfig(lr=1e-2, lora=LoraConfig(rank=4, alpha=8.0))


def _algo(**overrides):
    return build_config({"algo": {"name": "grpo", "kl_coef": 0.0, **overrides}}).algo


def _batch(tok) -> Batch:
    prompt = tok.encode("1+1=")
    answers = [tok.encode(a) + [tok.eos_token_id] for a in ("2", "3", "22", "1")]
    return Batch([Group(prompt, [Sample(a, [-2.0] * len(a), False) for a in answers], [1.0, 0.0, 0.0, 1.0])])


@pytest.fixture
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_config_lora_keys():
    cfg = build_config({}, overrides=["learner.lora.rank=8"])
    assert cfg.learner.lora == LoraConfig(rank=8, alpha=16.0, target_modules="all-linear", dropout=0.0)
    assert build_config({}).learner.lora is None
    with pytest.raises(ConfigError, match="learner.lora.rank"):
        build_config({}, overrides=["learner.lora.rank=0"])
    with pytest.raises(ConfigError, match="learner.lora.nope"):
        build_config({}, overrides=["learner.lora.nope=1"])


def test_only_the_adapters_change_and_the_engines_get_merged_base_names(tiny_model_dir, tok):
    from transformers import AutoModelForCausalLM

    learner = Learner(str(tiny_model_dir), algo=_algo(), learner=LORA, seed=0, max_tokens=4)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base_names = [n for n, _ in plain.named_parameters()]
    assert learner.num_parameters() == sum(p.numel() for p in plain.parameters())
    assert 0 < learner.lora_parameters() < learner.num_parameters() // 4

    named = dict(learner.model.named_parameters())
    frozen = {n: p.detach().clone() for n, p in named.items() if "lora_" not in n}
    adapters = {n: p.detach().clone() for n, p in named.items() if "lora_" in n}
    assert adapters and all(p.requires_grad for n, p in named.items() if "lora_" in n)
    before = dict(learner.weights().tensors())
    for name, tensor in before.items():  # B = 0 at the start: merged weights are the base's
        assert torch.equal(tensor, plain.get_parameter(name).detach())

    for _ in range(3):
        stats = learner.update(_batch(tok))
    assert stats["learner/skipped_updates"] == 0
    named = dict(learner.model.named_parameters())
    assert all(torch.equal(named[n].detach(), p) for n, p in frozen.items())  # bit-identical base
    assert all(not torch.equal(named[n].detach(), p) for n, p in adapters.items() if "lora_B" in n)

    after = learner.weights()
    assert after.names == base_names  # what vLLM's load_weights and the HF files expect
    changed = [n for n, t in after.tensors() if not torch.equal(t, before[n])]
    assert changed and all(n.endswith(("proj.weight",)) for n in changed)
    # the merged weights give the learner's own log-probs
    plain.load_state_dict(dict(after.tensors()), strict=False)
    seq = tok.encode("3+4=7") + [tok.eos_token_id]
    with torch.no_grad():
        logits = plain(input_ids=torch.tensor([seq])).logits[0, :-1]
    merged = torch.log_softmax(logits, -1).gather(1, torch.tensor(seq[1:])[:, None])[:, 0]
    assert torch.allclose(merged, torch.tensor(learner.sequence_logprobs([seq])[0]), atol=1e-5)


def test_checkpoint_holds_adapters_and_merged_model_and_resumes_exactly(tiny_model_dir, tok, tmp_path):
    import peft
    from transformers import AutoModelForCausalLM

    learner = Learner(str(tiny_model_dir), algo=_algo(), learner=LORA, seed=0, max_tokens=4)
    for _ in range(2):
        learner.update(_batch(tok))
    learner.save(str(tmp_path))
    assert (tmp_path / ADAPTER_DIR / "adapter_model.safetensors").is_file()
    assert not (tmp_path / "adapter_config.json").exists()  # transformers would load it as an adapter
    weights = dict(learner.weights().tensors())

    merged = AutoModelForCausalLM.from_pretrained(tmp_path)  # as vLLM and transformers load it
    assert all(torch.equal(merged.get_parameter(n).detach(), w) for n, w in weights.items())
    again = peft.PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "adapter"
    )
    remerged = again.merge_and_unload()
    assert all(torch.allclose(remerged.get_parameter(n).detach(), w, atol=1e-7) for n, w in weights.items())

    resumed = Learner(
        str(tmp_path), algo=_algo(), learner=LORA, seed=0, max_tokens=4, base_dir=str(tiny_model_dir)
    )
    assert all(torch.equal(w, weights[n]) for n, w in resumed.weights().tensors())
    a, b = learner.update(_batch(tok)), resumed.update(_batch(tok))
    assert a["loss/policy"] == b["loss/policy"] and a["grad_norm"] == b["grad_norm"]
    assert all(
        torch.equal(x, y) for (_, x), (_, y) in zip(learner.weights().tensors(), resumed.weights().tensors())
    )


def test_lora_with_a_reference_and_a_critic(tiny_model_dir, tok):
    """The reference is the frozen base; a separate critic trains in full; a ProRL reset
    copies the merged policy into the reference."""
    algo = _algo(name="ppo", kl_coef=0.01, ref_reset_every=2)
    learner = Learner(str(tiny_model_dir), algo=algo, learner=LORA, seed=0, max_tokens=4)
    for _ in range(2):
        stats = learner.update(_batch(tok))
    assert stats["kl/ref_reset"] == 1.0 and "value/loss" in stats
    merged = dict(learner.weights().tensors())
    assert all(torch.equal(learner.ref.get_parameter(n), w) for n, w in merged.items())


def test_lora_flops_are_4n_plus_6n_lora_per_trained_token():
    algo = _algo()
    n, n_lora = 1_000_000, 10_000
    full = accounting.step_flops(algo, n, generated_tokens=100, trained_tokens=10)
    lora = accounting.step_flops(algo, n, generated_tokens=100, trained_tokens=10, lora_params=n_lora)
    assert full["training"] == 6 * n * 10
    assert lora["training"] == (4 * n + 6 * n_lora) * 10
    assert lora["generation"] == full["generation"] == 2 * n * 100  # the engines run merged weights
    two_epochs = _algo(ppo_epochs=2)  # plus a no-grad pass for the frozen old log-probs
    assert accounting.lora_training_per_token(two_epochs, n, n_lora) == 2 * (4 * n + 6 * n_lora) + 2 * (
        n + n_lora
    )


@pytest.mark.e2e
def test_lora_run_engines_match_the_learner_after_each_sync(ray_session, tmp_path):
    """LoRA through Ray + vLLM: after every sync the engine's log-probs of a fixed sequence equal
    the learner's (adapters merged into the engine's weights) within 1e-4; the base is untouched."""
    from rlscale.config_io import build_config as build
    from rlscale.orchestrator import Orchestrator
    from rlscale.telemetry import load_metrics

    cfg = build(
        {
            "name": "lora",
            "output_dir": str(tmp_path),
            "env": {"name": "arithmetic", "kwargs": {"digits": 1, "ops": "+"}},
            "algo": {"kl_coef": 0.0},
            "rollout": {"group_size": 4, "prompts_per_step": 8, "max_tokens": 4},
            "learner": {"lr": 1e-2, "lora": {"rank": 4, "alpha": 8}},
            "trainer": {"steps": 3, "checkpoint_every": 3},
            "builtin": {"sft_steps": 20, "sft_batch": 16},
        },
        source="lora",
    )
    orch = Orchestrator(cfg)
    fixed = orch.tokenizer.encode("3+4=7") + [orch.tokenizer.eos_token_id]

    def logprobs():
        return [
            torch.tensor(ray_session.get(actor.sequence_logprobs.remote([fixed]))[0])
            for actor in (orch.engines.engines[0], orch.learner)
        ]

    try:
        first = logprobs()[1]
        gaps = []
        for step in range(1, 4):
            orch.step(step)
            engine, learner = logprobs()
            gaps.append(float((engine - learner).abs().max()))
        orch.checkpoint(3)
        assert (learner - first).abs().max() > 1e-3  # the adapters moved the policy
        assert max(gaps) < 1e-4, gaps
        assert orch.n_lora > 0
    finally:
        orch.shutdown()
    ckpt = tmp_path / "lora" / "checkpoints" / "step_000003"
    assert (ckpt / "adapter" / "adapter_model.safetensors").is_file()
    assert (ckpt / "model.safetensors").is_file()  # the merged model, as transformers and vLLM load it
    frame = load_metrics(tmp_path / "lora")
    n, n_lora, trained = orch.n_params, orch.n_lora, frame["tokens/trained"].sum()
    assert frame["compute/flops_training"].iloc[-1] == pytest.approx((4 * n + 6 * n_lora) * trained)


def test_a_checkpoint_verifies_the_files_of_its_subfolders(tmp_path):
    """LoRA's adapter/ is in the manifest: a corrupt adapter makes the checkpoint unusable."""
    from rlscale import checkpoint

    def save(d):
        (d / "model.safetensors").write_bytes(b"m" * 100)
        (d / "adapter").mkdir()
        (d / "adapter" / "adapter_model.safetensors").write_bytes(b"a" * 100)

    path = checkpoint.write(tmp_path, 1, save, {"step": 1}, keep=2)
    assert checkpoint.problem(path) is None
    (path / "adapter" / "adapter_model.safetensors").write_bytes(b"b" * 100)
    assert checkpoint.problem(path) == "adapter/adapter_model.safetensors does not match its checksum"


@pytest.mark.e2e
def test_a_resumed_lora_run_matches_an_uninterrupted_one(ray_session, tmp_path):
    """The checkpoint's adapters go back on the base model and the engines load the merged model:
    a LoRA run stopped at step 2 and resumed gives the same per-step rewards and gradients."""
    from rlscale.config_io import build_config as build
    from rlscale.orchestrator import Orchestrator
    from rlscale.telemetry import load_metrics

    def run(name: str, steps: int, *, resume: bool = False):
        cfg = build(
            {
                "name": name,
                "output_dir": str(tmp_path),
                "env": {"name": "arithmetic", "kwargs": {"digits": 1, "ops": "+"}},
                "algo": {"kl_coef": 0.0},
                "rollout": {"group_size": 4, "prompts_per_step": 8, "max_tokens": 4},
                "learner": {"lr": 1e-2, "lora": {"rank": 4, "alpha": 8}},
                "trainer": {"steps": steps, "checkpoint_every": 2},
                "builtin": {"sft_steps": 20, "sft_batch": 16},
            },
            source=name,
        )
        orch = Orchestrator(cfg, resume=resume)
        try:
            orch.run()
        finally:
            orch.shutdown()
        return load_metrics(tmp_path / name)

    straight = run("straight", 4)
    run("stopped", 2)
    resumed = run("stopped", 4, resume=True)
    assert resumed["step"].tolist() == [1, 2, 3, 4]
    assert resumed["reward/mean"].tolist() == straight["reward/mean"].tolist()
    assert resumed["grad_norm"].tolist() == straight["grad_norm"].tolist()
    assert (straight["grad_norm"] > 0).any()  # the adapters did move: the comparison is not vacuous
