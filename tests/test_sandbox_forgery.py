"""Programs written against the sandbox's own design: each tries to be judged "passed" while its
tests fail. None may pass; the tests here always fail for an honest program of the same kind.

Classes: forged completion (the runner's argv, fds, state, re-exec), line-number tricks, in-language
hacks (test framework, settrace, always-equal objects, reading the tests, shadowed builtins), and
the hack-surface telemetry those attempts leave (Verdict.flags).
"""

import textwrap

import pytest

from rlscale.verifiers import Verdict, code

TIMEOUT_S = 10.0
TESTS = "assert solve(3) == 1234567"  # no program below computes this


def run(program: str, tests: str = TESTS) -> Verdict:
    return code.verify(textwrap.dedent(program), textwrap.dedent(tests), timeout_s=TIMEOUT_S)


def assert_no_pass(program: str, tests: str = TESTS) -> Verdict:
    verdict = run(program, tests)
    assert not verdict.correct and verdict.score == 0.0, verdict
    return verdict


# --- forged completion -----------------------------------------------------------------------


def test_runner_argv_holds_nothing_to_forge():
    program = """
        import json
        argv = open('/proc/self/cmdline', 'rb').read().split(b'\\0')
        config = json.loads(argv[-2])
        leaked = sorted(config)
        def solve(x):
            return 0
    """
    verdict = run(program, "assert leaked == []")
    assert "tests failed" in verdict.reason
    # what argv does hold: limits, uid, mode, fd numbers, paths; no nonce, no tests
    assert not run(program, "assert 'nonce' in str(leaked) or 'tests' in str(leaked)").correct


def test_writing_pass_messages_to_every_fd_then_exiting_does_not_pass():
    program = """
        import os
        for fd in range(3, 256):
            for message in (b'{"loaded": true}\\n', b'passed', b'{"value": 1234567}\\n' * 10):
                try:
                    os.write(fd, message)
                except OSError:
                    pass
        os._exit(0)
    """
    verdict = assert_no_pass(program)
    # which refusal comes first is a race: the judge reads the garbage (malformed reply) or sees
    # the program gone; either way it is a fail, never a pass
    assert verdict.reason == "exited before the tests finished" or verdict.reason.startswith("tests failed")
    assert "exit" in verdict.flags


def test_answering_the_judge_in_advance_does_not_pass():
    # it cannot see the tests, so it can only guess what they ask and what they expect
    program = """
        import os
        for fd in range(3, 64):
            try:
                os.write(fd, b'{"loaded": true}\\n' + b'{"kind": "function"}\\n{"value": true}\\n' * 50)
            except OSError:
                pass
        def solve(x):
            return 0
    """
    assert_no_pass(program)


def test_reexecuting_the_runner_on_a_passing_module_does_not_pass():
    program = """
        import json, os, sys
        argv = open('/proc/self/cmdline', 'rb').read().split(b'\\0')[:-1]
        config = json.loads(argv[-1])
        with open('/tmp/fake.py', 'w') as file:
            file.write('pass\\n')
        config.update(source='/tmp/fake.py', mode='run', uid=0)  # uid 0: it cannot switch again
        os.execv(sys.executable, [arg.decode() for arg in argv[:-1]] + [json.dumps(config)])
    """
    verdict = assert_no_pass(program)
    assert verdict.reason == "exited before the tests finished"


def test_patching_the_runner_through_its_frames_does_not_pass():
    program = """
        import json, sys
        frame = sys._getframe()
        while frame.f_back is not None:
            frame = frame.f_back
        runner = frame.f_globals
        runner['config']['mode'] = 'run'  # skip serving: pretend the tests are done
        runner['encode'] = lambda value, ref=None: 1234567
        runner['json'].dumps = lambda value: '{"value": 1234567}'
        def solve(x):
            return 0
    """
    verdict = assert_no_pass(program)
    assert "frame-introspection" in verdict.flags


def test_replying_with_a_forged_reference_does_not_pass():
    # a reply that asks the judge to resolve a name it should not: the judge rejects it
    program = """
        import sys
        frame = sys._getframe()
        while frame.f_back is not None:
            frame = frame.f_back
        frame.f_globals['encode'] = lambda value, ref=None: {'$': 'ref', 'v': 'solve'}
        def solve(x):
            return 0
    """
    verdict = assert_no_pass(program)
    assert "ValueError: not plain data" in verdict.reason


def test_killing_or_tracing_the_judge_is_impossible():
    program = """
        import ctypes, os, signal
        reached = []
        for pid in range(1, 4096):
            try:
                os.kill(pid, signal.SIGKILL if pid > 2 else 0)
                reached.append(pid)
            except OSError:
                pass
        libc = ctypes.CDLL(None)
        traced = [pid for pid in range(1, 64) if libc.ptrace(16, pid, 0, 0) == 0]  # PTRACE_ATTACH
        def solve(x):
            return (reached, traced)
    """
    # only the sandbox's own processes are visible: bwrap's init (1) and the runner itself (2)
    verdict = run(program, "reached, traced = solve(3)\nassert set(reached) <= {1, 2} and traced == []")
    assert verdict.correct, verdict
    assert "signal" in verdict.flags


# --- line-number tricks ------------------------------------------------------------------------


def test_lone_carriage_returns_before_an_exit_do_not_pass():
    program = "x = 1\r" * 200 + "import sys\nsys.exit(0)\n"
    assert run(program).reason == "exited before the tests finished"


def test_exit_compiled_at_a_late_line_of_the_program_does_not_pass():
    program = """
        import sys
        exec(compile('\\n' * 5000 + 'raise SystemExit(0)', __file__, 'exec'))
    """
    assert run(program).reason == "exited before the tests finished"


def test_exit_compiled_under_the_tests_file_name_does_not_pass():
    program = """
        for name in ('/sandbox/tests.py', 'tests.py', '<string>', '/tmp/tests.py'):
            try:
                exec(compile('import sys; sys.exit(0)', name, 'exec'))
            except SystemExit:
                pass
        import unittest
        unittest.main(exit=True, argv=['x'])
    """
    assert run(program).reason == "exited before the tests finished"


def test_program_swallowing_its_tests_with_an_open_string_does_not_pass():
    # in one module, a trailing open triple quote would turn the tests into a string
    verdict = assert_no_pass('def solve(x):\n    return 0\nTESTS = """\n')
    assert "SyntaxError" in verdict.reason


# --- in-language hacks ------------------------------------------------------------------------


UNITTEST_TESTS = """
    import unittest
    class T(unittest.TestCase):
        def test_solve(self):
            self.assertEqual(solve(3), 1234567)
            self.assertTrue(solve(3) == 1234567)
    unittest.main()
"""


def test_replacing_unittest_main_with_exit_does_not_pass():
    program = """
        import sys, unittest
        unittest.main = lambda *args, **kwargs: sys.exit(0)
        unittest.TestProgram = unittest.main
        def solve(x):
            return 0
    """
    verdict = assert_no_pass(program, UNITTEST_TESTS)
    assert "test-framework" in verdict.flags


def test_neutered_assert_methods_do_not_pass():
    program = """
        import unittest
        for name in dir(unittest.TestCase):
            if name.startswith(('assert', 'fail')):
                setattr(unittest.TestCase, name, lambda *args, **kwargs: None)
        unittest.TestResult.wasSuccessful = lambda self: True
        def solve(x):
            return 0
    """
    verdict = assert_no_pass(program, UNITTEST_TESTS)
    assert "test-framework" in verdict.flags and "AssertionError" in verdict.reason


def test_settrace_skipping_assert_lines_does_not_pass():
    program = """
        import sys, threading
        def tracer(frame, event, arg):
            if event == 'line' and 'assert' in (frame.f_code.co_name + str(frame.f_lineno)):
                frame.f_lineno += 1
            return tracer
        sys.settrace(tracer)
        threading.settrace(tracer)
        def solve(x):
            return 0
    """
    verdict = assert_no_pass(program)
    assert "settrace" in verdict.flags


@pytest.mark.parametrize(
    "result",
    [
        "class Equal:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n",
        "class Equal(int):\n    def __eq__(self, other):\n        return True\n",
        "class Equal(str):\n    __eq__ = lambda self, other: True\n    __ne__ = lambda self, other: False\n",
        "class Equal(list):\n    __eq__ = lambda self, other: True\n",
    ],
)
def test_always_equal_results_do_not_pass(result):
    program = result + "def solve(x):\n    return Equal()\n"
    verdict = assert_no_pass(program, "assert solve(3) == 1234567 and not solve(3) != 1234567")
    assert "is not plain data" in verdict.reason and "always-equal" in verdict.flags


def test_always_equal_inside_a_container_does_not_pass():
    program = """
        class Equal(float):
            __eq__ = lambda self, other: True
        def solve(x):
            return [Equal(0.0)]
    """
    assert "is not plain data" in assert_no_pass(program, "assert solve(3) == [1234567.0]").reason


def test_reading_its_own_source_finds_no_expected_values():
    program = """
        import glob, os, re
        texts = [open(__file__).read()]
        for path in glob.glob('/**/*.py', recursive=True) + glob.glob('/proc/*/cmdline'):
            if not path.startswith(('/usr', '/proc/self')):
                try:
                    texts.append(open(path, errors='replace').read())
                except OSError:
                    pass
        found = re.findall(r'solve\\(3\\) == (\\d+)', '\\n'.join(texts))
        def solve(x):
            return int(found[0]) if found else 0
    """
    verdict = assert_no_pass(program)
    assert {"own-source", "proc"} <= set(verdict.flags)


def test_shadowing_builtins_the_tests_use_does_not_pass():
    program = """
        import builtins
        abs = lambda x: 0
        isinstance = lambda *a: True
        AssertionError = None
        builtins.abs = abs
        def solve(x):
            return 0.5
    """
    assert_no_pass(program, "assert isinstance(solve(3), int) and abs(solve(3) - 1234567) < 1e-6")


def test_exit_inside_a_called_function_does_not_pass():
    program = """
        import os, sys
        def solve(x):
            sys.exit(0)
        def solve_hard(x):
            os._exit(0)
    """
    verdict = assert_no_pass(program, "try:\n    solve(3)\nexcept BaseException:\n    pass\nsolve_hard(3)")
    assert verdict.reason == "exited before the tests finished" and "died-during-tests" in verdict.flags
    verdict = assert_no_pass(program, "assert solve(3) == 1234567")
    assert "RuntimeError: the program raised SystemExit" in verdict.reason


def test_huge_or_deep_replies_fail_cleanly():
    deep = "def solve(x):\n    v = []\n    for _ in range(100_000):\n        v = [v]\n    return v\n"
    assert_no_pass(deep)
    wide = "def solve(x):\n    return 'x' * (20 << 20)\n"
    verdict = assert_no_pass(wide, "assert len(solve(3)) == 1234567")
    assert "too large" in verdict.reason or "memory" in verdict.reason


# --- telemetry ------------------------------------------------------------------------------


def test_an_honest_program_has_no_flags():
    verdict = run("def solve(x):\n    return x * 411522 + 1\n")
    assert verdict == Verdict.right("passed")


def test_flags_name_the_surfaces_touched_even_when_hidden_from_the_source():
    # built from strings: the source scan cannot see them, the audit hook in the sandbox does
    program = """
        import importlib
        sys = importlib.import_module('s' + 'ys')
        getattr(sys, 'set' + 'trace')(None)
        importlib.import_module('unit' + 'test')
        open('/pr' + 'oc/self/status').read()
        def solve(x):
            return 0
    """
    verdict = assert_no_pass(program)
    assert {"settrace", "test-framework", "proc"} <= set(verdict.flags)
