"""Math word problems from a local JSONL or Parquet file (GSM8K, MATH, or plain answers).

Nothing is downloaded: `path` is a file, or a directory of files (then `split` picks the files
whose names start with it, as in a Hugging Face dataset's `train-00000-of-00001.parquet`).
The gold answer is read from `answer_field` according to `answer_format`:
  gsm8k  the text after the last `####` ("... so 72 in all.\\n#### 72" -> 72)
  math   the content of the solution's last \\boxed{}
  plain  the field itself
Rows that cannot be used (bad JSON, a missing or non-text field -- a number is accepted as an
answer --, no answer in the solution) are skipped and counted in one warning. Responses are
judged by the math verifier.
"""

from __future__ import annotations

import gzip
import json
import random
import warnings
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet

from rlscale.envs import register
from rlscale.envs.base import Environment, Task
from rlscale.verifiers import Verdict
from rlscale.verifiers import math as math_verifier

DEFAULT_TEMPLATE = "{question}\nPut the final answer in \\boxed{}."
ANSWER_FORMATS = ("gsm8k", "math", "plain")
_DATA_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".parquet")


@register("math_file")
class MathFile(Environment):
    description = "math word problems from a local JSONL/Parquet file (gsm8k, math or plain answers)"

    def __init__(
        self,
        path: str,
        question_field: str = "question",
        answer_field: str = "answer",
        answer_format: str = "gsm8k",
        prompt_template: str = DEFAULT_TEMPLATE,
        split: str | None = None,
        limit: int | None = None,
    ):
        if answer_format not in ANSWER_FORMATS:
            raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
        if "{question}" not in prompt_template:
            raise ValueError("prompt_template must contain {question}")
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1")
        self.path, self.answer_format, self.prompt_template = Path(path), answer_format, prompt_template
        self.fields = (question_field, answer_field)
        self.problems: list[tuple[str, str, str]] = []  # (where, question, gold answer)
        skipped: list[str] = []
        for where, row in _read_rows(_data_files(self.path, split)):
            problem = self._problem(row)
            if isinstance(problem, str):
                skipped.append(f"{where}: {problem}")
                continue
            self.problems.append((where, *problem))
            if limit is not None and len(self.problems) == limit:
                break
        if skipped:
            warnings.warn(
                f"math_file {self.path}: skipped {len(skipped)} malformed row(s); first: {skipped[0]}",
                stacklevel=2,
            )
        if not self.problems:
            why = f" (all {len(skipped)} rows malformed; first: {skipped[0]})" if skipped else ""
            raise ValueError(f"math_file {self.path}: no usable problems{why}")

    def sample(self, rng: random.Random) -> Task:
        where, question, answer = self.problems[rng.randrange(len(self.problems))]
        # str.replace, not str.format: templates keep their literal braces, as in \boxed{}
        prompt = self.prompt_template.replace("{question}", question)
        return Task(prompt=prompt, answer=answer, meta={"source": where})

    def score(self, task: Task, response: str) -> Verdict:
        return math_verifier.verify(response, task.answer)

    def demonstration(self, task: Task) -> str:
        return f"\\boxed{{{task.answer}}}"

    def _problem(self, row: object) -> tuple[str, str] | str:
        """(question, gold answer) from a row, or why the row cannot be used."""
        if not isinstance(row, dict):
            return "not a JSON object" if row is not None else "bad JSON"
        values = []
        for name in self.fields:
            value = row.get(name)
            if value is None:
                return f"missing field {name!r}"
            if name == self.fields[1] and isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)  # a numeric answer, as plain files often have
            if not isinstance(value, str) or not value.strip():
                return f"field {name!r} is not non-empty text"
            values.append(value.strip())
        question, answer = values
        gold = self._gold(answer)
        return (question, gold) if gold else f"no {self.answer_format} answer in {self.fields[1]!r}"

    def _gold(self, answer: str) -> str | None:
        if self.answer_format == "gsm8k":
            _, marker, final = answer.rpartition("####")
            return final.strip().replace(",", "") if marker else None
        if self.answer_format == "math":
            return math_verifier.last_boxed(answer)  # brace-matched: \boxed{\frac{1}{2}} whole
        return answer


def _data_files(path: Path, split: str | None) -> list[Path]:
    if path.is_file():
        if split is not None:
            raise ValueError(f"math_file {path}: split={split!r} needs a directory of split files")
        return [path]
    if not path.is_dir():
        raise ValueError(f"math_file {path}: no such file or directory")
    files = sorted(
        file
        for file in path.iterdir()
        if file.name.endswith(_DATA_SUFFIXES) and (split is None or file.name.startswith(split))
    )
    if not files:
        raise ValueError(f"math_file {path}: no {'/'.join(_DATA_SUFFIXES)} files for split {split!r}")
    return files


def _read_rows(files: list[Path]) -> Iterator[tuple[str, object]]:
    """(where, row) for every row; row is None where a JSON line does not parse."""
    for file in files:
        if file.name.endswith(".parquet"):
            try:
                rows = pyarrow.parquet.read_table(file).to_pylist()
            except Exception as error:  # pyarrow raises several kinds for a bad file
                raise ValueError(f"math_file {file}: not a readable Parquet file: {error}") from None
            for number, row in enumerate(rows):
                yield f"{file.name} row {number}", row
            continue
        opener = gzip.open if file.name.endswith(".gz") else open
        with opener(file, "rt", encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    yield f"{file.name} line {number}", _json_or_none(line)


def _json_or_none(line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None
