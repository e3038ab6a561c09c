"""A sharded learner (learner.world_size=2, FSDP2 over gloo on CPU, ranks as Ray actors) makes the
update one learner makes: the same loss, gradient norm and weights, for GRPO and for PPO."""

from __future__ import annotations

import json

import pytest
import torch

from rlscale.batch import Batch, Group, Sample
from rlscale.config import LearnerConfig
from rlscale.config_io import build_config
from rlscale.learner import Learner
from rlscale.learner_group import LearnerGroup

LEARNER = LearnerConfig(lr=1e-4, warmup_steps=0, grad_clip=1.0)
MAX_TOKENS = 6
TOL = 1e-5
ENV = {"env_vars": {"OMP_NUM_THREADS": "1"}}


def _batch(tok) -> Batch:
    """Three groups of two, responses of different lengths (token-mean differs from the rest)."""
    batch = Batch()
    eos = tok.eos_token_id
    for prompt, responses, rewards in [
        ("1+1=", ["2", "33"], [1.0, 0.0]),
        ("2+3=", ["5", "555"], [1.0, 0.0]),
        ("9-7=", ["1", "2"], [0.0, 1.0]),
    ]:
        samples = []
        for text in responses:
            ids = tok.encode(text) + [eos]
            samples.append(Sample(ids, [-0.5] * len(ids), False))
        batch.groups.append(Group(tok.encode(prompt), samples, list(rewards)))
    return batch


def _weights(flat) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in flat.tensors()}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize(
    "algo",
    [
        {"name": "grpo"},  # seq-mean-token-mean, a reference model (k3 KL in the loss)
        {"name": "grpo", "loss_agg": "token-mean", "kl_coef": 0.0},
        {"name": "grpo", "loss_agg": "prompt-level", "kl_coef": 0.0},
        {"name": "ppo"},  # a separate critic, GAE, KL in the reward, 4 epochs
        {"name": "ppo", "critic_mode": "head", "mini_batches": 2, "ppo_epochs": 2},
    ],
    ids=["grpo", "grpo-token-mean", "grpo-prompt-level", "ppo", "ppo-head-minibatches"],
)
def test_two_ranks_make_the_update_one_learner_makes(algo, tiny_model_dir, ray_session, tmp_path):
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    batch = _batch(AutoTokenizer.from_pretrained(tiny_model_dir))
    kwargs = dict(algo=build_config({"algo": algo}).algo, learner=LEARNER, seed=0, max_tokens=MAX_TOKENS)
    one = Learner(str(tiny_model_dir), **kwargs)
    before = _weights(one.weights())
    stats_one = one.update(batch)
    after_one = _weights(one.weights())

    group = LearnerGroup(2, str(tiny_model_dir), num_cpus=0.5, runtime_env=ENV, **kwargs)
    try:
        stats_two = ray_session.get(group.update.remote(batch))
        after_two = _weights(ray_session.get(group.weights.remote()))
        group_ckpt = tmp_path / "two"
        ray_session.get(group.save.remote(str(group_ckpt)))
    finally:
        group.kill()

    assert _max_diff(after_one, before) > 1e-4  # the update moved the weights
    diffs = {
        "loss": abs(stats_one["loss/policy"] - stats_two["loss/policy"]),
        "grad_norm": abs(stats_one["grad_norm"] - stats_two["grad_norm"]),
        "weights": _max_diff(after_one, after_two),
    }
    if "value/loss" in stats_one:
        diffs["value_loss"] = abs(stats_one["value/loss"] - stats_two["value/loss"])
    print(f"world_size 2 vs 1, {algo}: max abs diffs {diffs}")
    assert all(d < TOL for d in diffs.values()), diffs

    # the sharded learner's checkpoint is a single learner's: it resumes at world_size 1
    one_ckpt = tmp_path / "one"
    one.save(str(one_ckpt))
    resumed = Learner(str(group_ckpt), **kwargs)
    assert _max_diff(_weights(resumed.weights()), after_one) < TOL
    state_one = torch.load(one_ckpt / "learner_state.pt", weights_only=False)["optimizer"]["state"]
    state_two = torch.load(group_ckpt / "learner_state.pt", weights_only=False)["optimizer"]["state"]
    assert state_one.keys() == state_two.keys()
    for i in state_one:
        for k in ("exp_avg", "exp_avg_sq"):
            assert float((state_one[i][k] - state_two[i][k]).abs().max()) < TOL
    if one.value_head is not None:
        assert float((resumed.value_head.weight - one.value_head.weight).detach().abs().max()) < TOL


def test_config_takes_world_size_and_tensor_parallel_size_and_refuses_lora_sharded():
    cfg = build_config({"learner": {"world_size": 2}, "rollout": {"tensor_parallel_size": 2}})
    assert (cfg.learner.world_size, cfg.rollout.tensor_parallel_size) == (2, 2)
    assert build_config({}).learner.world_size == 1
    with pytest.raises(Exception, match="learner.world_size"):
        build_config({"learner": {"world_size": 2, "lora": {"rank": 4}}})


def test_tensor_parallel_on_cpu_is_refused_at_run_start(ray_session, tmp_path):
    from rlscale import cluster
    from rlscale.errors import RunStopped

    if ray_session.cluster_resources().get("GPU", 0) >= 2:
        pytest.skip("this cluster has GPUs for tensor parallelism")
    cfg = build_config({"output_dir": str(tmp_path), "rollout": {"tensor_parallel_size": 2}})
    cfg.run_dir.mkdir(parents=True)
    with pytest.raises(RunStopped, match=r"rollout.tensor_parallel_size=2: .* needs 2 GPUs"):
        cluster.start(cfg)


_TWO_NODES_DRIVER = """
import json, sys, ray, torch
from rlscale.config import LearnerConfig
from rlscale.config_io import build_config
from rlscale.learner_group import LearnerGroup
address, model_dir, batch_file, out = sys.argv[1:5]
batch = torch.load(batch_file, weights_only=False)
ray.init(address=address, include_dashboard=False)
group = LearnerGroup(
    2, model_dir, bundles=[{"CPU": 1, "node1": 1}, {"CPU": 1, "node2": 1}], strategy="SPREAD",
    runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    algo=build_config({"algo": {"name": "grpo"}}).algo,
    learner=LearnerConfig(lr=1e-4, warmup_steps=0, grad_clip=1.0),
    seed=0, max_tokens=6, timeout_s=300,
)
stats = ray.get(group.update.remote(batch))
weights = {k: v.clone() for k, v in ray.get(group.weights.remote()).tensors()}
torch.save({"stats": stats, "weights": weights, "nodes": group.nodes()}, out)
group.kill()
ray.shutdown()
"""


def _joined(proc, log, timeout_s: float = 180) -> bool:
    """Whether a `ray start --block` node (a Popen) came up, as its log says, before it exited."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "block forever" in log.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(1)
    return False


@pytest.mark.e2e
def test_learner_ranks_on_two_ray_nodes(tiny_model_dir, tmp_path):
    """A head and a second node (`ray start`, own processes, stopped by their process groups,
    never `ray stop`), one learner rank on each: the update one learner makes."""
    import os
    import secrets
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from transformers import AutoTokenizer

    ray_bin = Path(sys.executable).parent / "ray"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    temp = Path(tempfile.mkdtemp(prefix="rl2n", dir="/tmp"))  # short: Ray's sockets live in it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))  # this cluster's own
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]

    def node(*args):
        log = open(tmp_path / f"node{len(nodes)}.log", "w")
        return subprocess.Popen(
            [ray_bin, "start", *args, *common],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )

    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(
            node(
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--temp-dir={temp}",
                '--resources={"node1": 1}',
            )
        )
        deadline = time.monotonic() + 120
        while not (temp / "session_latest" / "sockets" / "raylet").exists():
            assert nodes[0].poll() is None, (tmp_path / "node0.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "ray start --head did not come up"
            time.sleep(1)
        for _ in range(3):  # on a loaded machine a node can miss Ray's fixed 30 s raylet wait
            nodes.append(node(f"--address={address}", '--resources={"node2": 1}'))
            if _joined(nodes[-1], tmp_path / f"node{len(nodes) - 1}.log"):
                break
        else:
            pytest.fail("the second Ray node did not start: " + (tmp_path / "node1.log").read_text()[-2000:])
        torch.set_num_threads(1)
        batch = _batch(AutoTokenizer.from_pretrained(tiny_model_dir))
        torch.save(batch, tmp_path / "batch.pt")
        out = tmp_path / "out.pt"
        args = [address, str(tiny_model_dir), str(tmp_path / "batch.pt"), str(out)]
        done = subprocess.run(
            [sys.executable, "-c", _TWO_NODES_DRIVER, *args],
            capture_output=True,
            text=True,
            timeout=500,
            env=env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        for proc in reversed(nodes):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(nodes):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
    got = torch.load(out, weights_only=False)
    assert len(set(got["nodes"])) == 2  # one rank on each node

    one = Learner(
        str(tiny_model_dir),
        algo=build_config({"algo": {"name": "grpo"}}).algo,
        learner=LEARNER,
        seed=0,
        max_tokens=MAX_TOKENS,
    )
    stats = one.update(batch)
    diffs = {
        "loss": abs(stats["loss/policy"] - got["stats"]["loss/policy"]),
        "grad_norm": abs(stats["grad_norm"] - got["stats"]["grad_norm"]),
        "weights": _max_diff(_weights(one.weights()), got["weights"]),
    }
    print(f"two Ray nodes, world_size 2 vs 1: max abs diffs {diffs}")
    assert all(d < TOL for d in diffs.values()), diffs


@pytest.mark.e2e
def test_a_run_with_two_learner_ranks(ray_session, tmp_path):
    """The orchestrator with `learner.world_size=2`: engines sample, two ranks train, weights sync
    from rank 0, the checkpoint is written; then it resumes with one learner."""
    from rlscale.orchestrator import run
    from rlscale.telemetry import load_metrics

    base = {
        "name": "sharded",
        "output_dir": str(tmp_path),
        "model": "builtin:tiny",
        "env": {"name": "arithmetic", "kwargs": {"digits": 1, "ops": "+"}},
        "algo": {"name": "grpo", "kl_coef": 0.0},
        "rollout": {"group_size": 4, "prompts_per_step": 4, "max_tokens": 4},
        "trainer": {"steps": 2, "checkpoint_every": 2},
        "builtin": {"sft_steps": 5, "sft_batch": 8},
        "ray": {"learner_cpus": 0.5},
    }
    run(build_config({**base, "learner": {"world_size": 2}}))
    records = load_metrics(tmp_path / "sharded")
    assert list(records["step"]) == [1, 2]
    assert records["grad_norm"].notna().all()  # (0 when a tiny model's groups all score alike)
    config = json.loads((tmp_path / "sharded" / "checkpoints" / "step_000002" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]  # the model's class, not FSDP's
    run(build_config({**base, "trainer": {"steps": 3, "checkpoint_every": 2}}), resume=True)
    assert list(load_metrics(tmp_path / "sharded")["step"]) == [1, 2, 3]


def test_colocated_mode_is_checked_at_load_and_gpu_shares_follow_the_mode():
    from rlscale.cluster import gpu_shares, gpus_wanted

    ok = build_config({"rollout": {"colocate": True, "workers": 2}, "learner": {"world_size": 2}})
    assert ok.rollout.colocate and not build_config({}).rollout.colocate
    for bad, key in (
        ({"rollout": {"colocate": True}, "trainer": {"off_policy_steps": 1}}, "off_policy_steps"),
        ({"rollout": {"colocate": True, "tensor_parallel_size": 2}}, "tensor_parallel_size=1"),
        ({"rollout": {"colocate": True, "workers": 2}}, r"workers \(2\) must equal learner.world_size \(1\)"),
    ):
        with pytest.raises(Exception, match=key):
            build_config(bad)
    # (engine, learner rank) GPUs: none without GPUs; one each (tp per engine) apart; half each together
    assert gpu_shares(ok, 0) == (0.0, 0.0) and gpus_wanted(ok, 0) == 0
    assert gpu_shares(ok, 2) == (0.5, 0.5) and gpus_wanted(ok, 2) == 2.0
    apart = build_config({"rollout": {"workers": 2, "tensor_parallel_size": 2}, "learner": {"world_size": 2}})
    assert gpu_shares(apart, 8) == (2.0, 1.0) and gpus_wanted(apart, 8) == 6.0


def test_colocated_mode_on_cpu_is_refused_at_run_start(ray_session, tmp_path):
    from rlscale import cluster
    from rlscale.errors import RunStopped

    if ray_session.cluster_resources().get("GPU", 0) >= 1:
        pytest.skip("colocated mode is refused only on a cluster without GPUs; this one has them")
    cfg = build_config({"output_dir": str(tmp_path), "rollout": {"colocate": True}})
    cfg.run_dir.mkdir(parents=True)
    with pytest.raises(RunStopped, match=r"rollout.colocate: vLLM's sleep mode needs CUDA GPUs"):
        cluster.start(cfg)


def test_colocated_engines_sleep_through_the_update_and_wake_before_the_sync(ray_session):
    from rlscale.rollout import EnginePool

    @ray_session.remote(num_cpus=0)
    class Engine:
        def __init__(self):
            self.calls = []

        def sleep(self):
            self.calls.append("sleep")

        def wake_up(self):
            self.calls.append("wake_up")

        def log(self):
            return self.calls

    def pool(colocated):
        return EnginePool(lambda i: Engine.remote(), 2, max_restarts=0, current_weights=None,
                          on_restart=None, colocated=colocated)  # fmt: skip

    together = pool(True)
    with together.asleep():
        assert [ray_session.get(e.log.remote()) for e in together.engines] == [["sleep"]] * 2
    with pytest.raises(ValueError), together.asleep():  # an update that fails still wakes them
        raise ValueError
    assert [ray_session.get(e.log.remote()) for e in together.engines] == [["sleep", "wake_up"] * 2] * 2
    apart = pool(False)
    with apart.asleep():
        pass
    assert [ray_session.get(e.log.remote()) for e in apart.engines] == [[]] * 2
