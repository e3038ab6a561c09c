"""Math verifier: extract the final answer of a response and decide if it equals the gold one.

Equivalence is math-verify's (sympy underneath). Sympy can run without bound on hostile
answers (power towers, huge integers, deep nesting) and math-verify's own timeout relies on
signals, which only work in the main thread. So the sympy work runs in worker subprocesses,
each under a memory rlimit, that are killed and replaced when a comparison outlives its
deadline; this works from any thread and inside Ray actors. Cheap checks in this process
settle the common cases (identical strings, plain numbers) without a round trip and reject
absurd inputs before they reach sympy.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import queue
import re
import resource
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

from rlscale.verifiers import Verdict

DEFAULT_TIMEOUT_S = 3.0
MAX_ANSWER_CHARS = 1000
MAX_BRACKET_DEPTH = 50
MAX_POWER_DEPTH = 2  # e^{x^2} is fine; 2^{2^{2^2}} is a tower
WORKER_MEMORY_BYTES = 2 << 30
WORKER_STARTUP_TIMEOUT_S = 120.0  # importing sympy on a busy machine
POOL_SIZE = max(1, min(4, os.cpu_count() or 1))

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)[\s:]*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)")
_MATH_SPAN = re.compile(r"\$\$?([^$]+)\$\$?|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_LATEX_SPACING = re.compile(r"\s+|\\[,;:! ]|\\left|\\right")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d{1,100}(?:\.\d{0,100})?|\.\d{1,100})(?:/\d{1,100})?")
_LATEX_FRACTION = re.compile(r"([+-]?)\\[dt]?frac\{(\d{1,100})\}\{(\d{1,100})\}")
_INTEGER = re.compile(r"[+-]?\d+")
_NESTING_TOKEN = re.compile(r"(?:\^|\*\*)\s*[({\[]|\^|\*\*|[({\[]|[)}\]]")


# --- extraction -------------------------------------------------------------------------------


def extract_answer(response: str, *, fallback: Callable[[str], str | None] | None = None) -> str | None:
    """The final answer of a response, or None.

    Inside the last <answer>…</answer> if there is one; there or else in the whole response,
    the last \\boxed{} or "the answer is …", whichever comes later; else `fallback(response)`,
    by default the last number.
    """
    tag = _last_answer_tag(response)
    if tag is not None:
        return extract_marked(tag) or _clean(tag) or None
    return extract_marked(response) or (fallback or last_number)(response)


def extract_marked(text: str) -> str | None:
    """The content of the last \\boxed{} or "answer is …" in text, whichever starts later."""
    candidates = [found for found in (_last_boxed(text), _last_answer_is(text)) if found]
    if not candidates:
        return None
    return max(candidates)[1] or None


def last_number(text: str) -> str | None:
    match = _last_match(_NUMBER, text)
    return match.group().replace(",", "") if match else None


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    last = deque(pattern.finditer(text), maxlen=1)
    return last[0] if last else None


def _last_answer_tag(text: str) -> str | None:
    """Content of the last <answer>…</answer> (found with rfind: a regex is quadratic here)."""
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, max(end, 0))
    return text[start + len("<answer>") : end] if start != -1 and end != -1 else None


def _last_boxed(text: str) -> tuple[int, str] | None:
    starts = list(_BOXED.finditer(text))
    if not starts:
        return None
    closing = _matching_braces(text)
    for start in reversed(starts):
        end = closing.get(start.end() - 1)
        if end is not None:
            return start.start(), text[start.end() : end].strip()
    return None


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each "{" -> position of its "}" (one pass over the braces only)."""
    open_positions, pairs = [], {}
    for brace in re.finditer(r"[{}]", text):
        if brace.group() == "{":
            open_positions.append(brace.start())
        elif open_positions:
            pairs[open_positions.pop()] = brace.start()
    return pairs


def _last_answer_is(text: str) -> tuple[int, str] | None:
    match = _last_match(_ANSWER_IS, text)
    return (match.start(), _clean(match.group(1))) if match else None


def _clean(answer: str) -> str:
    """A math span that opens the answer, or the answer up to the end of its sentence."""
    answer = answer.strip()
    span = _MATH_SPAN.match(answer)
    if span:
        return next(group for group in span.groups() if group).strip()
    return _SENTENCE_END.split(answer, maxsplit=1)[0].strip().rstrip(".").strip()


# --- equivalence ------------------------------------------------------------------------------


def verify(response: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    try:
        answer = extract_answer(response)
        if answer is None:
            return Verdict.wrong("no answer found")
        boxed_gold = _last_boxed(gold)
        return equivalent(answer, boxed_gold[1] if boxed_gold else gold, timeout_s=timeout_s)
    except Exception as error:  # a verifier never raises on model output
        return Verdict.wrong(f"verifier error: {error!r}")


def equivalent(answer: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Whether two extracted answers are mathematically the same, decided within timeout_s."""
    try:
        return _equivalent(answer, gold, timeout_s)
    except _WorkerUnavailable as error:
        return Verdict.wrong(f"math verifier unavailable: {error}")
    except Exception as error:  # a verifier never raises on model output
        return Verdict.wrong(f"verifier error: {error!r}")


def _equivalent(answer: str, gold: str, timeout_s: float) -> Verdict:
    answer, gold = _strip_math_delimiters(answer), _strip_math_delimiters(gold)
    if _squash(answer) == _squash(gold):
        return Verdict.right("exact match")
    numbers = _as_number(answer), _as_number(gold)
    if None not in numbers:
        if numbers[0] == numbers[1]:
            return Verdict.right("equal numbers")
        if all(_INTEGER.fullmatch(_squash(text)) for text in (answer, gold)):
            return Verdict.wrong("different numbers")
    problem = _too_complex(answer) or _too_complex(gold)
    if problem:
        return Verdict.wrong(problem)
    return _compare_in_worker(answer, gold, float(timeout_s))


def _strip_math_delimiters(text: str) -> str:
    text = text.strip()
    span = _MATH_SPAN.fullmatch(text)
    return next(group for group in span.groups() if group).strip() if span else text


def _squash(text: str) -> str:
    """Spacing-free form for string comparison: `\\dfrac{1}{2} ` == `\\frac{1}{2}`."""
    return _LATEX_SPACING.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def _as_number(text: str) -> Fraction | None:
    """Exact value of a short plain number ("-3", "0.50", "3/4", "\\frac{3}{4}"), else None."""
    text = _squash(text)
    try:
        if _PLAIN_NUMBER.fullmatch(text):
            return Fraction(text)
        fraction = _LATEX_FRACTION.fullmatch(text)
        if fraction:
            sign, numerator, denominator = fraction.groups()
            return Fraction(f"{sign}{numerator}/{denominator}")
    except (ValueError, ZeroDivisionError):
        pass
    return None


def _too_complex(expression: str) -> str | None:
    """Why sympy should not see this expression, or None."""
    if len(expression) > MAX_ANSWER_CHARS:
        return f"answer too long to check (over {MAX_ANSWER_CHARS} characters)"
    groups: list[bool] = []  # open brackets, True where the group is an exponent
    power_depth = 0
    for token in _NESTING_TOKEN.finditer(expression):
        text = token.group()
        if text[0] in "^*":
            if power_depth + 1 > MAX_POWER_DEPTH:
                return "answer too complex to check (nested powers)"
            if text[-1] in "({[":
                groups.append(True)
                power_depth += 1
        elif text in "({[":
            groups.append(False)
            if len(groups) > MAX_BRACKET_DEPTH:
                return "answer too complex to check (brackets nested too deeply)"
        elif groups:
            power_depth -= groups.pop()
    return None


# --- worker processes -------------------------------------------------------------------------


class _WorkerUnavailable(Exception):
    pass


@functools.lru_cache(maxsize=1 << 16)  # a group of samples often repeats the same answer
def _compare_in_worker(answer: str, gold: str, timeout_s: float) -> Verdict:
    with _worker_slots:
        try:
            worker = _idle_workers.get_nowait()
        except queue.Empty:
            worker = _Worker()
        try:
            result = worker.ask({"answer": answer, "gold": gold, "timeout_s": timeout_s}, timeout_s)
        except BaseException:
            worker.kill()
            raise
        if result is None:
            crashed = worker.process.poll() is not None
            worker.kill()
            _idle_workers.put(_Worker())  # start the replacement now; it imports while we wait
            if crashed:
                return Verdict.wrong("math verifier crashed on this answer (memory or recursion)")
            return Verdict.wrong(f"timeout after {timeout_s:g}s")
        _idle_workers.put(worker)
        return Verdict(float(result["correct"]), result["correct"], result["reason"])


_idle_workers: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
_worker_slots = threading.BoundedSemaphore(POOL_SIZE)


@atexit.register
def _stop_idle_workers() -> None:
    while True:
        try:
            _idle_workers.get_nowait().kill()
        except queue.Empty:
            return


# The worker imports what this process can: this package first, then this process's path.
_WORKER_PATH = [str(Path(__file__).resolve().parents[1]), *map(os.path.abspath, sys.path)]
_WORKER_BOOT = f"import sys; sys.path[:] = {_WORKER_PATH!r}; import rlscale.verifiers.math as m; m._serve()"


class _Worker:
    """A python subprocess answering one JSON job per line with one JSON line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _WORKER_BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.buffer = b""
        self.ready = False

    def ask(self, job: dict, timeout_s: float) -> dict | None:
        """The worker's answer, or None if it died or ran past timeout_s."""
        if not self.ready:
            if self._read_line(WORKER_STARTUP_TIMEOUT_S) != b"ready":
                raise _WorkerUnavailable("worker process failed to start")
            self.ready = True
        try:
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            return None
        line = self._read_line(timeout_s)
        return json.loads(line) if line is not None else None

    def _read_line(self, timeout_s: float) -> bytes | None:
        deadline = time.monotonic() + timeout_s
        poller = select.poll()  # not select.select: fds above 1024 are common in Ray actors
        poller.register(self.process.stdout, select.POLLIN)
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                return None
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


def _serve() -> None:
    """Worker main loop (runs in the subprocess)."""
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a stray print from a library must not corrupt the protocol
    _equivalent_with_sympy("1", "1")  # import and warm up the parser before saying ready
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        job = json.loads(line)
        _limit_cpu_seconds(job["timeout_s"] + 2)  # a hard stop even if the parent is gone
        try:
            correct = _equivalent_with_sympy(job["answer"], job["gold"])
            reply = {"correct": correct, "reason": "equivalent" if correct else "not equivalent"}
        except (Exception, RecursionError, MemoryError) as error:
            reply = {"correct": False, "reason": f"could not compare: {type(error).__name__}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def _limit_cpu_seconds(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _equivalent_with_sympy(answer: str, gold: str) -> bool:
    import math_verify

    # Timeouts off: they use signals; this whole process is the timeout.
    parsed_gold = math_verify.parse(f"${gold}$", parsing_timeout=None)
    parsed_answer = math_verify.parse(f"${answer}$", parsing_timeout=None)
    if not parsed_gold or not parsed_answer:
        return False
    return math_verify.verify(parsed_gold, parsed_answer, timeout_seconds=None)
