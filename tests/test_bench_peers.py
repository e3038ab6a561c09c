"""`rlscale bench breakdown | learner | e2e`: step shares, learner MFU, TRL's GRPOTrainer as the peer."""

from __future__ import annotations

import json
import random
import types

import pytest

from rlscale.cli import main


def _write_run(run_dir, steps):
    from rlscale.telemetry import MetricsWriter

    writer = MetricsWriter(run_dir)
    wall = 0.0
    for step, (total, rollout, verify, learn, sync) in enumerate(steps, start=1):
        wall += total
        writer.write(
            {
                "step": step,
                "time/wall_s": wall,
                "time/rollout_s": rollout,
                "time/verify_s": verify,
                "time/learn_s": learn,
                "time/sync_s": sync,
                "reward/mean": 0.5,
            }
        )
    writer.close()


def test_breakdown_shares_by_hand(tmp_path, capsys):
    run = tmp_path / "run"
    # per step: total, rollout, verify, learn, sync  (wall_s is cumulative: 2, 5, 6)
    _write_run(run, [(2.0, 1.0, 0.2, 0.5, 0.1), (3.0, 1.5, 0.3, 0.9, 0.1), (1.0, 0.4, 0.1, 0.3, 0.1)])
    out = tmp_path / "breakdown.json"
    assert main(["bench", "breakdown", str(run), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # sums over 6.0 s: rollout 2.9, verify 0.6, learn 1.7, sync 0.3, other 6.0 - 5.5 = 0.5
    expected = {"rollout": 2.9 / 6, "verify": 0.1, "learn": 1.7 / 6, "sync": 0.05, "other": 0.5 / 6}
    assert result["shares"] == pytest.approx(expected)
    assert result["steps"] == 3 and result["step_s"] == pytest.approx(2.0)
    assert result["seconds"]["other"] == pytest.approx(0.5 / 3)
    assert "rollout" in capsys.readouterr().out

    # without the warm-up step: 4.0 s; rollout 1.9, verify 0.4, learn 1.2, sync 0.2, other 0.3
    assert main(["bench", "breakdown", str(run), "--skip-steps", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["shares"] == pytest.approx(
        {"rollout": 0.475, "verify": 0.1, "learn": 0.3, "sync": 0.05, "other": 0.075}
    )
    assert (result["first_step"], result["last_step"]) == (2, 3)


def test_breakdown_needs_a_run_dir(tmp_path, capsys):
    assert main(["bench", "breakdown"]) == 2
    assert main(["bench", "breakdown", str(tmp_path)]) == 1  # no metrics.jsonl
    assert "metrics.jsonl" in capsys.readouterr().err


def test_learner_bench_mfu(tmp_path):
    from transformers import AutoTokenizer

    from rlscale.bench import common, learner

    out = tmp_path / "learner.json"
    argv = ["bench", "learner", "--model", "builtin:tiny", "--prompts", "2", "--group-size", "2"]
    argv += ["--max-tokens", "4", "--repeats", "2", "--peak-size", "512", "--json", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    # the batch it trained on: 2 prompts x 2 responses of 1..4 tokens, each prompt computed once
    tokenizer = AutoTokenizer.from_pretrained(common._bench_model("builtin:tiny"))
    batch = learner._learner_batch(tokenizer, 2, 2, 4, vocab=len(tokenizer))
    tokens = sum(len(g.prompt) + sum(len(s.token_ids) for s in g.samples) for g in batch.groups)
    assert result["sequences"] == 4 and result["tokens_per_update"] == tokens
    assert result["model_flops_per_update"] == 6 * result["params"] * tokens  # demo config: no KL pass
    assert result["tokens_per_s"] > 0 and result["peak_flops_per_s"] > 1e8
    assert result["mfu"] == pytest.approx(result["achieved_flops_per_s"] / result["peak_flops_per_s"])
    assert 0 < result["mfu"] < 1.5
    assert result["mfu_with_attention"] > result["mfu"]


def _e2e_cfg(model_dir, tmp_path, *sets):
    from rlscale.bench import e2e

    args = types.SimpleNamespace(
        model=str(model_dir), steps=2, prompts=2, group_size=2, max_tokens=4, config=None, set=list(sets)
    )
    return e2e._e2e_config(args, str(tmp_path / "runs"))


def test_trl_trainer_mirrors_our_config(tiny_model_dir, tmp_path):
    from rlscale.bench import e2e
    from rlscale.collect import derived_seed as _seed
    from rlscale.envs import make_env

    cfg = _e2e_cfg(tiny_model_dir, tmp_path, "learner.lr=3e-4", "learner.warmup_steps=2")
    trainer = e2e.build_trl_trainer(cfg, tiny_model_dir, str(tmp_path / "trl"))
    a = trainer.args
    assert a.num_generations == 2
    assert a.per_device_train_batch_size * a.gradient_accumulation_steps == 2 * 2 == a.generation_batch_size
    assert a.steps_per_generation == 1 and a.num_iterations == 1  # one optimizer step per our step
    assert a.max_completion_length == 4 and a.max_steps == 2
    assert (a.temperature, a.top_p, a.top_k) == (1.0, 1.0, 0)
    assert a.learning_rate == 3e-4 and a.max_grad_norm == 1.0
    assert a.beta == 0.0 and a.loss_type == "grpo" and a.scale_rewards == "group"  # demo: grpo, kl_coef 0
    assert (a.epsilon, a.epsilon_high) == (0.2, 0.2)
    assert not a.bf16 and a.use_cpu and not a.use_vllm and not a.gradient_checkpointing
    assert a.report_to in ([], "none", ["none"]) and a.save_strategy == "no"
    # our schedule: lr/2 on the first update, lr from the second
    assert trainer.lr_scheduler.get_last_lr() == [pytest.approx(1.5e-4)]

    # each step's prompts are the ones our orchestrator draws at that step, in order
    env = make_env(cfg.env.name, **cfg.env.kwargs)
    ours = []
    for step in (1, 2):
        rng = random.Random(_seed(cfg.trainer.seed, "tasks", step))
        ours += [env.sample(rng) for _ in range(2)]
    assert trainer.train_dataset["prompt"] == [t.prompt for t in ours]

    # the reward is our verifier, finding the task through the row's index
    reward = trainer.reward_funcs[0]
    wrong = str(int(ours[3].answer) + 1)
    scores = reward(prompts=[ours[3].prompt] * 2, completions=[ours[3].answer, wrong], task_index=[3, 3])
    assert scores == [1.0, 0.0]


def test_trl_refuses_what_it_cannot_mirror(tiny_model_dir, tmp_path):
    from rlscale.bench import e2e
    from rlscale.config import ConfigError

    with pytest.raises(ConfigError, match="dynamic_sampling"):
        e2e.trl_settings(_e2e_cfg(tiny_model_dir, tmp_path, "algo.name=dapo"))
    settings = e2e.trl_settings(_e2e_cfg(tiny_model_dir, tmp_path, "algo.name=dr_grpo"))
    assert (settings["loss_type"], settings["scale_rewards"]) == ("dr_grpo", "none")


def test_trl_side_runs_two_steps(tiny_model_dir, tmp_path):
    from rlscale.bench import e2e

    cfg = _e2e_cfg(tiny_model_dir, tmp_path)
    result = e2e.run_trl(cfg, tiny_model_dir)
    assert len(result["step_ends"]) == 2 and len(result["rewards"]) == 2
    assert all(0.0 <= r <= 1.0 for r in result["rewards"])
    assert e2e._steps_per_s(result["step_ends"]) > 0


def test_attention_flops_count_a_shared_prompt_once():
    """Prompt of 2 (3 query-key pairs, once), responses of 1 and 2 tokens after it: 1*2 + 1 and
    2*2 + 3 pairs. 13 pairs x 12 FLOPs per pair per width unit, x 4 layers x width 8."""
    from rlscale.batch import Batch, Group, Sample
    from rlscale.bench import learner

    batch = Batch([Group([1, 2], [Sample([3], [0.0], False), Sample([4, 5], [0.0, 0.0], False)], [1.0, 0.0])])
    assert learner._attention_flops(batch, layers=4, attn_width=8) == 12 * 4 * 8 * 13
