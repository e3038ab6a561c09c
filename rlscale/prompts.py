"""Prompt rendering: how a task becomes the tokens the model sees (config section `prompt`).

A task's prompt is plain text or a list of chat messages (`{"role": ..., "content": ...}`).
- `chat`: the tokenizer's chat template, with the generation prompt (the assistant turn opened);
  `prompt.system` is prepended as a system message.
- `raw`: the text as it is (messages: the system text, then the last user message's content).
- `r1_zero`: DeepSeek-R1-Zero's base-model template (DeepSeek-AI 2025, Table 1), which asks for
  `<think>...</think> <answer>...</answer>`.
- `auto`: `chat` when the tokenizer has a chat template, else `raw` (the built-in models).

Generation stops at the tokenizer's EOS, at the EOS ids of the model's generation config and at
the chat template's end-of-turn token; the stop token the model sampled stays in the response,
so the policy is trained to stop.

Multi-turn episodes continue the rendered prompt with the environment's replies as plain text
(not as new chat turns): the environment owns the transcript's format.
"""

from __future__ import annotations

from pathlib import Path

from rlscale.config import PromptConfig

R1_ZERO = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves "
    "it. The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think> </think> "
    "and <answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>. User: {prompt}. Assistant:"
)

Prompt = str | list[dict]


def user_text(prompt: Prompt) -> str:
    """The question a prompt asks: the text, or the last user message's content."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    if not users:
        raise ValueError("a chat prompt needs at least one user message")
    return users[-1]


def _system_text(prompt: Prompt, system: str | None) -> str:
    inline = (
        [m["content"] for m in prompt if m.get("role") == "system"] if not isinstance(prompt, str) else []
    )
    return "\n".join([*([system] if system else []), *inline])


class PromptRenderer:
    """Renders prompts for one tokenizer under one `PromptConfig`."""

    def __init__(self, cfg: PromptConfig, tokenizer, model_dir: str | Path | None = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.template = ("chat" if has_template else "raw") if cfg.template == "auto" else cfg.template
        if self.template == "chat" and not has_template:
            raise ValueError("prompt.template: 'chat', but the model's tokenizer has no chat template")
        self.stop_token_ids = self._stop_token_ids(model_dir)

    def text(self, prompt: Prompt) -> str:
        """The rendered prompt as text: exactly what the model sees."""
        if self.template == "chat":
            return self.tokenizer.apply_chat_template(
                self._messages(prompt), add_generation_prompt=True, tokenize=False
            )
        system = _system_text(prompt, self.cfg.system)
        question = user_text(prompt)
        if self.template == "r1_zero":
            question = R1_ZERO.format(prompt=question)
        return f"{system}\n{question}" if system else question

    def tokens(self, prompt: Prompt) -> list[int]:
        if self.template == "chat":  # the template writes its own special tokens (BOS included)
            return list(self.tokenizer.encode(self.text(prompt), add_special_tokens=False))
        return list(self.tokenizer.encode(self.text(prompt)))

    def _messages(self, prompt: Prompt) -> list[dict]:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if self.cfg.system:
            messages = [{"role": "system", "content": self.cfg.system}, *messages]
        return messages

    def _stop_token_ids(self, model_dir) -> tuple[int, ...]:
        """Stop tokens besides the tokenizer's EOS (which vLLM stops at by itself): the EOS ids of
        the generation config and, for chat, the end-of-turn token."""
        tok, ids = self.tokenizer, set()
        if model_dir is not None:
            from transformers import GenerationConfig

            try:
                eos = GenerationConfig.from_pretrained(model_dir).eos_token_id
            except OSError:  # no generation_config.json
                eos = None
            ids.update([eos] if isinstance(eos, int) else eos or [])
        if self.template == "chat":
            ids.update(self._end_of_turn())
        return tuple(sorted(ids - {tok.eos_token_id}))

    def _end_of_turn(self) -> list[int]:
        """The special token that closes an assistant turn in the chat template, if any."""
        marker = "rlscale-end-of-turn-probe"
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": marker}], tokenize=False
        )
        after = text.split(marker, 1)[-1]
        ids = self.tokenizer.encode(after, add_special_tokens=False)
        special = set(self.tokenizer.all_special_ids) | set(
            getattr(self.tokenizer, "added_tokens_decoder", {})
        )
        return [ids[0]] if ids and ids[0] in special else []
