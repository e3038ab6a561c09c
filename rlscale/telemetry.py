"""Telemetry: one record per step, appended crash-safely to `<run_dir>/metrics.jsonl`.

Each record is one JSON line, flushed and fsynced before the step counts as done, so a killed
run loses at most the step in flight. `load_metrics` reads it into pandas; if a resumed run
re-recorded steps, the last record of each step wins.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

METRICS_FILE = "metrics.jsonl"

STANDARD_METRICS = (
    "step",
    "time/wall_s",
    "compute/flops",
    "samples",
    "tokens/generated",
    "reward/mean",
    "reward/std",
    "accuracy/mean",
    "entropy/mean",
    "response_length/mean",
    "response_length/clip_ratio",
    "kl/old",
    "clip/fraction",
    "grad_norm",
    "loss/policy",
    "lr",
    "mismatch/kl",
    "time/rollout_s",
    "time/verify_s",
    "time/learn_s",
    "time/sync_s",
)


def _clean(value):
    """JSON has no NaN/inf; store them as null so every reader agrees."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()}, sort_keys=False)
        self._file.write(line + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """One row per step, columns named as in DESIGN.md (`reward/mean`, `entropy/mean`, ...)."""
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
    frame = frame.drop_duplicates("step", keep="last").sort_values("step")
    return frame.reset_index(drop=True)
