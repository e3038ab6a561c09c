"""Metric names: the columns of `telemetry.load_metrics` and of every sink, defined once.

DESIGN.md makes the standard names a contract; everything that writes or reads a metric takes
its name from here. Per-step values unless marked cumulative.
"""

from __future__ import annotations

STEP = "step"
WALL_S = "time/wall_s"  # cumulative seconds of training steps (evaluation excluded)
FLOPS = "compute/flops"  # cumulative training compute (rlscale.accounting), the fits' x-axis
EVAL_FLOPS = "compute/eval_flops"  # cumulative evaluation compute, never on the training axis
EVAL_TRAIN_FLOPS = "eval/train_flops"  # training compute of the weights evaluated on this row
EVAL_S = "time/eval_s"  # seconds the evaluation on this row took (not in time/wall_s)
DEVICE_HOURS = "compute/device_hours"  # cumulative
SAMPLES = "samples"  # cumulative responses generated for training
TOKENS_GENERATED = "tokens/generated"  # cumulative
TOKENS_TRAINED = "tokens/trained"  # what the learner's forward pass computed this step

REWARD = "reward/mean"
REWARD_STD = "reward/std"
REWARD_FORMAT = "reward/format"
ACCURACY = "accuracy/mean"
ENTROPY = "entropy/mean"
RESPONSE_LENGTH = "response_length/mean"
TRUNCATED = "response_length/clip_ratio"

KL_OLD = "kl/old"
KL_REF = "kl/ref"
CLIP_FRACTION = "clip/fraction"
CLIP_LOW = "clip/low_fraction"
CLIP_HIGH = "clip/high_fraction"
GRAD_NORM = "grad_norm"
LOSS_POLICY = "loss/policy"
LR = "lr"
MISMATCH_KL = "mismatch/kl"  # sampler vs learner log-probs on the same tokens
STALENESS = "async/staleness"  # updates between the weights that sampled a batch and its update
STALENESS_MAX = "async/staleness_max"  # the largest staleness among the batches in flight
LEARNER_BUSY_S = "time/learner_busy_s"
SKIPPED_IN_UPDATE = "learner/skipped_updates"

ZERO_VARIANCE_GROUPS = "groups/zero_variance_fraction"
EFFECTIVE_SAMPLES = "batch/effective_samples"
VERIFIER_ERRORS = "verifier/errors"  # cumulative
VERIFIER_TIMEOUTS = "verifier/timeouts"  # cumulative
HACK_SUSPECTS = "verifier/hack_suspects"  # responses whose verdict carries hack-surface flags
WORKER_RESTARTS = "faults/worker_restarts"  # cumulative
SKIPPED_UPDATES = "faults/skipped_updates"  # cumulative

STEP_PARTS = ("rollout", "verify", "learn", "sync")  # what a step waited for; they add up


def step_time(part: str) -> str:
    """`time/<part>_s`: seconds this step waited for `part` (one of STEP_PARTS)."""
    return f"time/{part}_s"


def flops_part(part: str) -> str:
    """`compute/flops_<part>`: cumulative FLOPs of one phase (rlscale.accounting.PHASES)."""
    return f"compute/flops_{part}"


def staleness_hist(lag: int) -> str:
    """`async/staleness_hist/<lag>`: how many batches in flight (trained now or queued) have that lag."""
    return f"async/staleness_hist/{lag}"


def env_metric(label: str, name: str) -> str:
    """`env/<label>/<name>`: a metric of one component of a mixture."""
    return f"env/{label}/{name}"


STANDARD_METRICS = (
    STEP,
    WALL_S,
    FLOPS,
    SAMPLES,
    TOKENS_GENERATED,
    REWARD,
    REWARD_STD,
    ACCURACY,
    ENTROPY,
    RESPONSE_LENGTH,
    TRUNCATED,
    KL_OLD,
    CLIP_FRACTION,
    GRAD_NORM,
    LOSS_POLICY,
    LR,
    MISMATCH_KL,
    *(step_time(part) for part in STEP_PARTS),
)


def pass_at(k: int) -> str:
    """`eval/pass@k`: unbiased pass@k on the evaluation set."""
    return f"eval/pass@{k}"


def mean_at(k: int) -> str:
    """`eval/mean@k`: mean accuracy over k samples per evaluation task (the fitting target)."""
    return f"eval/mean@{k}"


# The x axes of the fits, the one definition of them (rlscale.fitting, the config's
# scaling.x, the CLI's --x): name -> (metric column, axis label)
X_AXES = {
    "flops": (FLOPS, "compute (FLOPs)"),
    "hours": (DEVICE_HOURS, "device-hours"),
    "steps": (STEP, "step"),
    "tokens": (TOKENS_GENERATED, "generated tokens"),
    "samples": (SAMPLES, "samples"),
    "wall": (WALL_S, "wall-clock time (s)"),
}
