"""The sandbox one program runs in, and what came out of it (`Run`).

Bubblewrap with new pid, network, ipc, uts and cgroup namespaces, a read-only view of only the
system and interpreter directories, a private size-capped /tmp, a scrubbed environment; a
seccomp filter built by libseccomp (pyseccomp) and loaded by bwrap refuses keyrings,
namespaces, mounts, ptrace, bpf and the like; a cgroup per sandbox (rlscale.verifiers.cgroup)
caps memory (shared memory, memfd and /tmp included) and process count for the sandbox as a
whole; inside, the script sets per-process rlimits (CPU, file size, open files) and drops to an
unused uid. Killing the sandbox's pid 1 kills its pid namespace; the cgroup is then emptied and
removed. What runs inside, and the trust boundary between the program and its tests:
rlscale.verifiers.judge.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import marshal
import math
import os
import re
import secrets
import select
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from rlscale.verifiers.cgroup import Cgroup, cgroups_work

MAX_PROCESSES = 32  # threads count too
MAX_OPEN_FILES = 256
MAX_FILE_BYTES = 16 << 20  # any file written, stdout and stderr included
TMP_BYTES = 64 << 20
REASON_TAIL_CHARS = 600
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache")
SANDBOX_SOURCE = "/sandbox/main.py"
# Isolated, without `site` (its .pth hooks cost more than the rest of start-up); the installed
# packages stay importable through an explicit path. The script comes compiled, before its
# config on the command line (compiling it in every sandbox costs more than loading its
# bytecode), and then finds its config in sys.argv[1].
_PYTHON = (sys.executable, "-I", "-S", "-B", "-c")
_LOAD_SCRIPT = "import marshal, sys; exec(marshal.loads(bytes.fromhex(sys.argv.pop(1))))"
_SITE_PACKAGES = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})

# What a program's source mentions: hack surfaces (telemetry only; rlscale.verifiers.code lists them).
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


@dataclass(frozen=True)
class Run:
    """One sandboxed run: exit status, output (stdout capped at MAX_FILE_BYTES), hack flags."""

    returncode: int | None
    timed_out: bool
    stdout: bytes
    stderr_tail: str
    memory_exceeded: bool
    flags: tuple[str, ...]


@contextlib.contextmanager
def scratch_folder():
    with tempfile.TemporaryDirectory(prefix="rlscale-sandbox-", ignore_cleanup_errors=True) as scratch:
        yield Path(scratch)


class Fds:
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

    def __enter__(self) -> Fds:
        return self

    def __exit__(self, *exc) -> None:
        self.close(*list(self.open))


class Sandbox:
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
        self.cgroup = Cgroup(memory_mb << 20, MAX_PROCESSES) if sandboxed or cgroups_work() else None
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
        python = [*_PYTHON, _LOAD_SCRIPT, _compiled(self.script), json.dumps(config)]
        if self.sandboxed:
            seccomp_read, seccomp_write = self.fds.pipe()
            os.write(seccomp_write, seccomp_filter())
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
        if not exits_by(self.process, deadline):
            self.timed_out = True
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            sandbox_init = json.loads(read_now(self.info_read, 4096))["child-pid"]
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
        reported = set(read_now(self.flags_read, 4096).decode(errors="replace").split("\n"))
        flags = {name for name, found in _SURFACES.items() if name in reported or found.search(self.program)}
        return Run(
            self.process.returncode,
            self.timed_out,
            b"",
            _tail(self.folder / "stderr") or _tail(self.folder / "stdout"),
            memory_exceeded,
            tuple(sorted(flags)),
        )


def exits_by(process: subprocess.Popen, deadline: float) -> bool:
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


def run_problem(run: Run, timeout_s: float, memory_mb: int) -> str | None:
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


@functools.cache
def _compiled(script: str) -> str:
    """The script's bytecode for this interpreter, in hex (an argument cannot hold NUL bytes)."""
    return marshal.dumps(compile(script, "<string>", "exec")).hex()


def _bwrap_command(source_path: Path, inside: str, info_fd: int, seccomp_fd: int) -> list[str]:
    command = [*_bwrap_options(), "--ro-bind", str(source_path), inside, "--chdir", "/tmp"]
    return command + ["--seccomp", str(seccomp_fd), "--info-fd", str(info_fd), "--"]


@functools.cache
def _bwrap_options() -> tuple[str, ...]:
    """What every sandbox shares: isolation, limits and the host paths it sees (looked up once)."""
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
    return (*command, "--perms", "755", "--dir", os.path.dirname(SANDBOX_SOURCE))


@functools.cache
def seccomp_filter() -> bytes:
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


def read_now(fd: int, limit: int = 64) -> bytes:
    """What a pipe holds right now (never waits: a writer may still have it open)."""
    os.set_blocking(fd, False)
    try:
        return os.read(fd, limit)
    except BlockingIOError:
        return b""


def clean(text: str) -> str:
    """Text without control or format characters (terminal escapes, \\r, bidi overrides)."""
    return "".join(
        c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )


def _tail(path: Path) -> str:
    with open(path, "rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - 4 * REASON_TAIL_CHARS))
        text = clean(file.read().decode("utf-8", errors="replace")).strip()
    return text[-REASON_TAIL_CHARS:]
