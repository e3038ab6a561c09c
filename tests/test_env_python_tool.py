"""python_tool: multi-turn arithmetic with code run in the sandbox, and a GRPO step on it."""

from __future__ import annotations

import random
import warnings

from gymnasium.utils.env_checker import check_env
from helpers import learner_spy

from rlscale.envs import make_env
from rlscale.envs.base import Task, as_episode
from rlscale.envs.episodes import run_episodes

TASK = Task("q:12*34+5\n", "413", {"expr": "12*34+5"})


def play(actions: list[str], **kwargs):
    episode = as_episode(make_env("python_tool", **kwargs), TASK)
    assert episode.reset()[0] == "q:12*34+5\n"
    return [episode.step(action) for action in actions]


def test_follows_the_gymnasium_api():
    env = make_env("python_tool")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no spec, cannot test render modes"
        check_env(env, skip_render_check=True)
    task = env.sample(random.Random(0))
    assert task.prompt.startswith("q:") and int(task.answer) == eval(task.meta["expr"])  # our own expression


def test_tool_output_comes_back_and_the_right_answer_wins():
    steps = play(["<py>print(12*34+5)</py>", "<answer>413</answer>"])
    assert steps[0][:4] == ("\nout:413\n", 0.0, False, False)
    observation, reward, terminated, _, info = steps[1]
    assert (observation, reward, terminated) == ("", 1.0, True) and info["verdict"].correct


def test_fenced_blocks_are_tool_calls_too():
    steps = play(["```python\nx = 12*34\nprint(x + 5)\n```", "<answer>413</answer>"], multiline=True)
    assert steps[0][0] == "\nout:413\n" and steps[1][1] == 1.0
    assert make_env("python_tool", multiline=True).action_stop == ()


def test_errors_and_timeouts_are_observations():
    (observation, *_), *_ = play(["<py>print(undefined)</py>"])
    assert observation == "\nout:NameError: name 'undefined' is not defined\n"
    (observation, *_), *_ = play(["<py>while True: pass</py>"], timeout_s=1.0)
    assert observation == "\nout:timeout after 1s\n"


def test_output_is_one_short_printable_line():
    (observation, *_), *_ = play(["<py>print('\\x1b[2J' + 'x' * 500 + '\\n\\ty')</py>"])
    body = observation.removeprefix("\nout:").removesuffix("\n")
    assert len(body) <= 60 and all(" " <= c <= "~" for c in body)


def test_wrong_answer_no_action_and_too_many_calls_score_zero():
    assert play(["<answer>412</answer>"])[0][1:3] == (0.0, True)
    assert play(["413"])[0][4]["verdict"].reason.startswith("neither a tool call nor an answer")
    *_, (_, reward, terminated, _, info) = play(["<py>1</py>", "<py>2</py>", "<py>3</py>"])
    assert (reward, terminated) == (0.0, True) and "more than 2 tool calls" in info["verdict"].reason


def test_the_verdict_carries_hack_flags_of_the_tool_runs():
    *_, (_, _, _, _, info) = play(
        ["<py>import sys; print(open('/proc/self/status').read()[:5])</py>", "<answer>1</answer>"]
    )
    assert "proc" in info["verdict"].flags


def test_demonstration_replays_to_a_win():
    env = make_env("python_tool")
    task = env.sample(random.Random(5))

    def policy(transcripts):
        return [env.demonstration(task).split("\n")[0 if not tr.turns else 2] for tr in transcripts]

    (transcript,) = run_episodes([(env, task)], policy, max_turns=3)
    assert transcript.correct and transcript.reward == 1.0
    assert transcript.text() == task.prompt + env.demonstration(task)


def test_python_tool_trains_through_the_real_stack(ray_session, tmp_path):
    """A GRPO step over vLLM + learner: tool output is the environment's turn, masked out."""
    from rlscale.config_io import build_config
    from rlscale.orchestrator import Orchestrator

    cfg = build_config(
        {
            "name": "tool",
            "output_dir": str(tmp_path),
            "env": {"name": "python_tool", "kwargs": {"digits": 2, "terms": 2}},
            "rollout": {"group_size": 2, "prompts_per_step": 3, "max_tokens": 24, "max_turns": 3},
            "learner": {"lr": 1e-2},
            "algo": {"kl_coef": 0.0},
            "builtin": {"sft_steps": 20, "sft_batch": 16},
        },
        source="tool",
    )
    orch = Orchestrator(cfg)
    try:
        with learner_spy(orch) as sent:
            record = orch.step(1)
    finally:
        orch.shutdown()
    samples = [s for group in sent[-1].groups for s in group.samples]
    assert record["samples"] == 6 and len(samples) == 6
    for response, mask in ((s.token_ids, s.mask()) for s in samples):
        assert len(response) == len(mask) and mask[0] == 1.0
        text = orch.tokenizer.decode(response)
        if "\nout:" in text:  # the tool's output is the environment's: masked out of the loss
            start = len(orch.tokenizer.encode(text[: text.index("\nout:")]))
            assert mask[start] == 0.0


def test_config_fits_the_builtin_models():
    from pathlib import Path

    from rlscale.config_io import load_config
    from rlscale.models import CHARS, MAX_POSITIONS

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "python_tool.yaml")
    assert cfg.env.name == "python_tool" and cfg.model.startswith("builtin:")
    env = make_env(cfg.env.name, **cfg.env.kwargs)
    rng = random.Random(0)
    tasks = [env.sample(rng) for _ in range(256)]
    assert all(set(t.prompt + env.demonstration(t)) <= set(CHARS) for t in tasks)
    # every action of the demonstration fits in one generation; the whole episode in the context
    actions = [line for t in tasks for line in env.demonstration(t).split("\n")[::2]]
    assert max(map(len, actions)) < cfg.rollout.max_tokens
    longest = max(len(t.prompt) + len(env.demonstration(t)) for t in tasks)
    assert 2 * longest + cfg.rollout.max_tokens <= MAX_POSITIONS
    assert cfg.rollout.max_turns == env.max_calls + 1
