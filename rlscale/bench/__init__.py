"""`rlscale bench ...`: performance measured against a peer in the same run, as a ratio.

rollout    generation tokens/s: the vLLM rollout actor vs transformers `generate`
e2e        GRPO steps/s: rlscale's orchestrator vs TRL's GRPOTrainer, same model, prompts, settings
learner    training tokens/s and FLOP/s of the learner vs the matmul peak measured here (MFU)
breakdown  where a run's step time goes: rollout, verify, learn, sync, other
verify     verifier throughput: math verifications/s by kind, sandboxed programs/s
"""

from __future__ import annotations

from rlscale.bench.breakdown import bench_breakdown
from rlscale.bench.e2e import bench_e2e
from rlscale.bench.learner import bench_learner
from rlscale.bench.rollout import bench_rollout
from rlscale.bench.verify import bench_verify

BENCHES = {
    "rollout": bench_rollout,
    "e2e": bench_e2e,
    "learner": bench_learner,
    "breakdown": bench_breakdown,
    "verify": bench_verify,
}
