"""Code verifier: untrusted programs run in a sandbox; their tests never run beside them.

Trust boundary. Everything inside the program's sandbox is the program's: its process, memory,
file descriptors, /proc view and anything it prints or sends may be forged. So the verdict is
never something the program says: function tests run in a *judge*, a second sandbox the program
cannot see (its own pid namespace, uid, filesystem and cgroup), which holds the program's
top-level names as proxies and exchanges only plain data with it over two pipes (JSON: None,
bool, int, float, str, bytes, list, tuple, dict, set, complex), decoded into the judge's own
builtin types; a pass is the judge's tests running to their end, reported on a pipe only the
judge holds. Input/output tests compare the program's stdout with the expected output in this
process. The program never sees its tests (they are not in its filesystem, argv or
environment), its channel to the judge carries no secret, and no exemption depends on file
names or line numbers. The tests are sandboxed as well: they may be hostile too.

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

The sandbox: bubblewrap with new pid, network, ipc, uts and cgroup namespaces, a read-only view
of only the system and interpreter directories, a private size-capped /tmp, a scrubbed
environment; a seccomp filter built by libseccomp (pyseccomp) and loaded by bwrap refuses
keyrings, namespaces, mounts, ptrace, bpf and the like; a cgroup per sandbox caps memory
(shared memory, memfd and /tmp included) and process count for the sandbox as a whole
(v2 where the host has memory and pids there, else v1); inside, the runner sets per-process
rlimits (CPU, file size, open files) and drops to an unused uid. Killing the sandbox's pid 1
kills its pid namespace; the cgroup is then emptied and removed.

Fail closed: without a working sandbox (bwrap, cgroups, seccomp) verification refuses, unless
`require_sandbox(allow_unsandboxed=True)` (config `verify.allow_unsandboxed: true`) allowed
running programs unisolated from this machine (host files, network, the caller's /proc),
with rlimits and, where cgroups work, the cgroup limits and cleanup.

Hack telemetry (`Verdict.flags`, information only, never part of the score), a program's
source scanned here plus audit events inside the sandbox (which a program could hide):
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

import contextlib
import dataclasses
import errno
import functools
import json
import logging
import math
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import unicodedata
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from rlscale.verifiers import Verdict

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 1024
MAX_PROCESSES = 32  # threads count too
MAX_OPEN_FILES = 256
MAX_FILE_BYTES = 16 << 20  # any file written, stdout and stderr included
TMP_BYTES = 64 << 20
REASON_TAIL_CHARS = 600
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache")
SANDBOX_SOURCE = "/sandbox/main.py"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = "rlscale-sandbox"
COMPARE_MODES = ("exact", "whitespace", "float")
# Isolated, without `site` (its .pth hooks cost more than the rest of start-up); the installed
# packages stay importable through an explicit path.
_PYTHON = (sys.executable, "-I", "-S", "-B", "-c")
_SITE_PACKAGES = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})

# Plain data across the boundary, shared by the runner and the judge. Only exact builtin
# types are encoded; decoding builds fresh builtin objects from JSON, whoever wrote it.
_CODEC = r"""
import json
def encode(value, ref=None):
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(item, ref) for item in value]
    if kind in (tuple, set, frozenset):
        return {"$": kind.__name__, "v": [encode(item, ref) for item in value]}
    if kind is dict:
        return {"$": "dict", "v": [[encode(k, ref), encode(v, ref)] for k, v in value.items()]}
    if kind is bytes:
        return {"$": "bytes", "v": value.hex()}
    if kind is complex:
        return {"$": "complex", "v": [value.real, value.imag]}
    if ref is not None and kind is ref:
        return {"$": "ref", "v": value.__name__}
    raise TypeError(f"a {kind.__name__[:40]} is not plain data")
def decode(data, resolve=None):
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        return [decode(item, resolve) for item in data]
    tag, value = data["$"], data["v"]
    if tag in ("tuple", "set", "frozenset"):
        return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](decode(v, resolve) for v in value)
    if tag == "dict":
        return {decode(k, resolve): decode(v, resolve) for k, v in value}
    if tag == "bytes":
        return bytes.fromhex(value)
    if tag == "complex":
        return complex(float(value[0]), float(value[1]))
    if tag == "ref" and resolve is not None:
        return resolve(str(value))
    raise ValueError(f"not plain data: {tag!r:.40}")
"""

# How both sandboxed scripts start (argv holds no secret: limits, uid, fd numbers, paths).
_PROLOGUE = r"""
import builtins, json, os, resource, sys, types
config = json.loads(sys.argv[1])
sys.path += config["path"]
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
"""

# The candidate: runs the program as __main__, then answers the judge's requests.
_RUNNER = (
    "# rlscale-sandbox-runner"
    + _PROLOGUE
    + _CODEC
    + r"""
import _sitebuiltins  # what `site` would have added (no site: it is slow to start)
builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
# Telemetry only: the program owns this process and can silence it.
flags, state = set(), {"active": True}
def flag(name):
    if name not in flags and state["active"]:
        flags.add(name)
        try:
            os.write(config["flags_fd"], name.encode() + b"\n")
        except OSError:
            pass
def audit(event, args):
    if event in ("sys.settrace", "sys.setprofile"):
        flag("settrace")
    elif event == "sys._getframe" and args[0].f_code.co_filename == "<string>":
        flag("frame-introspection")  # a frame of this runner
    elif event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], str):
        path = os.path.abspath(args[0])
        if path == "/proc" or path.startswith("/proc/"):
            flag("proc")
        elif path == config["source"]:
            flag("own-source")
    elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
        flag("signal")
    elif event == "import" and args[0].partition(".")[0] in ("unittest", "doctest", "pytest", "_pytest"):
        flag("test-framework")
sys.addaudithook(audit)
code = compile(source, config["source"], "exec")
module = types.ModuleType("__main__")
module.__file__ = config["source"]
sys.modules["__main__"] = module
sys.argv = ["main.py"]
try:
    exec(code, module.__dict__)
except SystemExit as stop:
    flag("exit")
    state["active"] = False
    raise
except BaseException:
    state["active"] = False  # printing the traceback reads the source: not the program's doing
    raise
if config["mode"] == "serve":
    requests = os.fdopen(config["request_fd"], "rb")
    replies = os.fdopen(config["reply_fd"], "wb", buffering=0)
    names = module.__dict__
    def describe(name):
        if name not in names:
            return {"kind": "missing"}
        value = names[name]
        if callable(value):
            return {"kind": "function"}
        try:
            return {"kind": "value", "value": encode(value)}
        except (TypeError, RecursionError):
            return {"kind": "other", "type": type(value).__name__}
    def answer(request):
        try:
            if "get" in request:
                return json.dumps(describe(request["get"]))
            function = names[request["call"]]
            args = decode(request["args"], names.__getitem__)
            kwargs = decode(request["kwargs"], names.__getitem__)
            return json.dumps({"value": encode(function(*args, **kwargs))})
        except BaseException as error:  # SystemExit from a called function fails its test
            try:
                return json.dumps({"raise": [type(error).__name__, str(error)[:2000]]})
            except BaseException:
                return json.dumps({"raise": ["TypeError", "an exception that cannot be shown"]})
    replies.write(b'{"loaded": true}\n')
    for line in requests:
        replies.write(answer(json.loads(line)).encode() + b"\n")
"""
)

# The judge: runs the tests in a sandbox of its own, where the program's names are proxies.
_JUDGE = (
    "# rlscale-sandbox-judge"
    + _PROLOGUE
    + _CODEC
    + r"""
requests = os.fdopen(config["request_fd"], "wb", buffering=0)
replies = os.fdopen(config["reply_fd"], "rb")
class ProgramGone(BaseException):
    # not an Exception: tests' own `except Exception` must not swallow it
    pass
class Function:
    def __init__(self, name):
        self.__name__ = self.__qualname__ = name
    def __repr__(self):
        return f"<program function {self.__name__}>"
    def __call__(self, *args, **kwargs):
        reply = ask({"call": self.__name__, "args": encode(list(args), Function),
                     "kwargs": encode(kwargs, Function)})
        if "raise" in reply:
            kind, message = map(str, reply["raise"])
            error = getattr(builtins, kind, None)
            if not (isinstance(error, type) and issubclass(error, Exception)):
                raise RuntimeError(f"the program raised {kind}: {message}")
            try:
                raise error(message)
            except TypeError:
                raise RuntimeError(f"the program raised {kind}: {message}") from None
        return decode(reply["value"])
def ask(request):
    try:
        requests.write(json.dumps(request).encode() + b"\n")
    except BrokenPipeError:
        raise ProgramGone from None
    line = replies.readline(config["max_reply"])
    if not line:
        raise ProgramGone
    if not line.endswith(b"\n"):
        raise ValueError("the program's reply is too large")
    reply = json.loads(line)
    if type(reply) is not dict:
        raise ValueError("malformed reply")
    return reply
class Namespace(dict):
    def __missing__(self, name):
        if hasattr(builtins, name):
            return getattr(builtins, name)
        reply = ask({"get": name})
        kind = reply.get("kind")
        if kind == "function":
            return Function(name)
        if kind == "value":
            return decode(reply["value"])
        if kind == "missing":
            raise NameError(f"name {name!r} is not defined")
        raise TypeError(f"the program's {name!r} is a {str(reply.get('type'))[:40]}: "
                        "only functions and plain data reach the tests")
class ModuleView:
    def __init__(self, names):
        self.__dict__ = names  # unittest.main() finds the tests' TestCases here
code = compile(source, config["source"], "exec")
names = Namespace(__name__="__main__", __file__=config["source"], __builtins__=builtins)
sys.modules["__main__"] = ModuleView(names)
sys.argv = [config["source"]]
outcome = "failed"
try:
    if replies.readline(64) != b'{"loaded": true}\n':
        outcome = "unloaded"
    else:
        exec(code, names)
        outcome = "passed"
except SystemExit as stop:
    if stop.code in (None, 0, False):
        outcome = "passed"
    else:
        print(f"the tests exited with {stop.code!r}", file=sys.stderr)
except ProgramGone:
    outcome = "gone"
except BaseException as error:
    import traceback
    traceback.print_exception(type(error), error, error.__traceback__.tb_next)  # from the tests' frame
sys.stderr.flush()
os.write(config["result_fd"], outcome.encode())
"""
)

# What a program's source mentions: hack surfaces (telemetry only; see the module docstring).
_SURFACES = {
    "exit": re.compile(r"\b(sys\.exit|_exit|exit\s*\(|quit\s*\(|SystemExit|abort\s*\()"),
    "signal": re.compile(r"\b(os\.kill|killpg|signal\.|pthread_kill)"),
    "settrace": re.compile(r"\b(settrace|setprofile|f_trace)\b"),
    "frame-introspection": re.compile(r"\b(_getframe|f_back|tb_frame|f_globals|f_locals|get_referrers)\b"),
    "test-framework": re.compile(r"\b(unittest|pytest|doctest|TestCase|assert[A-Z]\w*)\b"),
    "own-source": re.compile(r"(__file__|getsource|linecache|/sandbox/main)"),
    "proc": re.compile(r"/proc\b"),
    "always-equal": re.compile(r"\b__(eq|ne)__\b"),
}

# Syscalls a program has no business making; refused with EPERM (ENOSYS for clone3, so libc
# falls back to clone, whose namespace flags the filter can see).
_BLOCKED_SYSCALLS = (
    "keyctl", "add_key", "request_key", "unshare", "setns", "mount", "umount2", "pivot_root",
    "chroot", "ptrace", "process_vm_readv", "process_vm_writev", "bpf", "perf_event_open",
    "userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "open_by_handle_at", "name_to_handle_at", "swapon", "swapoff", "reboot",
    "acct", "quotactl", "syslog", "fsopen", "fsmount", "fspick", "open_tree", "move_mount",
    "mount_setattr", "io_uring_setup", "personality", "iopl", "ioperm", "lookup_dcookie",
)  # fmt: skip
_CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_TIOCSTI = 0x5412

_lock = threading.Lock()
_allow_unsandboxed = False


@dataclass(frozen=True)
class Run:
    """One sandboxed run: exit status, output (stdout capped at MAX_FILE_BYTES), hack flags."""

    returncode: int | None
    timed_out: bool
    stdout: bytes
    stderr_tail: str
    memory_exceeded: bool
    flags: tuple[str, ...]


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
        return _judged(program, tests, timeout_s, memory_mb, sandbox_problem() is None)
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
            problem = _run_problem(run, timeout_s, memory_mb)
            if problem is None and not _same_output(run.stdout, expected, compare, rel_tol):
                got = _clean(run.stdout[:200].decode("utf-8", errors="replace"))
                problem = f"wrong output: expected {_clean(expected[:100])!r}, got {got!r}"
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
    with _scratch() as scratch:
        (scratch / "stdin").write_text(stdin, encoding="utf-8", errors="replace")
        with open(scratch / "stdin", "rb") as stdin_file, _Fds() as fds, ExitStack() as cleanup:
            sandboxed = sandbox_problem() is None
            sandbox = _Sandbox(
                scratch, _RUNNER, program, "main.py", timeout_s, memory_mb, sandboxed, fds, cleanup
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


@contextlib.contextmanager
def _scratch():
    with tempfile.TemporaryDirectory(prefix="rlscale-sandbox-", ignore_cleanup_errors=True) as scratch:
        yield Path(scratch)


class _Fds:
    """Pipe ends this call owns; each closed exactly once (fd numbers are shared by threads)."""

    def __init__(self):
        self.open: set[int] = set()

    def pipe(self) -> tuple[int, int]:
        ends = os.pipe()  # not inheritable: a child gets only what pass_fds names
        self.open.update(ends)
        return ends

    def close(self, *fds: int) -> None:
        for fd in fds:
            if fd in self.open:
                self.open.discard(fd)
                os.close(fd)

    def __enter__(self) -> _Fds:
        return self

    def __exit__(self, *exc) -> None:
        self.close(*list(self.open))


class _Sandbox:
    """One script (the runner or the judge) on one source file, in bubblewrap and a cgroup of its
    own; start() launches it, wait() bounds it, result() tears it down."""

    def __init__(self, scratch, script, source, filename, timeout_s, memory_mb, sandboxed, fds, cleanup):
        self.script, self.program, self.sandboxed, self.fds, self.cleanup = (
            script,
            source,
            sandboxed,
            fds,
            cleanup,
        )
        self.folder = scratch / Path(filename).stem  # the host's copy; the sandbox sees only the file
        self.folder.mkdir()
        (self.folder / filename).write_text(source, encoding="utf-8", errors="replace")
        self.source, self.inside = self.folder / filename, f"{os.path.dirname(SANDBOX_SOURCE)}/{filename}"
        self.flags_read, self.flags_write = fds.pipe()
        self.info_read, self.info_write = fds.pipe()
        self.limits = {
            "RLIMIT_AS": memory_mb << 20,
            "RLIMIT_CPU": math.ceil(timeout_s) + 1,
            "RLIMIT_NPROC": MAX_PROCESSES,
            "RLIMIT_FSIZE": MAX_FILE_BYTES,
            "RLIMIT_NOFILE": MAX_OPEN_FILES,
            "RLIMIT_CORE": 0,
        }
        # unsandboxed (when allowed), a cgroup still caps memory and processes, and ends daemons
        self.cgroup = _Cgroup(memory_mb << 20, MAX_PROCESSES) if sandboxed or _cgroups_work() else None
        if self.cgroup:
            cleanup.callback(self.cgroup.remove)
        self.timed_out = False

    def start(self, stdin, extra: dict) -> None:
        """Launch; `extra` goes into the script's config (fds named "*_fd" are passed on)."""
        config = {
            "limits": self.limits,
            "source": self.inside if self.sandboxed else str(self.source),
            # drop to a uid no other process has: no capabilities, RLIMIT_NPROC counts only ours
            "uid": 100_000 + secrets.randbelow(1 << 30) if self.sandboxed and os.geteuid() == 0 else 0,
            "path": _SITE_PACKAGES,
            "flags_fd": self.flags_write,
            **extra,
        }
        passed = [value for key, value in config.items() if key.endswith("_fd")]
        python = [*_PYTHON, self.script, json.dumps(config)]
        if self.sandboxed:
            seccomp_read, seccomp_write = self.fds.pipe()
            os.write(seccomp_write, _seccomp_filter())
            self.fds.close(seccomp_write)
            bwrap = _bwrap_command(self.source, self.inside, self.info_write, seccomp_read)
            command, cwd = self.cgroup.wrap(bwrap + python), "/"
            passed += [self.info_write, seccomp_read]
        else:
            command, cwd = (self.cgroup.wrap(python) if self.cgroup else python), self.folder
        with open(self.folder / "stdout", "wb") as stdout, open(self.folder / "stderr", "wb") as stderr:
            self.process = subprocess.Popen(
                command,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=cwd,
                env={"PATH": "/usr/bin:/bin", "HOME": "/tmp" if self.sandboxed else str(self.folder)},
                pass_fds=passed,
                start_new_session=True,
            )
        self.cleanup.callback(self.kill)
        self.fds.close(*passed)  # the child holds them now; EOFs on the pipes depend on this

    def wait(self, deadline: float) -> None:
        if not _exits_by(self.process, deadline):
            self.timed_out = True
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            sandbox_init = json.loads(_read_now(self.info_read, 4096))["child-pid"]
        except (ValueError, KeyError, TypeError):
            sandbox_init = None  # no bwrap, or it did not get that far
        if sandbox_init and self.process.poll() is None:
            # SIGKILL to the namespace's pid 1 kills all of it; bwrap exits once everything is gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(sandbox_init, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
                return
        with contextlib.suppress(ProcessLookupError):  # not reaped yet: the group is still ours
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def result(self) -> Run:
        self.kill()
        memory_exceeded = bool(self.cgroup and self.cgroup.oom_killed())
        reported = set(_read_now(self.flags_read, 4096).decode(errors="replace").split("\n"))
        flags = {name for name, found in _SURFACES.items() if name in reported or found.search(self.program)}
        return Run(
            self.process.returncode,
            self.timed_out,
            b"",
            _tail(self.folder / "stderr") or _tail(self.folder / "stdout"),
            memory_exceeded,
            tuple(sorted(flags)),
        )


def _judged(program: str, tests: str, timeout_s: float, memory_mb: int, sandboxed: bool) -> Verdict:
    deadline = time.monotonic() + timeout_s
    with _scratch() as scratch, _Fds() as fds, ExitStack() as cleanup:
        request_read, request_write = fds.pipe()
        reply_read, reply_write = fds.pipe()
        result_read, result_write = fds.pipe()
        sandbox = _Sandbox(
            scratch, _RUNNER, program, "main.py", timeout_s, memory_mb, sandboxed, fds, cleanup
        )
        judge = _Sandbox(scratch, _JUDGE, tests, "tests.py", timeout_s, memory_mb, sandboxed, fds, cleanup)
        sandbox.start(
            subprocess.DEVNULL, {"mode": "serve", "request_fd": request_read, "reply_fd": reply_write}
        )
        judge.start(
            subprocess.DEVNULL,
            {
                "request_fd": request_write,
                "reply_fd": reply_read,
                "result_fd": result_write,
                "max_reply": MAX_FILE_BYTES,
            },
        )
        judge.wait(deadline)
        if judge.timed_out:
            sandbox.kill()
            return Verdict(0.0, False, f"timeout after {timeout_s:g}s", sandbox.result().flags)
        outcome = _read_now(result_read, 16).decode(errors="replace")
        if outcome in ("unloaded", "gone"):
            sandbox.wait(deadline)  # the program ended or closed its channel: how did it end?
        run, tests_run = sandbox.result(), judge.result()
        if outcome == "passed":
            return Verdict(1.0, True, "passed", run.flags)
        if outcome in ("unloaded", "gone"):
            flags = run.flags + (("died-during-tests",) if outcome == "gone" else ())
            problem = _run_problem(run, timeout_s, memory_mb) or "exited before the tests finished"
            return Verdict(0.0, False, problem, tuple(sorted(flags)))
        tail = tests_run.stderr_tail
        if run.memory_exceeded or tests_run.memory_exceeded or "MemoryError" in tail:
            problem = f"memory limit ({memory_mb} MB)"
        elif not outcome:  # the judge itself died
            problem = _run_problem(tests_run, timeout_s, memory_mb) or "tests did not report"
            tail = ""
        else:
            problem = "tests failed"
        return Verdict(0.0, False, f"{problem}: {tail}" if tail else problem, run.flags)


def _exits_by(process: subprocess.Popen, deadline: float) -> bool:
    """Whether process exits before deadline (monotonic). A pidfd wakes us as it exits, where
    Popen.wait(timeout) would poll with sleeps of up to 50 ms."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:  # already reaped
        return process.poll() is not None
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(max(0, math.ceil((deadline - time.monotonic()) * 1000)))
    finally:
        os.close(pidfd)
    try:
        process.wait(timeout=0 if time.monotonic() > deadline else 0.05)
        return True
    except subprocess.TimeoutExpired:
        return False


def _run_problem(run: Run, timeout_s: float, memory_mb: int) -> str | None:
    """What went wrong with a run, or None if it exited cleanly."""
    if run.timed_out:
        return f"timeout after {timeout_s:g}s"
    if run.returncode == 0:
        return None
    returncode, tail = run.returncode or 0, run.stderr_tail
    # a signal shows as -N without bwrap and as 128+N through bwrap
    signal_number = -returncode if returncode < 0 else returncode - 128
    if run.memory_exceeded or "MemoryError" in tail:
        what = f"memory limit ({memory_mb} MB)"
    elif "File too large" in tail:
        what = f"output limit ({MAX_FILE_BYTES >> 20} MB per file)"
    elif 0 < signal_number < signal.NSIG:
        what = f"killed by signal {signal_number} ({signal.strsignal(signal_number)})"
    else:
        what = f"exit code {returncode}"
    return f"{what}: {tail}" if tail else what


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


def _bwrap_command(source_path: Path, inside: str, info_fd: int, seccomp_fd: int) -> list[str]:
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
    command += ["--ro-bind", str(source_path), inside, "--chdir", "/tmp"]
    return command + ["--seccomp", str(seccomp_fd), "--info-fd", str(info_fd), "--"]


@functools.cache
def _seccomp_filter() -> bytes:
    """The BPF program, compiled by libseccomp: allow all but the syscalls above."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in _BLOCKED_SYSCALLS:
        with contextlib.suppress(ValueError, OSError):  # not in this kernel's table
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NAMESPACES:
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(
        seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI)
    )
    with tempfile.TemporaryFile() as file:
        rules.export_bpf(file)
        file.seek(0)
        return file.read()


class _Cgroup:
    """A cgroup for one sandbox, memory (+swap) and pids capped; v2 if the host has it, else v1."""

    def __init__(self, memory_bytes: int, max_pids: int):
        name = f"{CGROUP_NAME}/{uuid.uuid4().hex}"
        if _cgroup_v2():
            self.dirs = [CGROUP_ROOT / name]
            settings = {"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": max_pids}
        else:
            self.dirs = [CGROUP_ROOT / "memory" / name, CGROUP_ROOT / "pids" / name]
            settings = {"memory.limit_in_bytes": memory_bytes, "pids.max": max_pids}
            if (CGROUP_ROOT / "memory" / "memory.memsw.limit_in_bytes").exists():
                settings["memory.memsw.limit_in_bytes"] = memory_bytes
        try:
            for folder in self.dirs:
                folder.mkdir()
                for key, value in settings.items():
                    if (folder / key).exists():
                        (folder / key).write_text(str(value))
        except BaseException:
            self.remove()
            raise

    def wrap(self, command: list[str]) -> list[str]:
        """command, started inside this cgroup (a shell joins it, then execs the command)."""
        procs = [str(folder / "cgroup.procs") for folder in self.dirs]
        join = 'for f in "$@"; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift'
        return ["/bin/sh", "-c", join + '; exec "$@"', "sh", *procs, "--", *command]

    def oom_killed(self) -> bool:
        events = self.dirs[0] / ("memory.events" if _cgroup_v2() else "memory.oom_control")
        with contextlib.suppress(OSError, ValueError):
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def remove(self) -> None:
        for folder in self.dirs:
            for _ in range(200):
                try:
                    pids = (folder / "cgroup.procs").read_text().split()
                except FileNotFoundError:
                    break
                for pid in pids:  # normally none: the pid namespace died with its init
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy until the last process is reaped
                    time.sleep(0.005)


@functools.cache
def _cgroup_v2() -> bool:
    controllers = CGROUP_ROOT / "cgroup.controllers"
    return controllers.exists() and {"memory", "pids"} <= set(controllers.read_text().split())


def _cgroup_problem() -> str | None:
    if _cgroup_v2():
        parents = [CGROUP_ROOT / CGROUP_NAME]
        with contextlib.suppress(OSError):
            (CGROUP_ROOT / "cgroup.subtree_control").write_text("+memory +pids")
    else:
        parents = [CGROUP_ROOT / "memory" / CGROUP_NAME, CGROUP_ROOT / "pids" / CGROUP_NAME]
        if not all(parent.parent.is_dir() for parent in parents):
            return "no cgroup memory and pids controllers (v1 or v2)"
    try:
        for parent in parents:
            parent.mkdir(exist_ok=True)
            if _cgroup_v2():
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
        _Cgroup(64 << 20, MAX_PROCESSES).remove()
    except OSError as error:
        return f"cannot create cgroups under {parents[0].parent} ({error.strerror or error})"
    return None


@functools.cache
def _cgroups_work() -> bool:
    return _cgroup_problem() is None


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


def _read_now(fd: int, limit: int = 64) -> bytes:
    """What a pipe holds right now (never waits: a writer may still have it open)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, limit)
    except BlockingIOError:
        return b""


def _clean(text: str) -> str:
    """Text without control or format characters (terminal escapes, \\r, bidi overrides)."""
    return "".join(
        c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )


def _tail(path: Path) -> str:
    with open(path, "rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - 4 * REASON_TAIL_CHARS))
        text = _clean(file.read().decode("utf-8", errors="replace")).strip()
    return text[-REASON_TAIL_CHARS:]


@functools.cache
def _probe() -> str | None:
    if shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian package bubblewrap)"
    try:
        _seccomp_filter()
    except (ImportError, OSError) as error:
        return f"no seccomp filter ({error}); pip install pyseccomp, apt install libseccomp2"
    problem = _cgroup_problem()
    if problem:
        return problem
    verdict = _judged("x = 1", "assert x == 1", 60.0, DEFAULT_MEMORY_MB, sandboxed=True)
    return None if verdict.correct else f"the sandbox fails its probe: {verdict.reason}"
