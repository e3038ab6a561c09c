"""The run directory `<output_dir>/<name>/`: created or resumed, and the summary written at the end.

A fresh run refuses a directory that already holds one; a resume restarts from the newest valid
checkpoint and cuts the metrics back to it, so steps stay contiguous.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlscale import checkpoint
from rlscale import metric_names as M
from rlscale.config import RunConfig
from rlscale.config_io import save_config
from rlscale.telemetry import METRICS_FILE, Totals, load_metrics, truncate_metrics


def prepare(cfg: RunConfig, *, resume: bool, log=print) -> tuple[Totals, Path | None]:
    """(the counters to continue from, the checkpoint to start from or None)."""
    run_dir = cfg.run_dir
    if (run_dir / METRICS_FILE).is_file() and not resume:
        raise FileExistsError(
            f"{run_dir} already holds a run; continue it with `rlscale run --resume "
            f"{run_dir}` or choose another `name`/`output_dir`"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    if not resume:
        return Totals(), None
    ckpt = checkpoint.latest_valid(run_dir / "checkpoints", log=log)
    if ckpt is None:
        log(f"{run_dir}: no usable checkpoint; starting again from step 0")
        truncate_metrics(run_dir, 0)
        return Totals(), None
    totals = Totals(**checkpoint.driver_state(ckpt)["totals"])
    dropped = truncate_metrics(run_dir, totals.step)
    log(
        f"resuming {run_dir} from {ckpt.name} (step {totals.step}); "
        f"{dropped} metric records after it will be recorded again"
    )
    return totals, ckpt


def finish(
    cfg: RunConfig,
    *,
    model_dir: Path,
    n_params: int,
    last_ckpt: Path | None,
    stopped: str | None,
    log=print,
) -> dict:
    """metrics.parquet, the plots and summary.json; returns the summary."""
    import time

    from rlscale.plots import plot_run

    run_dir = cfg.run_dir
    frame = load_metrics(run_dir)
    frame.to_parquet(run_dir / "metrics.parquet")
    log(f"fitting the curves and plotting into {run_dir / 'plots'} ...")
    start = time.perf_counter()
    plots = plot_run(run_dir, frame)
    log(f"fitting the curves and plotting: {time.perf_counter() - start:.1f} s")
    train = frame[frame[M.STEP] > 0]  # step 0, where present, is the base model's evaluation
    tail = max(1, len(train) // 10)
    summary = {
        "name": cfg.name,
        "steps": int(train[M.STEP].max()),
        "wall_s": float(train[M.WALL_S].iloc[-1]),
        "reward_first_10pct": float(train[M.REWARD].head(tail).mean()),
        "reward_last_10pct": float(train[M.REWARD].tail(tail).mean()),
        "reward_best": float(train[M.REWARD].max()),
        "accuracy_last_10pct": float(train[M.ACCURACY].tail(tail).mean()),
        "entropy_last": float(train[M.ENTROPY].iloc[-1]),
        "compute_flops": float(train[M.FLOPS].iloc[-1]),
        "model": str(model_dir),
        "params": n_params,
        "run_dir": str(run_dir),
        "metrics": str(run_dir / METRICS_FILE),
        "checkpoint": str(last_ckpt) if last_ckpt else None,
        "plots": [str(p) for p in plots],
        "stopped_early": stopped,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
