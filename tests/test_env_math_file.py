"""math_file (problems from local JSONL/Parquet files) and linear_equations (procedural).

Every data file here is generated in the test; none is copied from a dataset.
"""

from __future__ import annotations

import json
import random
import re
import warnings

import pyarrow
import pyarrow.parquet
import pytest

from rlscale.envs import make_env
from rlscale.envs.base import Task

GSM_ROWS = [
    {"question": "Ann has 3 apples and buys 4 more. How many now?", "answer": "3+4=7\n#### 7"},
    {"question": "A box holds 1,000 pens; 250 are sold. How many are left?", "answer": "...\n#### 750"},
    {"question": "Tom reads 12 pages a day for 5 days. Pages read?", "answer": "12*5=60\n#### 60"},
]


def write_jsonl(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_gsm8k_jsonl_answers_prompts_and_seeded_sampling(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", [GSM_ROWS[0], {**GSM_ROWS[1], "answer": "x\n#### 1,000"}])
    env = make_env("math_file", path=str(path))
    assert sorted(gold for _, _, gold in env.problems) == ["1000", "7"]  # commas dropped
    task = env.sample(random.Random(0))
    assert task.prompt.endswith("\nPut the final answer in \\boxed{}.")
    assert task.meta["source"].startswith("gsm.jsonl line ")
    draws = lambda seed: [env.sample(random.Random(seed)).prompt for _ in range(3)]  # noqa: E731
    assert draws(4) == draws(4)
    rng = random.Random(1)
    assert len({env.sample(rng).answer for _ in range(50)}) == 2  # the rng reaches every row


def test_scoring_with_the_math_verifier(tmp_path):
    env = make_env("math_file", path=str(write_jsonl(tmp_path / "g.jsonl", GSM_ROWS[:1])))
    task = env.sample(random.Random(0))
    assert env.score(task, env.demonstration(task)).correct
    assert env.demonstration(task) == "\\boxed{7}"
    assert env.score(task, "3 plus 4 makes 7").correct  # math-verify reads prose's last number
    assert not env.score(task, "3 plus 4 makes 7 or 8").correct
    wrong = env.score(task, "\\boxed{8}")
    assert not wrong.correct and wrong.score == 0 and wrong.reason == "different integers"
    assert env.score(task, "no idea").reason == "no answer found"


def test_math_format_takes_the_last_boxed_and_a_custom_template(tmp_path):
    rows = [{"problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?", "solution": "So \\boxed{\\frac{3}{4}}."}]
    rows.append({"problem": "Nested?", "solution": "\\boxed{1} first, then \\boxed{\\sqrt{x^{2}}}"})
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    env = make_env(
        "math_file",
        path=str(path),
        question_field="problem",
        answer_field="solution",
        answer_format="math",
        prompt_template="Q: {question} A: \\boxed{}",
    )
    assert [gold for _, _, gold in env.problems] == ["\\frac{3}{4}", "\\sqrt{x^{2}}"]
    task = Task(prompt="", answer="\\frac{3}{4}")
    assert env.score(task, "\\boxed{0.75}").correct and env.score(task, "\\boxed{3/4}").correct
    assert not env.score(task, "\\boxed{4/3}").correct
    assert env.sample(random.Random(0)).prompt.startswith("Q: ")
    assert all(env.sample(random.Random(s)).prompt.endswith(" A: \\boxed{}") for s in range(3))


def test_malformed_rows_are_skipped_and_counted_in_one_warning(tmp_path):
    lines = [
        GSM_ROWS[0],
        "{not json",
        {"question": "no answer field"},
        {"question": 7, "answer": "#### 7"},  # non-text question
        {"question": "no marker", "answer": "7"},  # gsm8k answer without ####
        ["a", "list"],
        "",  # blank lines are not rows
        GSM_ROWS[2],
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make_env("math_file", path=str(path))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "skipped 5 malformed row(s)" in message and "mixed.jsonl line 2: bad JSON" in message
    assert len(env.problems) == 2


def test_plain_answers_accept_numbers_but_not_other_types(tmp_path):
    rows = [
        {"q": "6*7?", "a": 42},
        {"q": "half?", "a": "1/2"},
        {"q": "bool?", "a": True},
        {"q": "x", "a": [1]},
    ]
    path = write_jsonl(tmp_path / "plain.jsonl", rows)
    with pytest.warns(UserWarning, match="skipped 2 malformed"):
        env = make_env(
            "math_file", path=str(path), question_field="q", answer_field="a", answer_format="plain"
        )
    assert [gold for _, _, gold in env.problems] == ["42", "1/2"]


def test_empty_or_all_malformed_files_are_a_clear_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=re.escape(str(empty)) + ".*no usable problems"):
        make_env("math_file", path=str(empty))
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{", {"question": "q"}])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="all 2 rows malformed"):
        make_env("math_file", path=str(bad))
    with pytest.raises(ValueError, match="no such file"):
        make_env("math_file", path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="answer_format"):
        make_env("math_file", path=str(bad), answer_format="latex")


def test_parquet_directory_split_and_limit(tmp_path):
    for split, rows in (("train", GSM_ROWS), ("test", GSM_ROWS[:1])):
        table = pyarrow.Table.from_pylist(rows)
        pyarrow.parquet.write_table(table, tmp_path / f"{split}-00000-of-00001.parquet")
    assert len(make_env("math_file", path=str(tmp_path), split="train").problems) == 3
    test_env = make_env("math_file", path=str(tmp_path), split="test")
    assert [gold for *_, gold in test_env.problems] == ["7"]
    assert len(make_env("math_file", path=str(tmp_path)).problems) == 4  # every file without a split
    limited = make_env("math_file", path=str(tmp_path), split="train", limit=2)
    assert [gold for *_, gold in limited.problems] == ["7", "750"]
    with pytest.raises(ValueError, match="no .* files for split 'dev'"):
        make_env("math_file", path=str(tmp_path), split="dev")
    single = tmp_path / "train-00000-of-00001.parquet"
    with pytest.raises(ValueError, match="needs a directory"):
        make_env("math_file", path=str(single), split="train")


def test_parquet_missing_column_counts_every_row(tmp_path):
    path = tmp_path / "q.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist([{"question": "q1"}, {"question": "q2"}]), path)
    with (
        pytest.warns(UserWarning, match="skipped 2"),
        pytest.raises(ValueError, match="missing field 'answer'"),
    ):
        make_env("math_file", path=str(path))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        make_env("math_file", path=str(broken))


# --- linear_equations: the procedural math env of configs/math.yaml ---------------------------


def test_linear_equations_demonstrations_solve_the_equation():
    import sympy
    from sympy.parsing.sympy_parser import implicit_multiplication, parse_expr, standard_transformations

    def parse(side):  # "3x+5" -> 3*x + 5
        return parse_expr(side, transformations=(*standard_transformations, implicit_multiplication))

    env = make_env("linear_equations", both_sides=True, fractions=True)
    rng = random.Random(0)
    for _ in range(100):
        task = env.sample(rng)
        left, right = task.meta["equation"].split("=")
        solution = sympy.solve(parse(left) - parse(right), sympy.Symbol("x"))
        assert solution == [sympy.Rational(task.answer)], task.meta["equation"]
        assert env.score(task, env.demonstration(task)).correct
        assert task.prompt.isascii()


def test_linear_equations_knobs_and_verdicts():
    simple = [make_env("linear_equations").sample(random.Random(s)) for s in range(50)]
    assert all(
        re.fullmatch(r"Solve for x: -?\d*x[+-]\d+=-?\d+\n|Solve for x: -?\d*x=-?\d+\n", t.prompt)
        for t in simple
    )
    assert all("/" not in t.answer for t in simple)  # integer solutions by default
    both = [make_env("linear_equations", both_sides=True).sample(random.Random(s)) for s in range(50)]
    assert all(t.meta["equation"].count("x") == 2 for t in both)
    fractional = [make_env("linear_equations", fractions=True).sample(random.Random(s)) for s in range(50)]
    assert any("/" in t.answer for t in fractional)
    env = make_env("linear_equations")
    task = Task("Solve for x: 3x+5=20\n", "5")
    assert env.score(task, "\\boxed{5}").correct and env.score(task, "x = 5").correct
    assert env.score(task, "\\boxed{6}").reason == "different integers"
    with pytest.raises(ValueError, match="max_coef"):
        make_env("linear_equations", max_coef=1)
