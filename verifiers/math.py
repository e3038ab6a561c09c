"""Math verifier: does a response's final answer equal the gold answer?

math-verify decides both what the answer is and whether it equals the gold one; this module
adds only what it lacks. The rules:

- Extraction is math-verify's default: the whole response goes to `math_verify.parse` (a boxed
  answer first, then LaTeX spans, then plain expressions and numbers). rlscale adds no
  fallback of its own (there used to be "the last number"), so no rule here rewards a number
  that is only part of a wrong answer.
- `<answer>…</answer>` (rlscale's addition): if a response has it, only the last such span is
  read, and it is read like a gold answer (next rule).
- A bare answer (the gold, the content of `<answer>`, both arguments of `equivalent`) is read
  as LaTeX math: math-verify parses it as given if it has math delimiters (`$…$`, `\\(…\\)`,
  `\\[…\\]`) or a `\\boxed{}`, else wrapped in `$…$`. So `-10/9`, `[0,1)`, `\\frac{1}{2}`,
  `$x \\le 3$` and `\\(x=5\\)` all read as the math they are. (math-verify's plain-text
  extraction would read `[0,1)` as nothing and `x \\le 3` as `3`.)
- Known limit, kept for agreement: in undelimited prose math-verify's number reader can take a
  number that is part of a longer answer ("so it is 2\\pi" reads 2, "x=2, y=3" reads 3,
  "5 + 3i" reads 5). Prompts that ask for `\\boxed{}` or `<answer>` tags avoid it; inside
  tags the bare-answer rule above applies.
- Equivalence is `math_verify.verify(gold, answer)` with its defaults (floats equal when they
  round to the same 6 decimals, `x = 5` equals `5`, sets, intervals, matrices, relations).
- Bounds: sympy can run without bound on hostile answers and math-verify's own timeouts use
  signals, which only work in the main thread. So parsing and comparison run in worker
  processes, each under a memory and CPU limit, killed and replaced when a response outlives
  its deadline. The deadline is per response, counted from when a worker starts on it (not
  from when the call began waiting for a free worker). Timeouts and crashes are never cached:
  a slow moment must not become a permanent "wrong".
- Refusal: a response over MAX_RESPONSE_CHARS is refused at once; inside the worker, every
  string math-verify is about to hand to its LaTeX or expression parser is screened, and one
  over MAX_ANSWER_CHARS, with brackets nested over MAX_BRACKET_DEPTH or powers stacked over
  MAX_POWER_DEPTH, refuses the whole response (math-verify would otherwise try it, or try an
  earlier candidate). The gold answer is screened the same way; the reason says which side.
- Fast path, in this process, where math-verify's outcome is provable: the gold is a bare
  integer and the response is a bare integer, exactly `\\boxed{12}`, or prose with one integer
  and nothing else math-verify could read (no other digit, no `$`, `\\` or `[`: "so the
  answer is 12."). math-verify then reads that integer and compares values exactly, as the
  fast path does (measured in the tests). Decimals go to the worker: math-verify compares
  floats after rounding them to 6 places.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
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
from collections import OrderedDict
from pathlib import Path

from rlscale.verifiers import Verdict

DEFAULT_TIMEOUT_S = 3.0
MAX_RESPONSE_CHARS = 1 << 21
MAX_ANSWER_CHARS = 1000
MAX_BRACKET_DEPTH = 50
MAX_POWER_DEPTH = 2  # e^{x^2} is fine; 2^{2^{2^2}} is a tower
CACHE_SIZE = 1 << 16  # a group of samples often repeats the same answer
WORKER_MEMORY_BYTES = 2 << 30
WORKER_STARTUP_TIMEOUT_S = 120.0  # importing sympy on a busy machine
POOL_SIZE = max(1, min(4, os.cpu_count() or 1))

_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed")
_BARE_INTEGER = re.compile(r"\s*(-?[0-9]{1,100})\s*")
# Prose without digits or anything math-verify reads as LaTeX, then one integer after a space.
_PROSE_INTEGER = re.compile(r"(?:[^\d$\\\[]*\s)?(-?[0-9]{1,100})\.?\s*")
_BOXED_INTEGER = re.compile(r"\s*\\boxed\{(-?[0-9]{1,100})\}\s*")
_NESTING_TOKEN = re.compile(r"(?:\^|\*\*)\s*[({\[]|\^|\*\*|[({\[]|[)}\]]")


def verify(response: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Whether the response's final answer equals gold (rules in the module docstring)."""
    if not isinstance(response, str) or not isinstance(gold, str):
        return Verdict.wrong("response and gold answer must be text")
    if len(response) > MAX_RESPONSE_CHARS:
        return Verdict.wrong(f"response too long to check (over {MAX_RESPONSE_CHARS} characters)")
    tagged = answer_tag(response)
    if tagged is not None:
        return _judge(tagged, gold, bare=True, timeout_s=timeout_s)
    return _judge(response, gold, bare=False, timeout_s=timeout_s)


def equivalent(answer: str, gold: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Whether two bare answers (no prose around them) are the same math."""
    if not isinstance(answer, str) or not isinstance(gold, str):
        return Verdict.wrong("answer and gold answer must be text")
    return _judge(answer, gold, bare=True, timeout_s=timeout_s)


def answer_tag(text: str) -> str | None:
    """Content of the last <answer>…</answer> (found with rfind: a regex is quadratic here)."""
    end = text.rfind("</answer>")
    start = text.rfind("<answer>", 0, max(end, 0))
    return text[start + len("<answer>") : end] if start != -1 and end != -1 else None


def last_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{…} (brace-matched), for readers of raw answer text."""
    starts = list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))
    if not starts:
        return None
    closing = _matching_braces(text)
    for start in reversed(starts):
        end = closing.get(start.end() - 1)
        if end is not None:
            return text[start.end() : end].strip()
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


def _judge(text: str, gold: str, *, bare: bool, timeout_s: float) -> Verdict:
    """Verdict on `text` (a whole response, or a bare answer if `bare`) against gold."""
    try:
        if not text.strip():
            return Verdict.wrong("no answer found")
        fast = _integer_verdict(text, gold, bare)
        if fast is not None:
            return fast
        key = hashlib.blake2b(f"{bare:d}\0{gold}\0{text}".encode(errors="surrogatepass")).digest()
        verdict = _cached(key)
        if verdict is None:
            verdict = _judge_in_worker({"text": text, "gold": gold, "bare": bare}, float(timeout_s))
            _remember(key, verdict)
        return verdict
    except _Unsettled as error:  # a timeout or a crash: said, never cached
        return Verdict.wrong(str(error))
    except _WorkerUnavailable as error:
        return Verdict.wrong(f"math verifier unavailable: {error}")
    except Exception as error:  # a verifier never raises on model output
        return Verdict.wrong(f"verifier error: {error!r}")


def _integer_verdict(text: str, gold: str, bare: bool) -> Verdict | None:
    """The verdict when math-verify would read one plain integer on each side, else None."""
    expected = _BARE_INTEGER.fullmatch(gold)
    if bare:
        got = _BARE_INTEGER.fullmatch(text)
    else:
        got = _PROSE_INTEGER.fullmatch(text) or _BOXED_INTEGER.fullmatch(text)
    if expected is None or got is None:
        return None
    if int(got.group(1)) == int(expected.group(1)):
        return Verdict.right("equal integers")
    return Verdict.wrong("different integers")


_verdicts: OrderedDict[bytes, Verdict] = OrderedDict()
_verdicts_lock = threading.Lock()


def _cached(key: bytes) -> Verdict | None:
    with _verdicts_lock:
        verdict = _verdicts.get(key)
        if verdict is not None:
            _verdicts.move_to_end(key)
        return verdict


def _remember(key: bytes, verdict: Verdict) -> None:
    with _verdicts_lock:
        _verdicts[key] = verdict
        if len(_verdicts) > CACHE_SIZE:
            _verdicts.popitem(last=False)


def _too_complex(expression: str) -> str | None:
    """Why sympy should not see this expression, or None."""
    if len(expression) > MAX_ANSWER_CHARS:
        return f"too long to check (over {MAX_ANSWER_CHARS} characters)"
    groups: list[bool] = []  # open brackets, True where the group is an exponent
    power_depth = 0
    for token in _NESTING_TOKEN.finditer(expression):
        text = token.group()
        if text[0] in "^*":
            if power_depth + 1 > MAX_POWER_DEPTH:
                return "too complex to check (nested powers)"
            if text[-1] in "({[":
                groups.append(True)
                power_depth += 1
        elif text in "({[":
            groups.append(False)
            if len(groups) > MAX_BRACKET_DEPTH:
                return "too complex to check (brackets nested too deeply)"
        elif groups:
            power_depth -= groups.pop()
    return None


# --- worker processes -------------------------------------------------------------------------


class _WorkerUnavailable(Exception):
    pass


class _Unsettled(Exception):
    """The worker ran past the deadline or died: no verdict on the answer itself."""


def _judge_in_worker(job: dict, timeout_s: float) -> Verdict:
    with _worker_slots:
        try:
            worker = _idle_workers.get_nowait()
        except queue.Empty:
            worker = _Worker()
        try:
            result = worker.ask({**job, "timeout_s": timeout_s}, timeout_s)
        except BaseException:
            worker.kill()
            raise
        if result is None:
            crashed = worker.process.poll() is not None
            worker.kill()
            _idle_workers.put(_Worker())  # start the replacement now; it imports while we wait
            if crashed:
                raise _Unsettled("math verifier crashed on this answer (memory or recursion)")
            raise _Unsettled(f"timeout after {timeout_s:g}s")
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
        """The worker's answer, or None if it died or ran past timeout_s (counted from now)."""
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


# --- inside a worker --------------------------------------------------------------------------


class _Refused(BaseException):
    """An absurd string on its way to sympy; BaseException so math-verify does not swallow it."""


def _serve() -> None:
    """Worker main loop (runs in the subprocess)."""
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a stray print from a library must not corrupt the protocol
    _screen_parser_inputs()
    _judge_with_math_verify(r"\boxed{x^2}", "x^{2}", bare=False)  # import and warm up first
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        job = json.loads(line)
        _limit_cpu_seconds(job["timeout_s"] + 2)  # a hard stop even if the parent is gone
        try:
            correct, reason = _judge_with_math_verify(job["text"], job["gold"], bare=job["bare"])
        except (Exception, RecursionError, MemoryError) as error:
            correct, reason = False, f"could not compare: {type(error).__name__}"
        replies.write(json.dumps({"correct": correct, "reason": reason}) + "\n")
        replies.flush()


def _screen_parser_inputs() -> None:
    """Every string math-verify hands to its LaTeX or expression parser passes _too_complex."""
    import math_verify.parser

    def screened(parse_text):
        def parse_if_sane(text: str):
            problem = _too_complex(text)
            if problem:
                raise _Refused(problem)
            return parse_text(text)

        return parse_if_sane

    math_verify.parser.parse_latex_cached = screened(math_verify.parser.parse_latex_cached)
    math_verify.parser.parse_expr_cached = screened(math_verify.parser.parse_expr_cached)


def _judge_with_math_verify(text: str, gold: str, *, bare: bool) -> tuple[bool, str]:
    import math_verify

    try:
        answer = _read(text, bare=bare)
    except _Refused as refusal:
        return False, f"answer {refusal}"
    if not answer:
        return False, "no answer found"
    try:
        expected = _read_gold(gold)
    except _Refused as refusal:
        return False, f"gold answer {refusal}"
    if not expected:
        return False, "gold answer could not be read"
    # Timeouts off: they use signals; the parent's deadline on this whole process is the timeout.
    correct = math_verify.verify(expected, answer, timeout_seconds=None)
    return correct, "equivalent" if correct else "not equivalent"


def _read(text: str, *, bare: bool) -> list:
    """math-verify's parse of a response, or of a bare answer read as LaTeX math."""
    import math_verify

    if bare and not _DELIMITED.search(text):
        text = "$" + " ".join(text.split()) + "$"  # one line: inline math stops at a newline
    return math_verify.parse(text, parsing_timeout=None)


@functools.lru_cache(maxsize=256)  # a gold answer is judged against a whole group of samples
def _read_gold(gold: str) -> list:
    return _read(gold, bare=True)


def _limit_cpu_seconds(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
