"""Config validation: every bad input gets one message naming the file and the key."""

from __future__ import annotations

import pytest
import yaml

from rlscale.config import ConfigError
from rlscale.config_io import load_config, save_config


@pytest.fixture
def demo(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(open("configs/demo.yaml").read())
    return path


def _error(path, *overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value)


def test_demo_config_loads_with_overrides_and_fills_the_preset(demo):
    cfg = load_config(demo, ["trainer.steps=7", "algo.name=dapo", "rollout.temperature=0.7"])
    assert cfg.trainer.steps == 7 and cfg.rollout.temperature == 0.7
    assert (cfg.algo.eps_low, cfg.algo.eps_high, cfg.algo.dynamic_sampling) == (0.2, 0.28, True)
    assert cfg.model == "builtin:tiny" and cfg.env.name == "arithmetic"


def test_explicit_algo_keys_override_the_preset(demo):
    cfg = load_config(demo, ["algo.name=dapo", "algo.eps_high=0.5"])
    assert cfg.algo.eps_high == 0.5 and cfg.algo.eps_low == 0.2


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.stepz=3", "trainer.stepz: unknown key"),
        ("trainer.steps=abc", "trainer.steps: Input should be a valid integer"),
        ("trainer.steps=0", "trainer.steps: Input should be greater than or equal to 1"),
        ("rollout.temperature=-1", "rollout.temperature: Input should be greater than 0"),
        ("rollout.top_p=1.5", "rollout.top_p: Input should be less than or equal to 1"),
        ("algo.name=nope", "algo.name: unknown preset 'nope'"),
        ("env.name=nope", "env.name: unknown environment 'nope'"),
        ("rollout.group_size=1", "rollout.group_size: grpo normalises rewards within a group"),
        ("model=/no/such/model", "model: '/no/such/model' is neither builtin:<size> nor a local HF"),
        ("algo.kl_estimator=k9", "algo.kl_estimator: Input should be 'k1', 'k2' or 'k3'"),
    ],
)
def test_bad_values_name_the_file_and_key(demo, override, expected):
    message = _error(demo, override)
    assert message.startswith(f"{demo}: ")
    assert expected in message
    assert len(message.splitlines()) == 1


def test_unknown_key_in_the_file_itself(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nlearner:\n  learning_rate: 0.1\n")
    assert _error(path) == f"{path}: learner.learning_rate: unknown key"


def test_missing_file_and_malformed_yaml(tmp_path):
    assert "no such config file" in _error(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert "not valid YAML" in _error(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    assert "top level must be a mapping" in _error(scalar)


def test_malformed_override(demo):
    assert "expected key.sub=value" in _error(demo, "trainer.steps")


def test_resolved_config_round_trips(demo, tmp_path):
    cfg = load_config(demo, ["algo.name=cispo", "name=roundtrip"])
    save_config(cfg, tmp_path / "resolved.yaml")
    saved = yaml.safe_load((tmp_path / "resolved.yaml").read_text())
    assert saved["algo"]["policy_loss"] == "cispo" and saved["name"] == "roundtrip"
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg


def test_switching_env_by_override_drops_the_old_envs_kwargs(demo):
    assert load_config(demo, ["env.name=countdown"]).env.kwargs == {}
    cfg = load_config(demo, ["env.name=countdown", "env.kwargs.numbers=4"])
    assert cfg.env.kwargs == {"numbers": 4}
    assert load_config(demo).env.kwargs == {"digits": 1, "terms": 2, "ops": "+-"}


def test_off_policy_needs_the_samplers_own_distribution(demo):
    assert load_config(demo, ["trainer.off_policy_steps=1"]).trainer.off_policy_steps == 1
    message = _error(demo, "trainer.off_policy_steps=1", "rollout.temperature=0.7")
    assert message.startswith(f"{demo}: trainer.off_policy_steps: ")
    assert "rollout.temperature=1" in message and len(message.splitlines()) == 1
    assert "less than or equal to 8" in _error(demo, "trainer.off_policy_steps=9")  # issue 15: k <= 8


@pytest.mark.parametrize(
    "override, key, valid",
    [
        (
            "algo.policy_loss=ppo_clp",
            "algo.policy_loss",
            "'ppo_clip', 'gspo', 'cispo', 'clip_cov' or 'kl_cov'",
        ),
        ("algo.advantage=grpo2", "algo.advantage", "'grpo', 'dr_grpo', 'rloo', 'reinforce_pp'"),
        ("algo.loss_agg=mean", "algo.loss_agg", "'token-mean', 'seq-mean-token-mean'"),
    ],
)
def test_unknown_registry_names_are_refused_with_the_valid_ones(demo, override, key, valid):
    message = _error(demo, override)
    assert message.startswith(f"{demo}: {key}: ") and valid in message and len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["algo.gamma=0.9"], "algo.gamma: does nothing here; it is used only with a critic"),
        (["algo.dual_clip=3"], None),  # grpo's loss is ppo_clip: accepted
        (["algo.policy_loss=cispo", "algo.dual_clip=3"], "algo.dual_clip: does nothing here"),
        (
            ["algo.clip_cov_ratio=0.01"],
            "algo.clip_cov_ratio: does nothing here; it is used only with policy_loss clip_cov",
        ),
        (["algo.kl_coef=0", "algo.kl_estimator=k1"], "algo.kl_estimator: does nothing here"),
        (["algo.norm_adv=batch"], "algo.norm_adv: advantage 'grpo' applies 'group' scaling itself"),
        (["algo.name=ppo", "algo.norm_adv=group"], None),  # GAE: norm_adv chooses the scaling
    ],
)
def test_options_that_would_do_nothing_are_refused(demo, overrides, says):
    if says is None:
        load_config(demo, overrides)
    else:
        assert says in _error(demo, *overrides)


def test_norm_adv_follows_the_advantage_chosen(demo):
    assert load_config(demo, ["algo.advantage=rloo"]).algo.norm_adv == "none"
    assert load_config(demo, ["algo.advantage=batch_norm"]).algo.norm_adv == "batch"


def test_a_bad_loss_name_is_refused_by_the_cli_before_ray_or_torch(demo):
    """One line naming the file and key, exit 2, and neither Ray nor torch imported on the way."""
    import subprocess
    import sys

    code = (
        "import sys; from rlscale.cli import main; "
        f"rc = main(['run', {str(demo)!r}, 'algo.policy_loss=ppo_clp']); "
        "print('imported', 'ray' in sys.modules, 'torch' in sys.modules); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"{demo}: algo.policy_loss: Input should be 'ppo_clip'" in done.stderr
    assert done.stdout.strip() == "imported False False"


def test_every_config_key_has_a_one_line_description():
    from rlscale.config import RunConfig
    from rlscale.config_io import config_rows

    rows = config_rows(RunConfig())
    assert len(rows) > 60
    undocumented = [key for key, _, _, desc in rows if not desc or "\n" in desc]
    assert undocumented == []
    for field in RunConfig.model_fields.values():  # the sections too
        assert field.description


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["env.kwargs.digts=1"],
            "env.kwargs.digts: unknown argument of environment 'arithmetic'; "
            "valid: digits, terms, ops, min_digits",
        ),
        (["env.name=math_file"], "env.kwargs.path: required by environment 'math_file'"),
        (
            ["env.name=math_file", "env.kwargs.path=/no/such/gsm8k.jsonl"],
            "env.kwargs.path: no such file or directory: /no/such/gsm8k.jsonl",
        ),
        (
            ["env.name=mixture", "env.kwargs.components=[{name: arithmetic, kwargs: {digts: 2}}]"],
            "env.kwargs.components[0].kwargs.digts: unknown argument of environment 'arithmetic'",
        ),
        (
            ["env.name=mixture", "env.kwargs.components=[{name: nope}]"],
            "env.kwargs.components[0].name: unknown environment 'nope'",
        ),
    ],
)
def test_env_kwargs_are_checked_against_the_environments_signature(demo, overrides, expected):
    message = _error(demo, *overrides)
    assert message == f"{demo}: {expected}" or message.startswith(f"{demo}: {expected}")
    assert len(message.splitlines()) == 1


def test_env_kwargs_that_exist_pass(demo, tmp_path):
    data = tmp_path / "problems.jsonl"
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    cfg = load_config(demo, ["env.name=math_file", f"env.kwargs.path={data}"])
    assert cfg.env.kwargs == {"path": str(data)}
    load_config(
        demo, ["env.name=reasoning_gym", "env.kwargs.dataset=chain_sum", "env.kwargs.any=1"]
    )  # **config


def test_an_env_kwargs_typo_is_refused_by_the_cli_in_about_a_second(demo):
    import subprocess
    import sys
    import time

    code = (
        "import sys; from rlscale.cli import main; "
        f"rc = main(['run', {str(demo)!r}, 'env.kwargs.digts=1']); "
        "print('imported', any(m in sys.modules for m in ('ray', 'torch', 'vllm'))); sys.exit(rc)"
    )
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"{demo}: env.kwargs.digts: unknown argument")
    assert done.stdout.strip() == "imported False"
    assert time.monotonic() - t0 < 15  # about a second alone; generous on a loaded shared machine


@pytest.mark.parametrize(
    "overrides, noted",
    [
        (["algo.eps_high=0.28"], "algo.eps_high=0.28"),  # clip-higher on demo: 1 step, on-policy
        (["algo.policy_loss=kl_cov"], "algo.policy_loss=kl_cov"),
        (["algo.dual_clip=3", "algo.eps_low=0.1"], "algo.eps_low=0.1 algo.dual_clip=3.0"),
        (["algo.eps_high=0.28", "algo.mini_batches=4"], None),  # the policy moves within a step
        (["algo.policy_loss=kl_cov", "algo.ppo_epochs=2"], None),
        (["algo.eps_high=0.28", "trainer.off_policy_steps=1"], None),  # ratio vs the sampler's
        (["algo.eps_high=0.2"], None),  # the preset's own value: nothing new to say
        (["algo.name=dapo"], None),  # dapo's 0.28 comes with its 16 mini-batches
        ([], None),
    ],
)
def test_settings_that_cannot_act_are_noted(demo, overrides, noted):
    from rlscale.config_checks import inert_settings

    notes = inert_settings(load_config(demo, overrides))
    if noted is None:
        assert notes == []
    else:
        assert len(notes) == 1 and notes[0].startswith(f"{noted}: no effect here")
        assert "algo.mini_batches" in notes[0]
