"""Telemetry: one record per step, appended crash-safely to `<run_dir>/metrics.jsonl`.

Each record is one JSON line, flushed and fsynced before the step counts as done, so a killed
run loses at most the step in flight. `load_metrics` reads it into pandas; if a resumed run
re-recorded steps, the last record of each step wins.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rlscale import accounting
from rlscale import metric_names as M
from rlscale.config_io import flatten_dotted
from rlscale.metric_names import STANDARD_METRICS  # noqa: F401  (the contract's columns)

METRICS_FILE = "metrics.jsonl"


@dataclass
class Totals:
    """Cumulative counters (the x-axes of scaling curves) and fault counts; checkpointed."""

    step: int = 0
    flops: float = 0.0
    eval_flops: float = 0.0
    samples: int = 0
    tokens_generated: int = 0
    wall_s: float = 0.0
    verifier_errors: int = 0
    verifier_timeouts: int = 0
    worker_restarts: int = 0
    skipped_updates: int = 0
    consecutive_skips: int = 0
    flops_by_part: dict = field(default_factory=dict)


def step_record(
    step: int, totals: Totals, got, stats: dict, times: dict, *, algo, n_params: int, lora_params: int = 0
) -> dict:
    """The step's metrics record from what was collected (`collect.Collected`), the learner's
    stats and the step's times; adds the step to `totals` (the cumulative columns)."""
    samples = [s for g in got.groups for s in g.samples]
    lengths = [len(s.token_ids) for s in samples]
    sc = got.scores
    prompt_tokens = sum(len(g.prompt) for g in got.groups)
    flops = accounting.step_flops(
        algo,
        n_params,
        generated_tokens=prompt_tokens + sum(lengths),
        trained_tokens=stats.get(M.TOKENS_TRAINED, 0.0),
        lora_params=lora_params,
    )
    for part, value in flops.items():
        totals.flops_by_part[part] = totals.flops_by_part.get(part, 0.0) + value
        totals.flops += value
    totals.samples += len(samples)
    totals.tokens_generated += sum(lengths)
    totals.wall_s += times["total"]
    totals.verifier_errors += int(sc.errors.sum())
    totals.verifier_timeouts += int(sc.timeouts.sum())
    totals.step = step
    # torch-heavy stages, imported here so that `load_metrics` (fit, plot) stays light
    from rlscale.advantages import zero_variance_groups
    from rlscale.collect import per_env_metrics

    return {
        M.STEP: step,
        M.WALL_S: totals.wall_s,
        M.FLOPS: totals.flops,
        **{M.flops_part(part): v for part, v in totals.flops_by_part.items()},
        M.EVAL_FLOPS: totals.eval_flops,
        M.DEVICE_HOURS: accounting.device_hours(totals.wall_s, accounting.device_count()),
        M.SAMPLES: totals.samples,
        M.TOKENS_GENERATED: totals.tokens_generated,
        M.REWARD: float(sc.rewards.mean()),
        M.REWARD_STD: float(sc.rewards.std()),
        M.ACCURACY: float(sc.correct.mean()),
        M.RESPONSE_LENGTH: sum(lengths) / len(lengths),
        M.TRUNCATED: sum(s.truncated for s in samples) / len(samples),
        M.ZERO_VARIANCE_GROUPS: float(zero_variance_groups(sc.rewards).float().mean()),
        M.EFFECTIVE_SAMPLES: len(got.batch),
        M.VERIFIER_ERRORS: totals.verifier_errors,
        M.VERIFIER_TIMEOUTS: totals.verifier_timeouts,
        M.HACK_SUSPECTS: int(sc.hack_suspects.sum()),
        M.WORKER_RESTARTS: totals.worker_restarts,
        M.SKIPPED_UPDATES: totals.skipped_updates,
        M.REWARD_FORMAT: float(sc.formatted.mean()),
        M.STALENESS: got.staleness,
        **per_env_metrics(got.tasks, sc),
        **stats,
        **{M.step_time(k): v for k, v in times.items() if k != "total"},
    }


def _clean(value):
    """JSON has no NaN/inf; store them as null so every reader agrees."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class TelemetryError(OSError):
    pass


def truncate_metrics(run_dir: str | Path, last_step: int) -> int:
    """Keep records up to `last_step` (a resume point); returns how many were dropped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                keep = json.loads(line)["step"] <= last_step
            except (json.JSONDecodeError, KeyError, TypeError):
                keep = False
            if keep:
                kept.append(line)
            else:
                dropped += 1
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)  # atomic: the old file stays whole until the new one is complete
    return dropped


def _drop_torn_tail(path: Path) -> None:
    """A process killed mid-write leaves a partial last line; cut it before appending."""
    if not path.is_file():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


class MetricsWriter:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(self.path)
        # unbuffered: a failed write leaves nothing pending that a later flush could append
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict) -> None:
        line = (json.dumps({k: _clean(v) for k, v in record.items()}, sort_keys=False) + "\n").encode()
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as err:
            _drop_torn_tail(self.path)  # leave the file ending on the last whole record
            raise TelemetryError(
                f"could not append step {record.get('step')} to {self.path}: {err.strerror or err}. "
                "Every record written before it is intact."
            ) from err

    def close(self) -> None:
        os.close(self._fd)


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """One row per step, columns named as in DESIGN.md (rlscale.metric_names)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {METRICS_FILE}; is this a run directory?")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line from a killed process
                continue
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame = frame.drop_duplicates(M.STEP, keep="last").sort_values(M.STEP)
    return frame.reset_index(drop=True)


class Sinks:
    """Optional mirrors of every record (TensorBoard, MLflow file store, W&B offline).

    Same metric names as the run store. A sink that fails is reported once and switched off;
    it never stops the run.
    """

    def __init__(self, names: list[str], run_dir: Path, run_name: str, config: dict, warn=print):
        self.warn, self._sinks = warn, {}
        for name in names:
            self._guard(
                name, lambda name=name: self._sinks.__setitem__(name, _SINKS[name](run_dir, run_name, config))
            )

    def _guard(self, name: str, action) -> None:
        try:
            action()
        except Exception as err:  # a sink is never worth losing the run for
            self._sinks.pop(name, None)
            self.warn(f"telemetry sink {name!r} failed ({err!r}); continuing without it")

    def write(self, record: dict) -> None:
        numeric = {k: float(v) for k, v in record.items() if isinstance(v, int | float) and k != M.STEP}
        for name, sink in list(self._sinks.items()):
            self._guard(name, lambda sink=sink: sink.log(numeric, int(record[M.STEP])))

    def close(self) -> None:
        for name, sink in list(self._sinks.items()):
            self._guard(name, sink.close)


class _TensorBoard:
    def __init__(self, run_dir: Path, run_name: str, config: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, metrics: dict, step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, run_dir: Path, run_name: str, config: dict):
        import mlflow

        # a plain directory next to the run, readable with `mlflow ui --backend-store-uri`; recent
        # MLflow wants an explicit opt-in for the file store (its SQL store needs a server stack)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = mlflow.MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
        experiment = self.client.get_experiment_by_name("rlscale")
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment("rlscale")
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        for key, value in flatten_dotted(config).items():
            self.client.log_param(self.run_id, key, str(value)[:500])

    def log(self, metrics: dict, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        # MLflow names allow letters, digits, _ - . / and space: pass@k becomes pass_at_k
        batch = [Metric(k.replace("@", "_at_"), v, now, step) for k, v in metrics.items() if math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=batch)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class _Wandb:
    def __init__(self, run_dir: Path, run_name: str, config: dict):
        import wandb

        self.run = wandb.init(
            mode="offline",
            dir=str(run_dir),
            project="rlscale",
            name=run_name,
            config=config,
            reinit="create_new",
        )

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


_SINKS = {"tensorboard": _TensorBoard, "mlflow": _MLflow, "wandb": _Wandb}
