"""The code sandbox: verdicts, limits, and hostile programs that must stay contained.

Forged passes and in-language hacks: tests/test_sandbox_forgery.py; I/O tests: test_sandbox_io.py.
"""

import dataclasses
import os
import socket
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import psutil
import pytest

from rlscale.verifiers import Verdict, cgroup, code, sandbox

HOSTILE_TIMEOUT_S = 2.0
SLACK_S = 4.0  # start-up and teardown beyond the timeout
PASS_TIMEOUT_S = 10.0  # for programs that should finish: a loaded machine must not fail them


def run(program: str, tests: str = "", **kwargs) -> Verdict:
    kwargs.setdefault("timeout_s", PASS_TIMEOUT_S)
    return code.verify(textwrap.dedent(program), textwrap.dedent(tests), **kwargs)


def timed(program: str, tests: str = "", **kwargs) -> tuple[Verdict, float]:
    """run() with the hostile time limit, and how long it took."""
    kwargs.setdefault("timeout_s", HOSTILE_TIMEOUT_S)
    start = time.monotonic()
    verdict = run(program, tests, **kwargs)
    return verdict, time.monotonic() - start


def unflagged(verdict: Verdict) -> Verdict:
    """The verdict without its hack telemetry."""
    return dataclasses.replace(verdict, flags=())


def new_marker() -> str:
    return "rl" + uuid.uuid4().hex[:12]  # fits in /proc/PID/comm (15 characters)


def processes_marked(marker: str) -> list[int]:
    """Live processes named marker or with marker on their command line."""
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["name"] == marker or marker in " ".join(info["cmdline"] or []):
            found.append(process.pid)
    return found


def name_self(marker: str) -> str:
    """A program line that names its process (prctl PR_SET_NAME, inherited by forks)."""
    return f"import ctypes; ctypes.CDLL(None).prctl(15, {marker.encode()!r}, 0, 0, 0)\n"


@pytest.fixture
def without_sandbox(monkeypatch):
    monkeypatch.setattr(code, "sandbox_problem", lambda: "disabled for this test")
    monkeypatch.setattr(code, "_allow_unsandboxed", False)


@pytest.fixture
def unsandboxed_allowed(without_sandbox, capsys):
    code.require_sandbox(allow_unsandboxed=True)
    assert "UNSANDBOXED" in capsys.readouterr().err


# --- the sandbox itself ---------------------------------------------------------------------


def test_sandbox_works_in_this_environment():
    assert code.sandbox_problem() is None
    code.require_sandbox(allow_unsandboxed=False)  # silent, no error


def test_sandboxed_code_runs_as_an_unprivileged_user():
    verdict = run("import os\nuid = os.getuid()", "assert uid == 0")
    assert not verdict.correct and "AssertionError" in verdict.reason


def test_sandbox_sees_only_its_own_processes():
    program = "import os\nvisible = len([pid for pid in os.listdir('/proc') if pid.isdigit()])"
    assert run(program, "assert visible <= 3").correct  # bwrap's init and the runner
    assert len(psutil.pids()) > 3


# --- ordinary verdicts ------------------------------------------------------------------------


def test_correct_program_passes():
    assert run("def add(a, b):\n    return a + b", "assert add(2, 3) == 5") == Verdict.right("passed")


def test_failing_assertion_reports_the_tests_traceback():
    verdict = run("def add(a, b):\n    return a - b", "assert add(2, 3) == 5")
    assert not verdict.correct
    assert verdict.reason.startswith("tests failed:")
    assert "assert add(2, 3) == 5" in verdict.reason and "AssertionError" in verdict.reason


def test_syntax_error_is_wrong():
    verdict = run("def broken(:\n    pass", "assert True")
    assert not verdict.correct and "SyntaxError" in verdict.reason


def test_exception_in_program_is_wrong():
    verdict = run("raise ValueError('nope')", "assert True")
    assert not verdict.correct and "ValueError: nope" in verdict.reason


def test_exception_in_a_called_function_reaches_the_tests():
    program = "def parse(s):\n    return int(s)"
    tests = """
        try:
            parse('x')
            raised = False
        except ValueError as error:
            raised = 'invalid literal' in str(error)
        assert raised and parse('12') == 12
    """
    assert run(program, tests).correct
    verdict = run(program, "assert parse('x') == 0")
    assert not verdict.correct and "ValueError: invalid literal" in verdict.reason


def test_exit_code_is_reported():
    verdict = run("import sys\nsys.exit(3)", "assert True")
    assert unflagged(verdict) == Verdict.wrong("exit code 3") and verdict.flags == ("exit",)


def test_death_by_signal_is_reported():
    verdict = run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "assert True")
    assert unflagged(verdict) == Verdict.wrong("killed by signal 11 (Segmentation fault)")


def test_program_runs_as_main_and_tests_see_its_functions_and_plain_data():
    program = """
        import sys
        NAME, ARGV = __name__, sys.argv
        TABLE = {1: (2.5, b'x', None), 'k': [{3, 4}, frozenset({5}), 1 + 2j, float('inf')]}
        def mul(a, b=2):
            return a * b
        def twice(f, x):
            return f(f(x))
    """
    tests = """
        assert NAME == '__main__' and ARGV == ['main.py']
        assert TABLE == {1: (2.5, b'x', None), 'k': [{3, 4}, frozenset({5}), 1 + 2j, float('inf')]}
        assert mul(3) == 6 and mul('ab', b=3) == 'ababab' and mul([1], 2) == [1, 1]
        assert twice(mul, 5) == 20  # a program function passed back to the program
        assert mul.__name__ == 'mul'
    """
    assert run(program, tests).correct


def test_only_functions_and_plain_data_reach_the_tests():
    verdict = run("import os", "assert os.getuid() != 0")
    assert not verdict.correct and "only functions and plain data" in verdict.reason
    verdict = run("class Box:\n    pass\ndef make():\n    return Box()", "assert make() is not None")
    assert not verdict.correct and "TypeError: a Box is not plain data" in verdict.reason
    verdict = run("x = 1", "assert y == 1")
    assert not verdict.correct and "NameError: name 'y' is not defined" in verdict.reason


def test_unittest_main_at_the_end_of_tests_passes():
    tests = """
        import unittest
        class T(unittest.TestCase):
            def test_add(self):
                self.assertEqual(add(1, 2), 3)
        unittest.main()
    """
    assert run("def add(a, b):\n    return a + b", tests).correct
    assert not run("def add(a, b):\n    return a * b", tests).correct


def test_moderate_output_is_fine():
    assert run("print('x' * 1_000_000)", "assert True").correct


def test_non_text_input_is_wrong_not_an_exception():
    verdict = code.verify(None, "assert True")
    assert not verdict.correct and "sandbox error" in verdict.reason


def test_control_characters_are_stripped_from_the_reason():
    program = (
        "import sys\nsys.stderr.write('\\x1b[2J\\x1b]0;title\\x07bad\\rline\\u202eevil\\x00\\n')\nsys.exit(2)"
    )
    verdict = run(program, "assert True")
    assert not verdict.correct and verdict.reason.startswith("exit code 2: ")
    assert "badline" in verdict.reason and "evil" in verdict.reason
    assert all(c in "\n\t" or c.isprintable() for c in verdict.reason), repr(verdict.reason)


def test_verify_from_a_worker_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append(run("x = 2", "assert x == 2")))
    worker.start()
    worker.join()
    assert results == [Verdict.right("passed")]


def test_checks_on_the_run_path_keep_order_and_run_concurrently():
    """Sandboxed checks as a run makes them: one-step episodes stepped by collect.step_bounded."""
    from types import SimpleNamespace

    from rlscale.collect import step_bounded
    from rlscale.envs.base import SingleTurnEpisode, Task

    env = SimpleNamespace(score=lambda task, response: code.verify(response, task.answer, timeout_s=5))
    programs = ["import time\ntime.sleep(1)\nok = True"] * 4 + ["ok = False"]
    steps = [(SingleTurnEpisode(env, Task("", "assert ok")), program) for program in programs]
    start = time.monotonic()
    results = step_bounded(steps, workers=5, timeout_s=5)
    elapsed = time.monotonic() - start
    assert [outcome[4]["verdict"].correct for outcome, _ in results] == [True] * 4 + [False]
    assert elapsed < 3.5, elapsed


# --- early exits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit", "exit()"],
)
def test_exit_before_tests_does_not_pass(program):
    verdict = run(program, "assert False")
    assert unflagged(verdict) == Verdict.wrong("exited before the tests finished")


def test_exit_from_program_code_called_by_tests_does_not_pass():
    program = "import sys\ndef solve():\n    sys.exit(0)"
    assert not run(program, "assert solve() == 42").correct


def test_writing_to_every_descriptor_does_not_pass():
    program = """
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, os.urandom(16).hex().encode())
            except OSError:
                pass
        os._exit(0)
    """
    verdict = run(program, "assert False")
    assert unflagged(verdict) == Verdict.wrong("exited before the tests finished")


# --- hostile programs -------------------------------------------------------------------------


def test_infinite_loop_times_out():
    verdict, elapsed = timed("while True:\n    pass", "assert True")
    assert unflagged(verdict) == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S


def test_sleep_times_out():
    verdict, elapsed = timed("import time\ntime.sleep(60)", "assert True")
    assert unflagged(verdict) == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S


def test_ignoring_sigterm_does_not_help():
    marker = new_marker()
    program = name_self(marker) + "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    verdict, elapsed = timed(program + "while True:\n    pass", "assert True")
    assert unflagged(verdict) == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S
    assert processes_marked(marker) == []


def test_fork_bomb_is_contained():
    marker = new_marker()
    program = name_self(marker) + textwrap.dedent(
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """
    )
    verdict, elapsed = timed(program, "assert True")
    assert unflagged(verdict) == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S
    assert processes_marked(marker) == []


def test_process_count_is_limited():
    program = """
        import os, time
        for _ in range(100):
            if os.fork() == 0:
                time.sleep(1)
                os._exit(0)
    """
    verdict = run(program, "assert True")
    assert not verdict.correct and "BlockingIOError" in verdict.reason


def test_memory_bomb_hits_the_memory_limit():
    verdict, elapsed = timed("hog = bytearray(8 << 30)", "assert True", memory_mb=256)
    assert not verdict.correct and verdict.reason.startswith("memory limit (256 MB)")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S


def test_growing_memory_hits_the_memory_limit():
    program = "hog = []\nwhile True:\n    hog.append(bytearray(16 << 20))"
    verdict = run(program, "assert True", memory_mb=256)
    assert not verdict.correct and verdict.reason.startswith("memory limit")


def scratch_folders() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if "rlscale-sandbox" in name}


def test_gigabytes_of_stdout_are_cut_off_and_cleaned_up():
    before = scratch_folders()
    program = "import sys\nwhile True:\n    sys.stdout.write('x' * (1 << 20))"
    verdict, elapsed = timed(program, "assert True")
    assert not verdict.correct and verdict.reason.startswith("output limit")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S
    assert scratch_folders() <= before


def test_gigabytes_of_stderr_that_ignore_errors_time_out():
    program = """
        import os
        while True:
            try:
                os.write(2, b'y' * (1 << 20))
            except OSError:
                pass
    """
    verdict, elapsed = timed(program, "assert True")
    assert unflagged(verdict) == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S


def test_writes_to_tmp_and_home_stay_inside(tmp_path):
    name = new_marker()
    program = f"""
        import os
        for folder in ('/tmp', os.environ['HOME'], os.path.expanduser('~')):
            with open(os.path.join(folder, {name!r}), 'w') as file:
                file.write('pwned')
        written = open(os.path.join('/tmp', {name!r})).read()
    """
    assert run(program, "assert written == 'pwned'").correct
    for folder in ("/tmp", os.path.expanduser("~"), str(tmp_path)):
        assert not os.path.exists(os.path.join(folder, name))


def test_interpreter_directories_are_read_only():
    target = os.path.join(sys.prefix, new_marker())
    verdict = run(f"open({target!r}, 'w').write('pwned')", "assert True")
    assert not verdict.correct and "Read-only file system" in verdict.reason
    assert not os.path.exists(target)


def test_deleting_a_host_directory_fails(tmp_path):
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "data.txt").write_text("keep me")
    program = f"import shutil\nshutil.rmtree({str(victim)!r})"
    verdict = run(program, f"import os\nassert not os.path.exists({str(victim)!r})")
    assert not verdict.correct
    assert (victim / "data.txt").read_text() == "keep me"


def test_host_files_are_invisible():
    verdict = run(f"import os\nseen = os.path.exists({__file__!r})", "assert seen")
    assert not verdict.correct and "AssertionError" in verdict.reason


def test_no_network_to_a_host_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        program = f"import socket\nconnection = socket.create_connection(('127.0.0.1', {port}), 1)"
        verdict = run(program, "connection.sendall(b'hello')")
        assert not verdict.correct and "Error" in verdict.reason
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_the_tests_are_sandboxed_too(tmp_path):
    victim = tmp_path / "precious"
    victim.mkdir()
    tests = f"""
        import os, shutil
        try:
            shutil.rmtree({str(victim)!r})
        except OSError:
            pass
        assert os.path.exists({__file__!r}) or os.getuid() == 0
    """
    verdict = run("x = 1", tests)
    assert not verdict.correct and "AssertionError" in verdict.reason
    assert victim.is_dir()


def test_killing_the_parent_fails():
    verdict = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "assert True")
    assert not verdict.correct and "PermissionError" in verdict.reason


def test_killing_every_process_it_can_reaches_no_process():
    program = """
        import os, signal
        try:
            os.kill(-1, signal.SIGKILL)
            reached = True
        except ProcessLookupError:
            reached = False
    """
    verdict = run(program, "assert reached")
    assert not verdict.correct and "AssertionError" in verdict.reason


def test_host_environment_is_invisible(monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("RLSCALE_TEST_SECRET", secret)
    program = f"""
        import glob, os
        seen = {secret!r} in repr(os.environ) or 'RLSCALE_TEST_SECRET' in os.environ
        for path in glob.glob('/proc/*/environ'):
            try:
                seen = seen or {secret!r}.encode() in open(path, 'rb').read()
            except OSError:
                pass
    """
    verdict = run(program, "assert seen")
    assert not verdict.correct and "AssertionError" in verdict.reason


DETACH = """
import os, sys
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        sleeper = 'import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); time.sleep(60)'
        os.execv(sys.executable, [sys.executable, '-c', sleeper, {marker!r}])
    os._exit(0)
os.wait()
"""


def test_detached_child_is_gone_after_a_pass():
    marker = new_marker()
    verdict = run(DETACH.format(marker=marker) + "import time\ntime.sleep(0.5)", "assert True")
    assert verdict.correct
    assert processes_marked(marker) == []


def test_detached_child_is_gone_after_a_timeout():
    marker = new_marker()
    verdict, elapsed = timed(DETACH.format(marker=marker) + "while True:\n    pass")
    assert unflagged(verdict) == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S
    assert processes_marked(marker) == []


# --- limits for the sandbox as a whole (cgroup), blocked syscalls (seccomp) ----------------------


def sandbox_cgroups() -> set[str]:
    found = set()
    for controller in ("memory", "pids"):
        folder = cgroup.CGROUP_ROOT / controller / cgroup.CGROUP_NAME
        if folder.is_dir():
            found |= {f"{controller}/{child.name}" for child in folder.iterdir() if child.is_dir()}
    return found


def test_each_sandbox_has_its_own_cgroup_with_limits_and_it_is_removed():
    marker = new_marker()
    before = sandbox_cgroups()
    found = {}

    def look():
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not found:
            for pid in processes_marked(marker):
                lines = open(f"/proc/{pid}/cgroup").read().splitlines()
                found.update(
                    {
                        ln.split(":")[1]: ln.split(":")[2]
                        for ln in lines
                        if ln.split(":")[1] in ("memory", "pids")
                    }
                )
            time.sleep(0.05)

    watcher = threading.Thread(target=look)
    watcher.start()
    assert run(name_self(marker) + "import time\ntime.sleep(1.5)", "assert True", memory_mb=300).correct
    watcher.join()
    assert set(found) == {"memory", "pids"} and found["memory"] == found["pids"], found
    assert found["memory"].startswith(f"/{cgroup.CGROUP_NAME}/")
    assert sandbox_cgroups() <= before and not os.path.exists(f"/sys/fs/cgroup/pids{found['pids']}")


def test_children_together_cannot_exceed_the_memory_limit():
    # each child stays under the per-process limit; together they are far over the sandbox's
    program = """
        import os
        children = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                hog = b'x' * (200 << 20)
                import time; time.sleep(1)
                os._exit(0)
            children.append(pid)
        ok = all(os.waitpid(pid, 0)[1] == 0 for pid in children)
    """
    verdict, elapsed = timed(program, "assert ok", memory_mb=256, timeout_s=8)
    assert not verdict.correct and verdict.reason.startswith("memory limit (256 MB)"), verdict
    assert elapsed < 8 + SLACK_S


def test_memfd_memory_counts_against_the_sandbox():
    program = """
        import os
        fds = []
        for _ in range(40):  # 40 x 15 MB, under the 16 MB file-size limit each, outside any mapping
            fd = os.memfd_create('hog')
            os.write(fd, b'x' * (15 << 20))
            fds.append(fd)
        ok = True
    """
    verdict = run(program, "assert ok", memory_mb=256, timeout_s=8)
    assert not verdict.correct and verdict.reason.startswith("memory limit (256 MB)"), verdict


def test_sysv_shared_memory_counts_against_the_sandbox():
    program = """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        for _ in range(40):  # 40 segments of 16 MB, each detached after filling: little address space
            segment = libc.shmget(0, 16 << 20, 0o1600)
            assert segment >= 0, ctypes.get_errno()
            address = libc.shmat(segment, None, 0)
            ctypes.memset(address, 1, 16 << 20)
            libc.shmdt(ctypes.c_void_p(address))
        ok = True
    """
    verdict = run(program, "assert ok", memory_mb=256, timeout_s=8)
    assert not verdict.correct and verdict.reason.startswith("memory limit (256 MB)"), verdict


def test_threads_count_against_the_process_limit():
    program = """
        import threading, time
        started = 0
        try:
            for _ in range(200):
                threading.Thread(target=time.sleep, args=(2,), daemon=True).start()
                started += 1
        except RuntimeError:
            pass
    """
    assert run(program, f"assert started < {sandbox.MAX_PROCESSES}", timeout_s=5).correct


def key_users() -> str:
    return open("/proc/key-users").read()


BLOCKED_SYSCALLS = """
    import ctypes, errno
    libc = ctypes.CDLL(None, use_errno=True)
    def refused(number, *args):
        ctypes.set_errno(0)
        return libc.syscall(number, *args) == -1 and ctypes.get_errno() == errno.EPERM
    blocked = {
        'add_key': refused(248, b'user', b'rlscale', b'secret', 6, -3),  # KEY_SPEC_SESSION_KEYRING
        'keyctl join': refused(250, 1, None),  # KEYCTL_JOIN_SESSION_KEYRING
        'request_key': refused(249, b'user', b'rlscale', None, 0),
        'unshare user': refused(272, 0x10000000),  # CLONE_NEWUSER
        'unshare net': refused(272, 0x40000000),
        'clone newuser': refused(56, 0x10000000 | 17, 0, 0, 0, 0),  # | SIGCHLD
        'ptrace': refused(101, 0, 1, 0, 0),  # PTRACE_ATTACH to pid 1
        'bpf': refused(321, 0, 0, 0),
        'mount': refused(165, b'none', b'/tmp', b'tmpfs', 0, None),
    }
"""


def test_keyrings_namespaces_and_ptrace_are_refused_and_leave_no_state():
    before = key_users()
    for _ in range(3):
        verdict = run(BLOCKED_SYSCALLS, "assert all(blocked.values()), blocked")
        assert verdict.correct, verdict.reason
    assert key_users() == before


def test_unknown_architecture_syscalls_kill_the_program():
    # 32-bit syscalls (int 0x80) would bypass a filter written for x86-64 numbers
    program = """
        import ctypes, mmap
        # mov eax, 286 (add_key); int 0x80; ret
        code = bytes([0xB8, 0x1E, 0x01, 0x00, 0x00, 0xCD, 0x80, 0xC3])
        memory = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        memory.write(code)
        address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
        result = ctypes.CFUNCTYPE(ctypes.c_int)(address)()
    """
    verdict = run(program, "assert result != 0")
    assert not verdict.correct and "signal 31" in verdict.reason, verdict  # SIGSYS


# --- fail closed: no sandbox, no run unless the config allows it -------------------------------


def test_without_sandbox_verification_refuses_and_runs_nothing(without_sandbox, tmp_path):
    victim = tmp_path / "written"
    verdict = run(f"open({str(victim)!r}, 'w').write('ran')", "assert True")
    assert not verdict.correct and verdict.reason.startswith("refused: no code sandbox here")
    assert not code.verify_io("print(1)", [("", "1")]).correct
    with pytest.raises(RuntimeError, match="refused"):
        code.run_program("print(1)")
    assert not victim.exists()


def test_require_sandbox_refuses_with_one_clear_message(without_sandbox):
    with pytest.raises(RuntimeError, match=r"needs the sandbox.*verify.allow_unsandboxed: true"):
        code.require_sandbox(allow_unsandboxed=False)


def test_missing_bwrap_is_named(monkeypatch):
    code._probe.cache_clear()
    monkeypatch.setattr(code.shutil, "which", lambda name: None)
    try:
        assert "bwrap is not installed" in code.sandbox_problem()
        with pytest.raises(RuntimeError, match="bwrap is not installed"):
            code.require_sandbox(allow_unsandboxed=False)
    finally:
        code._probe.cache_clear()


def test_allowed_unsandboxed_runs_pass_and_fail(unsandboxed_allowed):
    assert run("x = 1", "assert x == 1").correct
    assert not run("x = 1", "assert x == 2").correct
    verdict = run("import os\nos._exit(0)", "assert x")
    assert unflagged(verdict) == Verdict.wrong("exited before the tests finished")
    assert code.verify_io("print(int(input()) + 1)", [("1", "2")]).correct


def test_allowed_unsandboxed_times_out_and_kills_the_process_group(unsandboxed_allowed):
    marker = new_marker()
    program = name_self(marker) + "import os\nos.fork()\nwhile True:\n    pass"
    verdict, elapsed = timed(program)
    assert unflagged(verdict) == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S
    assert processes_marked(marker) == []


def test_allowed_unsandboxed_limits_memory_and_scrubs_environment(unsandboxed_allowed, monkeypatch):
    monkeypatch.setenv("RLSCALE_TEST_SECRET", "hunter2")
    assert run("hog = bytearray(8 << 30)", memory_mb=256).reason.startswith("memory limit")
    assert run("import os\nseen = 'RLSCALE_TEST_SECRET' in os.environ", "assert not seen").correct


def test_allowed_unsandboxed_still_caps_processes_and_ends_daemons(unsandboxed_allowed):
    marker = new_marker()
    verdict = run(DETACH.format(marker=marker) + "import time\ntime.sleep(0.5)", "assert True")
    assert verdict.correct
    assert processes_marked(marker) == []
    forks = """
        import os, time
        for _ in range(200):
            if os.fork() == 0:
                time.sleep(2)
                os._exit(0)
    """
    verdict = run(forks, "assert True")
    assert not verdict.correct and "BlockingIOError" in verdict.reason
