"""Code verifier: run a program followed by its tests, as one Python module, in a sandbox.

Clean exit of the whole module is a pass. The sandbox is bubblewrap: new pid, network, ipc
and uts namespaces, a read-only view of only the system and interpreter directories, a
private size-capped /tmp, a scrubbed environment. Inside, a small runner sets resource limits
(memory, CPU, processes, file size, open files), drops to an unused uid, and executes the
module. Output goes to files capped by RLIMIT_FSIZE, so it is never buffered unbounded.

Killing the sandbox's pid 1 makes the kernel kill every process in its pid namespace, however
it detached itself, and bwrap exits only once they are all gone: that is the wall-clock stop.

A module that exits early (`sys.exit(0)` before its tests) must not pass. After the module
has run to its end (or its tests called `unittest.main()`), the runner copies a random nonce
from an inherited pipe to another pipe; the caller requires it. The nonce never appears in
the source, the arguments or the environment. (Code that deliberately reads the runner's file
descriptors could forge it: this stops early exits, not a program aimed at this runner.)

Without a usable bubblewrap it falls back to resource limits alone, with a warning.
"""

from __future__ import annotations

import functools
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from rlscale.verifiers import Verdict

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 1024
MAX_PROCESSES = 32  # threads count too
MAX_OPEN_FILES = 256
MAX_FILE_BYTES = 16 << 20  # any file written, stdout and stderr included
TMP_BYTES = 64 << 20
REASON_TAIL_BYTES = 600
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache")
SANDBOX_SOURCE = "/sandbox/main.py"

# Runs first in the sandboxed interpreter; the marker line names its processes.
_RUNNER = r"""# rlscale-sandbox-runner
import json, os, resource, sys, traceback, types
config = json.loads(sys.argv[1])
for name, value in config["limits"].items():
    limit = getattr(resource, name)
    hard = resource.getrlimit(limit)[1]
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, value))
with open(config["source"], encoding="utf-8") as file:
    source = file.read()
if config["uid"]:
    os.setgroups([])
    os.setgid(config["uid"])
    os.setuid(config["uid"])
code = compile(source, config["source"], "exec")
module = types.ModuleType("__main__")
module.__file__ = config["source"]
sys.modules["__main__"] = module
sys.argv = ["main.py"]
try:
    exec(code, module.__dict__)
except SystemExit as stop:
    # unittest.main() ends passing tests with SystemExit(False); it counts as finishing only
    # when raised by a line of the tests themselves, not by the program under test.
    lines = [n for frame, n in traceback.walk_tb(stop.__traceback__)
             if frame.f_code.co_filename == config["source"]]
    if stop.code not in (None, 0) or not lines or lines[-1] < config["first_test_line"]:
        raise
os.write(config["done_fd"], os.read(config["nonce_fd"], 64))
"""


def verify(
    program: str,
    tests: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> Verdict:
    try:
        source = f"{program}\n\n{tests}\n"
        first_test_line = program.count("\n") + 3
        use_bwrap = _bwrap_problem() is None
        return _run(source, first_test_line, timeout_s, memory_mb, use_bwrap=use_bwrap)
    except Exception as error:  # a verifier never raises on model output
        return Verdict.wrong(f"sandbox error: {error!r}")


def verify_many(
    items: Iterable[tuple[str, str]],
    *,
    max_workers: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> list[Verdict]:
    """verify() for each (program, tests), at most max_workers (default: CPU count) at once."""
    items = list(items)
    workers = max(1, min(max_workers or os.cpu_count() or 1, len(items) or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda item: verify(*item, timeout_s=timeout_s, memory_mb=memory_mb), items))


def _run(source: str, first_test_line: int, timeout_s: float, memory_mb: int, *, use_bwrap: bool) -> Verdict:
    scratch_dir = tempfile.TemporaryDirectory(prefix="rlscale-sandbox-", ignore_cleanup_errors=True)
    with scratch_dir as scratch, ExitStack() as fds:

        def pipe() -> tuple[int, int]:
            ends = os.pipe()
            for end in ends:
                fds.callback(os.close, end)
            return ends

        scratch = Path(scratch)
        source_path = scratch / "main.py"
        source_path.write_text(source, encoding="utf-8", errors="replace")
        nonce = secrets.token_hex(16).encode()
        nonce_read, nonce_write = pipe()
        os.write(nonce_write, nonce)
        done_read, done_write = pipe()
        info_read, info_write = pipe()
        config = {
            "limits": {
                "RLIMIT_AS": memory_mb << 20,
                "RLIMIT_CPU": math.ceil(timeout_s) + 1,
                "RLIMIT_NPROC": MAX_PROCESSES,
                "RLIMIT_FSIZE": MAX_FILE_BYTES,
                "RLIMIT_NOFILE": MAX_OPEN_FILES,
                "RLIMIT_CORE": 0,
            },
            "source": SANDBOX_SOURCE if use_bwrap else str(source_path),
            # As root, drop to a uid no other process has, so RLIMIT_NPROC counts only ours.
            "uid": 100_000 + secrets.randbelow(1 << 30) if use_bwrap and os.geteuid() == 0 else 0,
            "first_test_line": first_test_line,
            "nonce_fd": nonce_read,
            "done_fd": done_write,
        }
        python = [sys.executable, "-I", "-B", "-c", _RUNNER, json.dumps(config)]
        if use_bwrap:
            command, cwd = _bwrap_command(source_path, info_write) + python, "/"
        else:
            command, cwd = python, scratch
        with open(scratch / "stdout", "wb") as stdout, open(scratch / "stderr", "wb") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                env={"PATH": "/usr/bin:/bin", "HOME": "/tmp" if use_bwrap else str(scratch)},
                pass_fds=(nonce_read, done_write, info_write),
                start_new_session=True,
            )
        try:
            returncode, timed_out = process.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            _kill_sandbox(process, info_read)
            returncode, timed_out = process.returncode, True
        finished = _read_now(done_read) == nonce
        tail = _tail(scratch / "stderr") or _tail(scratch / "stdout")
    return _verdict(returncode, timed_out, finished, tail, timeout_s, memory_mb)


def _bwrap_command(source_path: Path, info_fd: int) -> list[str]:
    if os.geteuid() == 0:
        # Every namespace but the user one: as root it would map the sandbox to host root,
        # whom RLIMIT_NPROC exempts. The runner instead drops to an unused uid, with these caps.
        isolation = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
        isolation += ["--unshare-cgroup-try", "--cap-drop", "ALL"]
        isolation += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        isolation = ["--unshare-all"]
    command = ["bwrap", *isolation, "--die-with-parent", "--new-session", "--clearenv"]
    command += ["--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp"]
    command += ["--proc", "/proc", "--dev", "/dev"]
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            command += ["--symlink", os.readlink(path), path]
        elif os.path.exists(path):
            command += ["--ro-bind", path, path]
    command += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for path in _interpreter_paths():
        command += ["--ro-bind", path, path]
    for folder in _folders_above(_interpreter_paths()):
        # bwrap copies the host's modes onto the folders it creates, e.g. /root's 0700.
        command += ["--chmod", "755", folder]
    command += ["--perms", "755", "--dir", os.path.dirname(SANDBOX_SOURCE)]
    command += ["--ro-bind", str(source_path), SANDBOX_SOURCE, "--chdir", "/tmp"]
    return command + ["--info-fd", str(info_fd), "--"]


@functools.cache
def _interpreter_paths() -> list[str]:
    """Directories the interpreter needs that the system paths do not already cover."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates.add(str(Path(sys.executable).resolve().parent.parent))
    kept: list[Path] = []
    for path in sorted(map(Path, candidates), key=lambda path: len(path.parts)):
        covered = [*map(Path, SYSTEM_PATHS), *kept]
        if path.is_dir() and not any(path.is_relative_to(parent) for parent in covered):
            kept.append(path)
    return [str(path) for path in kept]


def _folders_above(paths: list[str]) -> list[str]:
    """The folders bwrap creates to hold these paths (not / nor the /tmp tmpfs)."""
    folders = {str(parent) for path in paths for parent in Path(path).parents}
    return sorted(folders - {"/", "/tmp"})


def _kill_sandbox(process: subprocess.Popen, info_read: int) -> None:
    try:
        sandbox_init = json.loads(_read_now(info_read, 4096))["child-pid"]
    except (ValueError, KeyError, TypeError):
        sandbox_init = None  # no bwrap, or it did not get that far
    if sandbox_init and process.poll() is None:
        # SIGKILL to the namespace's pid 1 kills all of it; bwrap exits once everything is gone.
        os.kill(sandbox_init, signal.SIGKILL)
        try:
            process.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            pass
    try:  # not reaped yet, so its process group cannot have been reused
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _read_now(fd: int, limit: int = 64) -> bytes:
    """What a pipe holds right now (never waits: a writer may still have it open)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, limit)
    except BlockingIOError:
        return b""


def _tail(path: Path) -> str:
    with open(path, "rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - REASON_TAIL_BYTES))
        return file.read().decode("utf-8", errors="replace").strip()


def _verdict(
    returncode: int, timed_out: bool, finished: bool, tail: str, timeout_s: float, memory_mb: int
) -> Verdict:
    if timed_out:
        return Verdict.wrong(f"timeout after {timeout_s:g}s")
    if returncode == 0:
        if not finished:
            return Verdict.wrong("exited before the tests finished")
        return Verdict.right("passed")
    # A signal shows as -N without bwrap and as 128+N through bwrap.
    signal_number = -returncode if returncode < 0 else returncode - 128
    if "MemoryError" in tail:
        what = f"memory limit ({memory_mb} MB)"
    elif "File too large" in tail:
        what = f"output limit ({MAX_FILE_BYTES >> 20} MB per file)"
    elif 0 < signal_number < signal.NSIG:
        what = f"killed by signal {signal_number} ({signal.strsignal(signal_number)})"
    else:
        what = f"exit code {returncode}"
    return Verdict.wrong(f"{what}: {tail}" if tail else what)


_probe_lock = threading.Lock()


def _bwrap_problem() -> str | None:
    """Why bubblewrap cannot sandbox here, or None (checked once per process)."""
    with _probe_lock:
        return _probe_bwrap()


@functools.cache
def _probe_bwrap() -> str | None:
    if shutil.which("bwrap") is None:
        problem = "bwrap is not installed (Debian package bubblewrap)"
    else:
        verdict = _run("", 1, 60.0, DEFAULT_MEMORY_MB, use_bwrap=True)
        problem = None if verdict.correct else verdict.reason
    if problem:
        warnings.warn(
            f"code sandbox: bubblewrap unusable ({problem}); running untrusted code with "
            "resource limits only, NOT isolated from this machine",
            RuntimeWarning,
            stacklevel=4,
        )
    return problem
