"""Code verifier: untrusted programs run in a sandbox; their tests never run beside them.

The trust boundary between a program and its tests, and the two sandboxed scripts that keep it:
rlscale.verifiers.judge; the sandbox itself (bubblewrap, seccomp, rlimits, uid):
rlscale.verifiers.sandbox, with a cgroup per sandbox from rlscale.verifiers.cgroup.

- `verify(program, tests)`: `program` runs as `__main__` in its sandbox; `tests` run in the
  judge's, where a name the tests do not define resolves first to Python's builtins (the program
  cannot shadow `abs` or `isinstance` for them), then to the program's global of that name: a
  function becomes a proxy whose calls cross as plain data, plain data is copied, anything
  else (a module, a class instance, an object equal to everything) is a TypeError. Arguments
  are copies: a function that mutates its argument in place is not seen to. `unittest.main()`
  at the end of the tests works; it runs the judge's own unittest.
- `verify_io(program, cases)`: one sandboxed run per case, stdin in, stdout compared here
  (exact, whitespace-normalised or float tolerance), each case with its own time limit.
- `run_program(program, stdin)`: one sandboxed run and what it printed (the Python-tool env).

Fail closed: without a working sandbox (bwrap, cgroups, seccomp) verification refuses, unless
`require_sandbox(allow_unsandboxed=True)` (config `verify.allow_unsandboxed: true`) allowed
running programs unisolated from this machine (host files, network, the caller's /proc),
with rlimits and, where cgroups work, the cgroup limits and cleanup.

Hack telemetry (`Verdict.flags`, information only, never part of the score), a program's
source scanned by the verifier plus audit events inside the sandbox (which a program could hide):
  exit                 sys.exit / os._exit / quit / SystemExit / os.abort
  signal               os.kill, killpg, signal handlers
  settrace             sys.settrace / setprofile, frame.f_trace
  frame-introspection  sys._getframe, f_back, tb_frame, gc.get_referrers (reaching other code's state)
  test-framework       unittest / pytest / doctest, assert* methods, TestCase
  own-source           __file__, inspect.getsource, linecache, opening its own file
  proc                 /proc
  always-equal         defines __eq__ / __ne__ (an object equal to everything)
  died-during-tests    the program exited while its tests were running
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack

from rlscale.verifiers import Verdict
from rlscale.verifiers.cgroup import cgroup_problem
from rlscale.verifiers.judge import RUNNER, judged
from rlscale.verifiers.sandbox import (
    MAX_FILE_BYTES,
    Fds,
    Run,
    Sandbox,
    clean,
    run_problem,
    scratch_folder,
    seccomp_filter,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 1024
COMPARE_MODES = ("exact", "whitespace", "float")

_lock = threading.Lock()
_allow_unsandboxed = False


def require_sandbox(allow_unsandboxed: bool) -> None:
    """Call at the start of a run that verifies code: refuse (RuntimeError) without a working
    sandbox, or, if the config allows it, warn and run programs unisolated from now on."""
    global _allow_unsandboxed
    problem = sandbox_problem()
    if problem is None:
        return
    if not allow_unsandboxed:
        raise RuntimeError(
            f"code verification needs the sandbox, which cannot run here ({problem}); "
            "set verify.allow_unsandboxed: true to run model-written programs on this machine "
            "with resource limits only"
        )
    _allow_unsandboxed = True
    log.warning(
        "code sandbox unavailable (%s): model-written programs run UNSANDBOXED on this machine", problem
    )
    print(f"WARNING: code sandbox unavailable ({problem}); programs run UNSANDBOXED", file=sys.stderr)


def sandbox_problem() -> str | None:
    """Why the sandbox cannot run here, or None (checked once per process)."""
    with _lock:
        return _probe()


def verify(
    program: str,
    tests: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> Verdict:
    """`program` in the sandbox, `tests` in the judge; a pass is the tests running to their end."""
    try:
        if not isinstance(program, str) or not isinstance(tests, str):
            raise TypeError("program and tests must be str")
        refusal = _refusal()
        if refusal:
            return Verdict.wrong(refusal)
        return judged(program, tests, timeout_s, memory_mb, sandbox_problem() is None)
    except Exception as error:  # a verifier never raises on model output
        return Verdict.wrong(f"sandbox error: {error!r}")


def verify_io(
    program: str,
    cases: Sequence[tuple[str, str]],
    *,
    timeout_s: float = 2.0,
    compare: str = "whitespace",
    rel_tol: float = 1e-6,
    memory_mb: int = DEFAULT_MEMORY_MB,
) -> Verdict:
    """Run `program` once per (stdin, expected stdout) case, each within timeout_s, and compare
    its stdout here: "exact" (up to trailing newlines), "whitespace" (the same tokens), "float"
    (tokens equal, or numbers within rel_tol). Correct when every case passes; stops at the
    first case that fails."""
    if compare not in COMPARE_MODES:
        raise ValueError(f"compare must be one of {COMPARE_MODES}, not {compare!r}")
    try:
        if not isinstance(program, str):
            raise TypeError("program must be str")
        refusal = _refusal()
        if refusal:
            return Verdict.wrong(refusal)
        flags: set[str] = set()
        for number, (stdin, expected) in enumerate(cases, 1):
            run = run_program(program, stdin, timeout_s=timeout_s, memory_mb=memory_mb)
            flags.update(run.flags)
            problem = run_problem(run, timeout_s, memory_mb)
            if problem is None and not _same_output(run.stdout, expected, compare, rel_tol):
                got = clean(run.stdout[:200].decode("utf-8", errors="replace"))
                problem = f"wrong output: expected {clean(expected[:100])!r}, got {got!r}"
            if problem:
                return Verdict(0.0, False, f"case {number}/{len(cases)}: {problem}", tuple(sorted(flags)))
        return Verdict(1.0, True, f"passed {len(cases)} cases", tuple(sorted(flags)))
    except Exception as error:
        return Verdict.wrong(f"sandbox error: {error!r}")


def run_program(
    program: str, stdin: str = "", *, timeout_s: float = 2.0, memory_mb: int = DEFAULT_MEMORY_MB
) -> Run:
    """Run `program` as __main__ in the sandbox with `stdin`; raises RuntimeError if refused."""
    refusal = _refusal()
    if refusal:
        raise RuntimeError(refusal)
    with scratch_folder() as scratch:
        (scratch / "stdin").write_text(stdin, encoding="utf-8", errors="replace")
        with open(scratch / "stdin", "rb") as stdin_file, Fds() as fds, ExitStack() as cleanup:
            sandboxed = sandbox_problem() is None
            sandbox = Sandbox(
                scratch, RUNNER, program, "main.py", timeout_s, memory_mb, sandboxed, fds, cleanup
            )
            sandbox.start(stdin_file, {"mode": "run"})
            sandbox.wait(time.monotonic() + timeout_s)
            run = sandbox.result()
            with open(sandbox.folder / "stdout", "rb") as file:
                return dataclasses.replace(run, stdout=file.read(MAX_FILE_BYTES))


def _refusal() -> str | None:
    problem = sandbox_problem()
    if problem and not _allow_unsandboxed:
        return f"refused: no code sandbox here ({problem}) and verify.allow_unsandboxed is not set"
    return None


def _same_output(stdout: bytes, expected: str, compare: str, rel_tol: float) -> bool:
    got = stdout.decode("utf-8", errors="replace")
    if compare == "exact":
        return got.rstrip("\n") == expected.rstrip("\n")
    got_tokens, expected_tokens = got.split(), expected.split()
    if compare == "whitespace" or len(got_tokens) != len(expected_tokens):
        return got_tokens == expected_tokens
    return all(_same_token(a, b, rel_tol) for a, b in zip(got_tokens, expected_tokens))


def _same_token(got: str, expected: str, rel_tol: float) -> bool:
    if got == expected:
        return True
    try:
        return math.isclose(float(got), float(expected), rel_tol=rel_tol, abs_tol=rel_tol)
    except ValueError:
        return False


@functools.cache
def _probe() -> str | None:
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian package bubblewrap)"
    try:
        seccomp_filter()
    except (ImportError, OSError) as error:
        return f"no seccomp filter ({error}); pip install pyseccomp, apt install libseccomp2"
    problem = cgroup_problem()
    if problem:
        return problem
    verdict = judged("x = 1", "assert x == 1", 60.0, DEFAULT_MEMORY_MB, sandboxed=True)
    return None if verdict.correct else f"the sandbox fails its probe: {verdict.reason}"
