"""R1-style format reward: `<think>…</think><answer>…</answer>` and nothing else.

Exactly one of each tag, in that order; only whitespace around and between the two blocks.
"""

import re

from rlscale.verifiers import Verdict

TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"
FORMAT_PATTERN = re.compile(rf"\A\s*<think>{_NO_TAG}</think>\s*<answer>{_NO_TAG}</answer>\s*\Z", re.DOTALL)


def verify(response: str) -> Verdict:
    try:
        if FORMAT_PATTERN.match(response):
            return Verdict.right("well formatted")
        return Verdict.wrong(_what_is_wrong(response))
    except Exception as error:  # a verifier never raises on model output
        return Verdict.wrong(f"verifier error: {error!r}")


def _what_is_wrong(response: str) -> str:
    counts = {tag: response.count(tag) for tag in TAGS}
    if any(count != 1 for count in counts.values()):
        found = ", ".join(f"{tag} x{count}" for tag, count in counts.items())
        return f"expected exactly one of each tag, found {found}"
    positions = [response.index(tag) for tag in TAGS]
    if positions != sorted(positions):
        return "tags out of order"
    if response[: positions[0]].strip():
        return "text before <think>"
    if response[positions[-1] + len(TAGS[-1]) :].strip():
        return "text after </answer>"
    return "text between </think> and <answer>"
