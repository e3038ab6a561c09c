"""A Python tool: multi-turn arithmetic where the policy may run code before it answers.

The transcript reads `q:347*29-18` `<py>print(347*29-18)</py>` `\\nout:10045\\n`
`<answer>10045</answer>`. Each action is either a tool call, `<py>code</py>` (or a fenced
```python block), which runs in the code sandbox (rlscale.verifiers.code.run_program, same
limits as code rewards) and whose output comes back as the environment's turn (masked from the
loss by the orchestrator), or the answer, `<answer>N</answer>`, which ends the episode with
reward 1 when N is the value. Anything else, or more than `max_calls` tool calls, ends it with 0.
The verdict's flags are the hack surfaces the episode's programs touched.

Actions end at a newline (one line each, which the character-level built-in models need);
`multiline=True` drops that stop, so a real model can write fenced blocks over several lines.
"""

from __future__ import annotations

import random
import re

from rlscale.envs import register
from rlscale.envs.arithmetic import _evaluate
from rlscale.envs.base import MultiTurnEnvironment, Task
from rlscale.verifiers import Verdict
from rlscale.verifiers import code as code_verifier

_CALL = re.compile(r"<py>(.*?)</py>|```(?:python|py)?\n(.*?)```", re.DOTALL)
_ANSWER = re.compile(r"<answer>\s*(-?\d{1,30})\s*</answer>")
MAX_OUTPUT_CHARS = 60


@register("python_tool")
class PythonTool(MultiTurnEnvironment):
    description = "multi-turn: compute an arithmetic value, optionally running Python in the sandbox first"
    action_stop = ("\n",)  # every answer of the environment starts on a new line
    uses_sandbox = True  # the orchestrator checks the sandbox (code.require_sandbox) before a run

    def __init__(
        self,
        digits: int = 3,
        terms: int = 3,
        max_calls: int = 2,
        timeout_s: float = 5.0,
        multiline: bool = False,
    ):
        """digits, terms: the size of the expression; max_calls: tool calls before the answer;
        timeout_s: per call; multiline: actions do not end at a newline (for real models)."""
        if not 1 <= digits <= 6 or terms < 2 or max_calls < 0:
            raise ValueError("need 1 <= digits <= 6, terms >= 2, max_calls >= 0")
        self.digits, self.terms, self.max_calls, self.timeout_s = digits, terms, max_calls, timeout_s
        if multiline:
            self.action_stop = ()
        self.task: Task | None = None

    def sample(self, rng: random.Random) -> Task:
        numbers = [str(rng.randint(2, 10**self.digits - 1)) for _ in range(self.terms)]
        expr = numbers[0] + "".join(rng.choice("+-*") + n for n in numbers[1:])
        return Task(prompt=f"q:{expr}\n", answer=str(_evaluate(expr)), meta={"expr": expr})

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        task = (options or {}).get("task")
        self.task = task or self.sample(random.Random(int(self.np_random.integers(1 << 31))))
        self.calls, self.flags = 0, set()
        return self.task.prompt, {"task": self.task}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        answer, call = _ANSWER.search(action), _CALL.search(action)
        if answer and (not call or answer.start() < call.start()):
            return self._end(int(answer.group(1)) == int(self.task.answer), f"answered {answer.group(1)}")
        if not call:
            return self._end(False, "neither a tool call nor an answer")
        if self.calls >= self.max_calls:
            return self._end(False, f"more than {self.max_calls} tool calls")
        self.calls += 1
        return f"\nout:{self._run(call.group(1) or call.group(2))}\n", 0.0, False, False, {}

    def demonstration(self, task: Task) -> str:
        """Compute with the tool, then answer what it printed."""
        return f"<py>print({task.meta['expr']})</py>\nout:{task.answer}\n<answer>{task.answer}</answer>"

    def _run(self, program: str) -> str:
        try:
            run = code_verifier.run_program(program, timeout_s=self.timeout_s)
        except RuntimeError as error:  # the sandbox refused (not allowed to run unsandboxed)
            return f"error: {error}"[:MAX_OUTPUT_CHARS]
        self.flags.update(run.flags)
        if run.timed_out:
            text = f"timeout after {self.timeout_s:g}s"
        elif run.returncode != 0:  # the error's last line, e.g. "NameError: name 'x' is not defined"
            text = (run.stderr_tail.strip().splitlines() or [f"exit code {run.returncode}"])[-1]
        else:
            text = run.stdout.decode("utf-8", errors="replace").strip()
        # one line of printable ASCII: the character-level models have no other tokens
        return "".join(c for c in " ".join(text.split()) if " " <= c <= "~")[:MAX_OUTPUT_CHARS]

    def _end(self, correct: bool, reason: str) -> tuple[str, float, bool, bool, dict]:
        if correct:
            verdict = Verdict(1.0, True, f"{reason}: correct", tuple(sorted(self.flags)))
        else:
            verdict = Verdict(0.0, False, f"{reason}; expected {self.task.answer}", tuple(sorted(self.flags)))
        return "", verdict.score, True, False, {"verdict": verdict}
