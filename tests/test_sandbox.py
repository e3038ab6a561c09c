"""The code sandbox: verdicts, limits, and hostile programs that must stay contained."""

import os
import socket
import sys
import tempfile
import textwrap
import threading
import time
import uuid
import warnings

import psutil
import pytest

from rlscale.verifiers import Verdict, code

HOSTILE_TIMEOUT_S = 2.0
SLACK_S = 4.0  # start-up and teardown beyond the timeout


def run(program: str, tests: str = "", **kwargs) -> Verdict:
    kwargs.setdefault("timeout_s", HOSTILE_TIMEOUT_S)
    return code.verify(textwrap.dedent(program), textwrap.dedent(tests), **kwargs)


def timed(program: str, tests: str = "", **kwargs) -> tuple[Verdict, float]:
    start = time.monotonic()
    verdict = run(program, tests, **kwargs)
    return verdict, time.monotonic() - start


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
def without_bwrap(monkeypatch):
    monkeypatch.setattr(code, "_bwrap_problem", lambda: "disabled for this test")


# --- the sandbox itself ---------------------------------------------------------------------


def test_bubblewrap_sandbox_works_in_this_environment():
    assert code._bwrap_problem() is None


def test_missing_bwrap_warns_once_and_falls_back(monkeypatch):
    code._probe_bwrap.cache_clear()
    monkeypatch.setattr(code.shutil, "which", lambda name: None)
    try:
        with pytest.warns(RuntimeWarning, match="bubblewrap unusable"):
            assert "not installed" in code._bwrap_problem()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert code._bwrap_problem() is not None
        assert run("x = 1", "assert x == 1").correct
    finally:
        code._probe_bwrap.cache_clear()


def test_sandboxed_code_runs_as_an_unprivileged_user():
    verdict = run("import os", "assert os.getuid() == 0")
    assert not verdict.correct and "AssertionError" in verdict.reason


def test_sandbox_sees_only_its_own_processes():
    program = "import os\nvisible = [pid for pid in os.listdir('/proc') if pid.isdigit()]"
    assert run(program, "assert len(visible) <= 3").correct  # bwrap's init and the runner
    assert len(psutil.pids()) > 3


# --- ordinary verdicts ------------------------------------------------------------------------


def test_correct_program_passes():
    assert run("def add(a, b):\n    return a + b", "assert add(2, 3) == 5") == Verdict.right("passed")


def test_failing_assertion_reports_exit_code_and_traceback():
    verdict = run("def add(a, b):\n    return a - b", "assert add(2, 3) == 5")
    assert not verdict.correct
    assert verdict.reason.startswith("exit code 1:")
    assert "assert add(2, 3) == 5" in verdict.reason and "AssertionError" in verdict.reason


def test_syntax_error_is_wrong():
    verdict = run("def broken(:\n    pass", "assert True")
    assert not verdict.correct and "SyntaxError" in verdict.reason


def test_exception_in_program_is_wrong():
    verdict = run("raise ValueError('nope')", "assert True")
    assert not verdict.correct and "ValueError: nope" in verdict.reason


def test_exit_code_is_reported():
    assert run("import sys\nsys.exit(3)", "assert True") == Verdict.wrong("exit code 3")


def test_death_by_signal_is_reported():
    verdict = run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", "assert True")
    assert verdict == Verdict.wrong("killed by signal 11 (Segmentation fault)")


def test_program_and_tests_are_one_main_module():
    verdict = run(
        "import sys\nSEEN = sys.modules['__main__']",
        "assert __name__ == '__main__' and SEEN.SEEN is SEEN and sys.argv == ['main.py']",
    )
    assert verdict.correct


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


def test_verify_from_a_worker_thread():
    results = []
    worker = threading.Thread(target=lambda: results.append(run("x = 2", "assert x == 2")))
    worker.start()
    worker.join()
    assert results == [Verdict.right("passed")]


def test_verify_many_keeps_order_and_runs_concurrently():
    items = [("import time\ntime.sleep(1)\nok = True", "assert ok")] * 4
    items += [("ok = False", "assert ok")]
    start = time.monotonic()
    verdicts = code.verify_many(items, max_workers=5, timeout_s=5)
    elapsed = time.monotonic() - start
    assert [verdict.correct for verdict in verdicts] == [True] * 4 + [False]
    assert elapsed < 3.5, elapsed


# --- early exits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit", "exit()"],
)
def test_exit_before_tests_does_not_pass(program):
    assert run(program, "assert False") == Verdict.wrong("exited before the tests finished")


def test_exit_from_program_code_called_by_tests_does_not_pass():
    program = "import sys\ndef solve():\n    sys.exit(0)"
    assert not run(program, "assert solve() == 42").correct


def test_guessing_the_nonce_channel_does_not_pass():
    program = """
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, os.urandom(16).hex().encode())
            except OSError:
                pass
        os._exit(0)
    """
    assert run(program, "assert False") == Verdict.wrong("exited before the tests finished")


# --- hostile programs -------------------------------------------------------------------------


def test_infinite_loop_times_out():
    verdict, elapsed = timed("while True:\n    pass", "assert True")
    assert verdict == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S


def test_sleep_times_out():
    verdict, elapsed = timed("import time\ntime.sleep(60)", "assert True")
    assert verdict == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S


def test_ignoring_sigterm_does_not_help():
    marker = new_marker()
    program = name_self(marker) + "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    verdict, elapsed = timed(program + "while True:\n    pass", "assert True")
    assert verdict == Verdict.wrong("timeout after 2s")
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
    assert verdict == Verdict.wrong("timeout after 2s")
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
    assert verdict == Verdict.wrong("timeout after 2s")
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
    verdict = run("import os", f"assert os.path.exists({__file__!r})")
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
    assert verdict == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S
    assert processes_marked(marker) == []


# --- fallback without bubblewrap (resource limits only) ---------------------------------------


def test_fallback_passes_and_fails(without_bwrap):
    assert run("x = 1", "assert x == 1").correct
    assert not run("x = 1", "assert x == 2").correct


def test_fallback_detects_early_exit(without_bwrap):
    verdict = run("import os\nos._exit(0)", "assert False")
    assert verdict == Verdict.wrong("exited before the tests finished")


def test_fallback_times_out_and_kills_the_process_group(without_bwrap):
    marker = new_marker()
    program = name_self(marker) + "import os\nos.fork()\nwhile True:\n    pass"
    verdict, elapsed = timed(program)
    assert verdict == Verdict.wrong("timeout after 2s")
    assert elapsed < HOSTILE_TIMEOUT_S + SLACK_S
    assert processes_marked(marker) == []


def test_fallback_limits_memory_and_scrubs_environment(without_bwrap, monkeypatch):
    monkeypatch.setenv("RLSCALE_TEST_SECRET", "hunter2")
    assert run("hog = bytearray(8 << 30)", memory_mb=256).reason.startswith("memory limit")
    assert run("import os", "assert 'RLSCALE_TEST_SECRET' not in os.environ").correct
