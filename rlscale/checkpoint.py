"""Checkpoints: written atomically, verified on read, the previous one used if the last is bad.

`checkpoints/step_NNNNNN/` holds the HF model and tokenizer (loadable by transformers and
vLLM), `learner_state.pt` (optimizer, LR schedule, torch RNG), `driver_state.json` (step,
cumulative counters), with LoRA `adapter/` (the adapters; the model files are the merged
weights), for an off-policy run `sampled_ahead.pkl` (the batches sampled ahead), and a manifest
of every file's size and SHA-256 (subfolders included), written last. A
directory is built under a temporary name and renamed into place, so it is either whole or
absent; a checkpoint whose files no longer match its manifest is skipped with a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

MANIFEST = "rlscale_manifest.json"
DRIVER_STATE = "driver_state.json"


class CheckpointError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(path: Path) -> None:
    for file in path.iterdir():
        if file.is_dir():
            _fsync_tree(file)
            continue
        with open(file, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(root: Path, step: int, save_files: Callable[[Path], None], driver_state: dict, keep: int) -> Path:
    """Build `step_N` via `save_files(tmp_dir)` plus our state and manifest; rename; prune."""
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / f"step_{step:06d}", root / f".tmp_step_{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_files(tmp)
        (tmp / DRIVER_STATE).write_text(json.dumps(driver_state, indent=1))
        files = sorted(p for p in tmp.rglob("*") if p.is_file())  # subfolders too (LoRA's adapter/)
        manifest = {
            p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files
        }
        (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": manifest}, indent=1))
        _fsync_tree(tmp)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"could not write checkpoint {final}: {err.strerror or err}. Earlier checkpoints are intact."
        ) from err
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def problem(path: Path) -> str | None:
    """Why this checkpoint cannot be used, or None when every file matches its manifest."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return "no readable manifest (partial write?)"
    for name, meta in manifest.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != meta["bytes"] or _sha256(file) != meta["sha256"]:
            return f"{name} does not match its checksum"
    return None


def latest_valid(root: Path, log: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint that verifies; each newer broken one is reported and skipped."""
    for path in sorted(root.glob("step_*"), reverse=True):
        why = problem(path)
        if why is None:
            return path
        log(f"checkpoint {path.name} is unusable ({why}); falling back to the previous one")
    return None


def driver_state(path: Path) -> dict:
    return json.loads((path / DRIVER_STATE).read_text())
