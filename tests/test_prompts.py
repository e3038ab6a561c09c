"""Prompt rendering: templates, system prompts, chat messages and stop tokens, on real tokenizers."""

from __future__ import annotations

import pytest

from rlscale.config import PromptConfig
from rlscale.models import build_tokenizer
from rlscale.prompts import R1_ZERO, PromptRenderer

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture
def chat_tokenizer():
    """The character tokenizer with ChatML special tokens and template (a BPE-style chat model)."""
    tok = build_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def test_auto_is_raw_for_the_built_in_models_and_leaves_prompts_as_they_were():
    tok = build_tokenizer()
    renderer = PromptRenderer(PromptConfig(), tok)
    assert renderer.template == "raw" and renderer.stop_token_ids == ()
    assert renderer.text("7+5=") == "7+5=" and renderer.tokens("7+5=") == tok.encode("7+5=")


def test_auto_uses_the_chat_template_with_the_generation_prompt(chat_tokenizer):
    renderer = PromptRenderer(PromptConfig(system="Be brief."), chat_tokenizer)
    assert renderer.template == "chat"
    text = renderer.text("What is 7+5?")
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 7+5?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = renderer.tokens("What is 7+5?")
    assert ids[0] == chat_tokenizer.convert_tokens_to_ids("<|im_start|>")  # a special token, not characters
    assert chat_tokenizer.decode(ids) == text
    # the end-of-turn token stops generation besides the EOS (which vLLM stops at by itself)
    assert renderer.stop_token_ids == (chat_tokenizer.convert_tokens_to_ids("<|im_end|>"),)


def test_chat_messages_and_raw_and_r1_zero(chat_tokenizer):
    messages = [{"role": "system", "content": "You add."}, {"role": "user", "content": "2+2?"}]
    chat = PromptRenderer(PromptConfig(template="chat"), chat_tokenizer)
    assert chat.text(messages).startswith("<|im_start|>system\nYou add.<|im_end|>\n<|im_start|>user\n2+2?")
    raw = PromptRenderer(PromptConfig(template="raw"), chat_tokenizer)
    assert raw.text(messages) == "You add.\n2+2?" and raw.stop_token_ids == ()
    r1 = PromptRenderer(PromptConfig(template="r1_zero"), chat_tokenizer)
    assert r1.text("2+2?") == R1_ZERO.format(prompt="2+2?")
    assert r1.text("2+2?").endswith("User: 2+2?. Assistant:") and "<think>" in r1.text("2+2?")


def test_chat_without_a_template_is_refused():
    with pytest.raises(ValueError, match="no chat template"):
        PromptRenderer(PromptConfig(template="chat"), build_tokenizer())
