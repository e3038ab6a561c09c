"""Input/output tests: stdin in, stdout compared outside the sandbox, one sandboxed run per case."""

import time

import pytest

from rlscale.verifiers import Verdict, code

ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
CASES = [("1 2\n", "3\n"), ("-5 5", "0"), ("100 23\n", "123")]


def test_a_correct_program_passes_every_case():
    assert code.verify_io(ADD, CASES) == Verdict.right("passed 3 cases")


def test_a_wrong_output_names_the_case_and_what_was_printed():
    verdict = code.verify_io("a, b = map(int, input().split())\nprint(a - b)\n", CASES)
    assert not verdict.correct and verdict.score == 0.0
    assert verdict.reason == "case 1/3: wrong output: expected '3\\n', got '-1\\n'"


@pytest.mark.parametrize(
    ("compare", "printed", "expected", "same"),
    [
        ("exact", "3\n", "3", True),
        ("exact", "3 ", "3", False),
        ("exact", "a  b\n", "a b", False),
        ("whitespace", " a \n\n b\t", "a b", True),
        ("whitespace", "a b", "a b c", False),
        ("float", "0.30000000000000004 x", "0.3 x", True),
        ("float", "0.31", "0.3", False),
        ("float", "nan", "1", False),
        ("float", "1e3", "1000", True),
    ],
)
def test_comparisons(compare, printed, expected, same):
    program = f"import sys\nsys.stdout.write({printed!r})\n"
    assert code.verify_io(program, [("", expected)], compare=compare, rel_tol=1e-9).correct == same


def test_unknown_comparison_is_a_caller_error():
    with pytest.raises(ValueError, match="compare must be one of"):
        code.verify_io(ADD, CASES, compare="fuzzy")


def test_each_case_runs_in_a_fresh_sandbox():
    program = """import os
seen = os.path.exists('/tmp/mark')
open('/tmp/mark', 'w').write('x')
print('again' if seen else 'fresh')
"""
    assert code.verify_io(program, [("", "fresh")] * 3).correct


def test_each_case_has_its_own_time_limit_and_it_stops_at_the_first_failure():
    program = "import time\nn = int(input())\ntime.sleep(n)\nprint(n)\n"
    start = time.monotonic()
    verdict = code.verify_io(program, [("0", "0"), ("60", "60"), ("0", "0")], timeout_s=3.0)
    assert verdict.reason == "case 2/3: timeout after 3s"
    assert time.monotonic() - start < 10


def test_crash_and_nonzero_exit_fail_even_with_the_right_output():
    verdict = code.verify_io("print(3)\nraise SystemExit(4)\n", [("", "3")])
    assert not verdict.correct and verdict.reason.startswith("case 1/1: exit code 4")


def test_the_program_cannot_see_the_expected_output():
    program = """import glob
texts = []
paths = glob.glob('/tmp/**', recursive=True) + glob.glob('/sandbox/*') + glob.glob('/*')
for path in paths + glob.glob('/proc/[0-9]*/cmdline') + glob.glob('/proc/[0-9]*/environ'):
    try:
        texts.append(open(path, errors='replace').read())
    except OSError:
        pass
print('found' if any('SECRET-' + 'EXPECTED' in text for text in texts) else 'nothing')
"""
    verdict = code.verify_io(program, [("", "SECRET-EXPECTED")], timeout_s=10)
    assert verdict.reason == "case 1/1: wrong output: expected 'SECRET-EXPECTED', got 'nothing\\n'"


def test_output_flood_is_capped():
    verdict = code.verify_io("import sys\nwhile True:\n    sys.stdout.write('x' * (1 << 20))\n", [("", "x")])
    assert not verdict.correct and "output limit" in verdict.reason


def test_control_characters_in_output_are_not_echoed():
    verdict = code.verify_io("print('\\x1b[31mred\\r\\x07')", [("", "red")], compare="exact")
    assert not verdict.correct and "\x1b" not in verdict.reason and "\r" not in verdict.reason


def test_run_program_returns_stdout_and_flags():
    run = code.run_program("import sys\nprint(input()[::-1])\nsys.exit(0)\n", "abc\n", timeout_s=5)
    assert run.returncode == 0 and not run.timed_out and run.stdout == b"cba\n"
    assert run.flags == ("exit",)
