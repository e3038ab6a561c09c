"""Rollout: vLLM engines in Ray actors, and the pool that generates over all of them.

The engine runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) so the learner's weights can
be loaded into it in place, with no disk round trip: copied into the parameters on CPU,
through vLLM's `reload_weights` on GPUs.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import ray
import torch

from rlscale.batch import Sample
from rlscale.models import resolve_dtype


@dataclass(frozen=True)
class Sampling:
    """How to sample: the rollout's settings, or evaluation's own."""

    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()  # text that ends a response (multi-turn: where an action ends)
    stop_token_ids: tuple[int, ...] = ()  # tokens that end a response besides the EOS
    ignore_eos: bool = False  # benchmarks: every sample runs max_tokens


@dataclass
class FlatWeights:
    """A model's parameters as one contiguous buffer: one object through Ray, not one per tensor.

    The buffer is a numpy array because Ray hands numpy out of its object store without a copy
    (measured 15 ms for 14 MB between actors, against 41-63 ms for the same torch tensor);
    bf16 travels as int16 bits, which numpy has.
    """

    names: list[str]
    shapes: list[tuple[int, ...]]
    dtype: str
    buffer: np.ndarray

    @staticmethod
    def of(named: list[tuple[str, torch.Tensor]]) -> FlatWeights:
        flat = torch.cat([t.detach().reshape(-1) for _, t in named]).to("cpu")
        bits = flat.view(torch.int16) if flat.dtype == torch.bfloat16 else flat
        shapes = [tuple(t.shape) for _, t in named]
        return FlatWeights(
            [n for n, _ in named], shapes, str(flat.dtype).removeprefix("torch."), bits.numpy()
        )

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """(name, view into the buffer) pairs: no copies. Read-only when Ray delivered it."""
        with warnings.catch_warnings():  # torch warns that Ray's array is read-only; nothing writes
            warnings.simplefilter("ignore", UserWarning)
            flat = torch.from_numpy(self.buffer)
        if self.dtype == "bfloat16":
            flat = flat.view(torch.bfloat16)
        sizes = [math.prod(s) for s in self.shapes]
        return [(n, v.view(s)) for n, v, s in zip(self.names, torch.split(flat, sizes), self.shapes)]


def _copy_weights(worker, named: list[tuple[str, torch.Tensor]]) -> None:
    """Runs in the engine's worker: HF-named tensors into vLLM's (fused) parameters."""
    worker.model_runner.model.load_weights(iter(named))


class RolloutEngine:
    """A vLLM engine that samples G responses per prompt and takes weights in place."""

    def __init__(
        self,
        model_dir: str,
        *,
        seed: int,
        max_model_len: int,
        kv_cache_gib: float,
        tensor_parallel_size: int = 1,
        sleep_mode: bool = False,
    ):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gib))))
        from vllm import LLM

        self.in_place = not torch.cuda.is_available()
        if self.in_place:
            # vLLM's CPU backend repacks each linear weight for oneDNN and drops the original, so
            # every sync re-ran the packing (measured 41 ms for builtin:small, 1 thread). With
            # torch's linear the weights stay plain parameters that a sync copies into (5 ms),
            # and generation measured no slower.
            import vllm._custom_ops

            vllm._custom_ops._supports_onednn = False
        self.llm = LLM(
            model=model_dir,
            dtype=str(resolve_dtype()).removeprefix("torch."),
            max_model_len=max_model_len,
            seed=seed,
            enforce_eager=not torch.cuda.is_available(),
            enable_prefix_caching=True,  # a group shares its prompt
            logprobs_mode="processed_logprobs",  # after temperature/top-p: what was sampled from
            gpu_memory_utilization=0.5,
            tensor_parallel_size=tensor_parallel_size,  # >1: GPUs only (refused at run start on CPU)
            enable_sleep_mode=sleep_mode,  # colocated mode, CUDA only (refused at run start on CPU)
            # a prefill split across engine steps makes vLLM rewind the request's seeded
            # generator, which CPU generators cannot do: give every step room for whole prompts
            max_num_batched_tokens=max(8192, max_model_len * 256),
        )

    def generate(
        self, prompts: list[list[int]], *, n: int, sampling: Sampling, seeds: list[int]
    ) -> list[list[Sample]]:
        """`n` samples for each prompt; a sample's tokens are exactly those sampled, stop token
        included, with the sampler's log-prob of each."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(
                n=n,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                logprobs=0,
                seed=s,
                # the collect stage decodes what it verifies; text here is waste, unless stop
                # strings need it (a string may span several tokens of a BPE tokenizer)
                detokenize=bool(sampling.stop),
                stop=list(sampling.stop) or None,
                include_stop_str_in_output=True,  # the stop is part of what the policy wrote
                stop_token_ids=list(sampling.stop_token_ids) or None,
                ignore_eos=sampling.ignore_eos,
            )
            for s in seeds
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False
        )
        return [
            [
                Sample(
                    token_ids=list(c.token_ids),
                    logprobs=[lp[t].logprob for t, lp in zip(c.token_ids, c.logprobs)],
                    truncated=c.finish_reason == "length",
                )
                for c in out.outputs
            ]
            for out in outputs
        ]

    def ready(self) -> bool:
        """Answers once the engine has started (Ray runs no call before __init__ has returned)."""
        return True

    def sleep(self) -> None:
        """Colocated mode: weights to host memory and the KV cache dropped, the GPU left to the
        learner rank beside it (vLLM sleep level 1)."""
        self.llm.sleep(level=1)

    def wake_up(self) -> None:
        self.llm.wake_up()

    def load_weights(self, weights: FlatWeights) -> float:
        """Weights in place (vLLM re-packs them for its kernels); returns the seconds it took."""
        start = time.perf_counter()
        named = weights.tensors()
        if self.in_place:
            self.llm.collective_rpc(_copy_weights, args=(named,))
        else:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(named)})
        self.llm.reset_prefix_cache()  # cached KV came from the old weights
        return time.perf_counter() - start

    def sequence_logprobs(self, sequences: list[list[int]]) -> list[list[float]]:
        """Log-prob of every token after the first, under the engine's current weights."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        out = self.llm.generate(
            [TokensPrompt(prompt_token_ids=s) for s in sequences],
            SamplingParams(max_tokens=1, prompt_logprobs=0),
            use_tqdm=False,
        )
        return [
            [lp[t].logprob for t, lp in zip(seq[1:], o.prompt_logprobs[1:])] for seq, o in zip(sequences, out)
        ]


RolloutActor = ray.remote(RolloutEngine)


class EnginePool:
    """The rollout engines as one generator: prompts split over them, dead engines restarted.

    `start_engine(index)` makes a new actor; `current_weights()` is the learner's weights (an
    object ref) that a restarted engine loads; `on_restart(index, error)` is told of each restart.
    A step fails with RunStopped after `max_restarts` restarts of one engine in a row.
    """

    def __init__(
        self, start_engine, count: int, *, max_restarts: int, current_weights, on_restart, colocated=False
    ):
        self.start_engine, self.max_restarts = start_engine, max_restarts
        self.current_weights, self.on_restart = current_weights, on_restart
        self.colocated = colocated
        self.engines = [start_engine(i) for i in range(count)]

    @contextmanager
    def asleep(self):
        """Colocated: the engines sleep while the block runs (the learner's update) and wake after
        it, before the weight sync. Disaggregated: nothing."""
        if not self.colocated:
            yield
            return
        ray.get([engine.sleep.remote() for engine in self.engines])
        try:
            yield
        finally:
            ray.get([engine.wake_up.remote() for engine in self.engines])

    def generate(
        self, prompts: list[list[int]], *, n: int, sampling: Sampling, seeds: list[int]
    ) -> list[list[Sample]]:
        from rlscale.errors import RunStopped

        count = len(self.engines)
        bounds = [len(prompts) * k // count for k in range(count + 1)]
        parts: list = [None] * count
        for attempt in range(self.max_restarts + 1):
            pending = {
                i: self.engines[i].generate.remote(
                    prompts[bounds[i] : bounds[i + 1]],
                    n=n,
                    sampling=sampling,
                    seeds=seeds[bounds[i] : bounds[i + 1]],
                )
                for i in range(count)
                if parts[i] is None
            }
            for i, future in pending.items():
                try:
                    parts[i] = ray.get(future)
                except ray.exceptions.RayActorError as err:
                    if attempt == self.max_restarts:
                        raise RunStopped(f"rollout engine {i} died {attempt + 1} times in a row") from err
                    self._restart(i, err)
        return [group for part in parts for group in part]

    def wait_ready(self) -> None:
        """Until every engine has started (its model loaded and compiled); one that dies while
        starting is restarted, as in `generate`."""
        from rlscale.errors import RunStopped

        for i in range(len(self.engines)):
            for attempt in range(self.max_restarts + 1):
                try:
                    ray.get(self.engines[i].ready.remote())
                    break
                except ray.exceptions.RayActorError as err:
                    if attempt == self.max_restarts:
                        raise RunStopped(f"rollout engine {i} died {attempt + 1} times in a row") from err
                    self._restart(i, err)

    def _restart(self, index: int, err: Exception) -> None:
        """A dead engine is replaced and given the learner's current weights; the call retries."""
        self.on_restart(index, err)
        self.engines[index] = self.start_engine(index)
        ray.get(self.engines[index].load_weights.remote(self.current_weights()))

    def sync(self, weights) -> float:
        """The learner's weights (an object ref) into every engine; the seconds waited."""
        start = time.perf_counter()
        ray.get([engine.load_weights.remote(weights) for engine in self.engines])
        return time.perf_counter() - start

    def shutdown(self) -> None:
        for engine in self.engines:
            ray.kill(engine)
