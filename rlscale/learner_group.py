"""A learner sharded over several processes: `learner.world_size` Ray actors, one FSDP2 model.

Each rank is a Ray actor in one placement group (a CPU slot each, plus one GPU each where the
cluster has GPUs); together they form one torch.distributed process group (gloo on CPU, NCCL on
CUDA) and shard the policy, the critic and the reference with FSDP2 (`fully_shard` per decoder
layer, then the root). Every rank is handed the whole batch; each computes the loss on its share
of the groups (whole groups, so prompt-level aggregation stays exact) and scales its part so that
the parts add up to the unsharded loss: token-mean divides by the token count of the whole batch,
the sequence means by its sequence count, prompt-level by its group count. The gradients FSDP
averages are then the gradients of the unsharded loss, and the ranks step together.

Advantages need no-grad passes over the batch (old log-probs, the reference, the critic's
values); every rank runs them over the whole batch, so every rank holds the same advantages
(redundant compute, no communication beyond FSDP's own).

`LearnerGroup` is what the orchestrator holds: `group.update.remote(batch)` calls `update` on
every rank and returns an ObjectRef to rank 0's result, as a single `LearnerActor` does.
Weights for the engines and checkpoints are gathered to full tensors on rank 0; a checkpoint
is the same files a single learner writes (HF model, `learner_state.pt` with a full optimizer
state keyed as torch's `Optimizer.state_dict`), so a run resumes at any world size.
"""

from __future__ import annotations

import json
import socket
import types
from datetime import timedelta
from pathlib import Path

import ray
import torch
import torch.distributed as dist

from rlscale import cluster
from rlscale.learner import LEARNER_STATE, Learner, LearnerActor
from rlscale.packing import Packed
from rlscale.rollout import FlatWeights

# stats that are each rank's part of a loss over the whole batch: their sum is the batch's value
_PARTS = ("loss/policy", "kl/ref", "value/loss")


def _full(tensor):
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _packed_args(packed: Packed) -> dict:
    return dict(
        input_ids=packed.input_ids,
        position_ids=packed.position_ids,
        attention_mask=packed.attention_mask,
        gather=packed.gather,
    )


def _rl_hidden(model, *, input_ids, position_ids, attention_mask, gather):
    """`Learner._hidden` as a method of the model, so that FSDP's root hooks run around it."""
    out = model.get_decoder()(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask)
    return out.last_hidden_state.flatten(0, 1)[gather]


def _rl_logits(model, **packed):
    return model.get_output_embeddings()(_rl_hidden(model, **packed))


class ShardedLearner(Learner):
    """`Learner` as one rank of a process group that is already initialised."""

    def __init__(self, model_dir: str, **kwargs):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self._share = 1.0  # this rank's rows / the mini-batch's rows (0: a rank with no group)
        self._dens: tuple[dict, dict] = ({}, {})  # (this rank's, the mini-batch's) normalisers
        super().__init__(model_dir, **kwargs)

    # -- sharding ------------------------------------------------------------------------
    def _wrap(self, model_dir: Path) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        if self.lora is not None:
            raise ValueError("learner.world_size > 1 with LoRA is not supported")
        self._arch = type(self.model).__name__
        state = self._state(model_dir)  # modules restored whole, before they are sharded
        if state is not None and self.value_head is not None and state.get("critic") is not None:
            self.value_head.load_state_dict(state["critic"]["head"])
            if state["critic"]["trunk"] is not None:
                self.critic_trunk.load_state_dict(state["critic"]["trunk"])
        if state is not None and self.ref is not None and state.get("ref") is not None:
            self.ref.load_state_dict(state["ref"])
        mesh = init_device_mesh(self.device.type, (self.world,))

        def shard(module, layers):
            for layer in layers:
                fully_shard(layer, mesh=mesh)
            fully_shard(module, mesh=mesh)

        for model in [self.model] + ([self.ref] if self.ref is not None else []):
            shard(model, model.get_decoder().layers)
            model.rl_logits = types.MethodType(_rl_logits, model)
            model.rl_hidden = types.MethodType(_rl_hidden, model)
            register_fsdp_forward_method(model, "rl_logits")
            register_fsdp_forward_method(model, "rl_hidden")
        if self.value_head is not None:
            if self.algo.critic_mode == "separate":
                shard(self.critic_trunk, self.critic_trunk.layers)
            fully_shard(self.value_head, mesh=mesh)

    @staticmethod
    def _state(model_dir: Path) -> dict | None:
        file = Path(model_dir) / LEARNER_STATE
        return torch.load(file, map_location="cpu", weights_only=False) if file.is_file() else None

    def _restore(self, model_dir: Path) -> None:
        from torch.distributed.tensor import DTensor, distribute_tensor

        state = self._state(model_dir)
        if state is None:
            return
        optimizer = state["optimizer"]  # full tensors, keyed by parameter index: shard each
        for i, entry in optimizer["state"].items():
            p = self.params[i]
            for k, v in entry.items():
                if isinstance(p, DTensor) and torch.is_tensor(v) and v.shape == p.shape:
                    entry[k] = distribute_tensor(v.to(self.device), p.device_mesh, p.placements)
        self.opt.load_state_dict(optimizer)
        self.sched.load_state_dict(state["scheduler"])
        self.updates = state["updates"]
        torch.set_rng_state(state["torch_rng"])

    # -- forward passes through FSDP's hooks ---------------------------------------------
    def _logits(self, model, packed: Packed) -> torch.Tensor:
        return model.rl_logits(**_packed_args(packed)).float()

    def _values(self, packed: Packed) -> torch.Tensor:
        if self.algo.critic_mode == "separate":  # the trunk is an FSDP root: its forward hooks run
            hidden = self._hidden(self.critic_trunk, packed)
        else:
            hidden = self.model.rl_hidden(**_packed_args(packed))
        return self.value_head(hidden.float()).squeeze(-1)

    # -- the batch split by whole groups, losses normalised over the whole -----------------
    @staticmethod
    def _normalisers(t, rows: torch.Tensor) -> dict:
        mask = t.mask[rows.to(t.mask.device)]
        n = float(len(rows))
        return {
            "token-mean": float((mask > 0).sum().clamp(min=1)),
            "seq-mean-token-mean": n,
            "seq-mean-token-sum": n,
            "seq-mean-token-sum-norm": n,
            "prompt-level": float(len(torch.unique(t.group_ids[rows.to(t.group_ids.device)]))),
        }

    def _rows(self, t, chunk: torch.Tensor) -> torch.Tensor:
        groups = t.group_ids.cpu()[chunk]
        ids = torch.unique(groups)  # sorted; contiguous blocks of groups per rank
        lo, hi = self.rank * len(ids) // self.world, (self.rank + 1) * len(ids) // self.world
        rows = chunk[torch.isin(groups, ids[lo:hi])]
        self._share = len(rows) / len(chunk)
        if len(rows) == 0:  # fewer groups than ranks: compute one row with weight 0 (FSDP needs
            rows = chunk[:1]  # every rank in every forward and backward)
        self._dens = (self._normalisers(t, rows), self._normalisers(t, chunk))
        return rows

    def _aggregate(self, mat, mask, mode: str, **agg) -> torch.Tensor:
        local, whole = self._dens
        part = local[mode] / whole[mode] if self._share else 0.0
        return super()._aggregate(mat, mask, mode, **agg) * part

    def _backward(self, loss: torch.Tensor) -> None:
        (loss * self.world).backward()  # FSDP averages the ranks' gradients: the parts' sum

    def _clip(self) -> float:
        return float(_full(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)))

    def _sum(self, values: list[float]) -> list[float]:
        vec = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(vec)
        return vec.tolist()

    def _reduce_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """Loss parts summed; the other statistics averaged over ranks by their share of rows."""
        keys = sorted(stats)
        values = [stats[k] if k in _PARTS else stats[k] * self._share for k in keys]
        return dict(zip(keys, self._sum(values)))

    def _loss_value(self, loss: torch.Tensor) -> float:
        return self._sum([float(loss.detach())])[0]

    # -- full weights on rank 0 ----------------------------------------------------------
    @staticmethod
    def _full_state(module) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(module, options=options)

    def weights(self) -> FlatWeights | None:
        full = self._full_state(self.model)  # every rank takes part; rank 0 holds the result
        if self.rank != 0:
            return None
        return FlatWeights.of([(name, full[name]) for name, _ in self.model.named_parameters()])

    def save(self, path: str) -> None:
        model = self._full_state(self.model)
        critic = None
        if self.value_head is not None:
            separate = self.algo.critic_mode == "separate"
            critic = {
                "head": self._full_state(self.value_head),
                "trunk": self._full_state(self.critic_trunk) if separate else None,
            }
        ref = self._full_state(self.ref) if self.ref is not None and self.algo.ref_reset_every else None
        optimizer = self.opt.state_dict()
        optimizer["state"] = {
            i: {k: _full(v).cpu() if torch.is_tensor(v) else v for k, v in entry.items()}
            for i, entry in optimizer["state"].items()
        }
        if self.rank != 0:
            return
        self.model.save_pretrained(path, state_dict=model)
        config = Path(path) / "config.json"  # the FSDP class's name would be written: the model's
        data = json.loads(config.read_text())
        data["architectures"] = [self._arch.removeprefix("FSDP")]
        config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        state = {
            "optimizer": optimizer,
            "scheduler": self.sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "updates": self.updates,
            "critic": critic,
            "ref": ref,
        }
        torch.save(state, Path(path) / LEARNER_STATE)


class LearnerRank:
    """One rank's Ray actor: joins the process group, then holds a `ShardedLearner`."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world = rank, world_size
        self.learner: ShardedLearner | None = None

    def address(self) -> tuple[str, int]:
        """This node's address and a free port: where the other ranks find rank 0."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def setup(self, address: str, port: int, model_dir: str, timeout_s: float, **kwargs) -> None:
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(0)  # Ray shows each rank its own GPU
        dist.init_process_group(
            "nccl" if cuda else "gloo",
            init_method=f"tcp://{address}:{port}",
            rank=self.rank,
            world_size=self.world,
            timeout=timedelta(seconds=timeout_s),
        )
        self.learner = ShardedLearner(model_dir, **kwargs)

    def call(self, method: str, *args, **kwargs):
        return getattr(self.learner, method)(*args, **kwargs)


LearnerRankActor = ray.remote(LearnerRank)


@ray.remote(num_cpus=0)
def _first(first, *others):
    """Rank 0's result once every rank is done (an error on any rank surfaces here)."""
    return first


class _Method:
    def __init__(self, ranks, name: str):
        self.ranks, self.name = ranks, name

    def remote(self, *args, **kwargs):
        # put once, not once per rank; ObjectRefs passed at the top level arrive resolved
        args = [a if isinstance(a, ray.ObjectRef) else ray.put(a) for a in args]
        refs = [r.call.remote(self.name, *args, **kwargs) for r in self.ranks]
        return _first.remote(*refs)


class LearnerGroup:
    """`world_size` learner ranks behind the interface of one `LearnerActor` handle:
    `group.<method>.remote(...)` runs the method on every rank and returns rank 0's ObjectRef."""

    def __init__(
        self,
        world_size: int,
        model_dir: str,
        *,
        num_cpus: float = 1,
        runtime_env: dict | None = None,
        bundles: list[dict] | None = None,
        strategy: str = "PACK",
        timeout_s: float = 1800,
        **learner_kwargs,
    ):
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= world_size else 0
        if bundles is None:
            bundles = [{"CPU": num_cpus, **({"GPU": 1} if gpus else {})} for _ in range(world_size)]
        self.pg = placement_group(bundles, strategy=strategy)
        ray.get(self.pg.ready(), timeout=timeout_s)
        self.ranks = [
            LearnerRankActor.options(
                num_cpus=bundles[i].get("CPU", 0),
                num_gpus=bundles[i].get("GPU", 0),
                runtime_env=runtime_env,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
            ).remote(i, world_size)
            for i in range(world_size)
        ]
        address, port = ray.get(self.ranks[0].address.remote())
        ray.get([r.setup.remote(address, port, model_dir, timeout_s, **learner_kwargs) for r in self.ranks])

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self.ranks, name)

    def nodes(self) -> list[str]:
        """The Ray node id of each rank."""
        return ray.get([r.node.remote() for r in self.ranks])

    def kill(self) -> None:
        from ray.util.placement_group import remove_placement_group

        for r in self.ranks:
            ray.kill(r)
        remove_placement_group(self.pg)


def start(cfg, model_dir: str, **learner_kwargs):
    """The run's learner: one `LearnerActor` (world_size 1, the plain path) or a `LearnerGroup`."""
    options = cluster.learner_options(cfg)
    rank_gpus = options["num_gpus"]
    if cfg.learner.world_size == 1:
        return LearnerActor.options(**options).remote(model_dir, **learner_kwargs)
    world = cfg.learner.world_size
    env_vars = options["runtime_env"]["env_vars"]  # the ranks compute at once: they split the threads
    env_vars["OMP_NUM_THREADS"] = str(max(1, int(env_vars["OMP_NUM_THREADS"]) // world))
    bundle = {"CPU": options["num_cpus"], **({"GPU": rank_gpus} if rank_gpus else {})}
    return LearnerGroup(
        world,
        model_dir,
        num_cpus=options["num_cpus"],
        runtime_env=options["runtime_env"],
        bundles=[dict(bundle) for _ in range(world)],
        **learner_kwargs,
    )


def kill(learner) -> None:
    if isinstance(learner, LearnerGroup):
        learner.kill()
    else:
        ray.kill(learner)
