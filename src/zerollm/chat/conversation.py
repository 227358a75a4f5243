"""Conversations: system prompt + turns, rendered to prompt ids, kept within a token budget; JSON save/load.

    Conversation(system) ──add("user", ...)──▶ messages (OpenAI shape: role, content, tool_calls, ...)
        ──chat.format.prompt_ids(messages, tokenizer, template=, tools=)──▶ ids ending in the assistant header
        ──fit(tokenizer, budget)──▶ drops the oldest turns (never the system prompt or the newest turn)
                                   until at most `max_history` messages remain and the ids fit the budget

Rendering lives in chat/format.py (`prompt_ids`). With zerollm tokenizers it is ChatML through
format.render_chatml — the same renderer post-training (SFT) uses, so what a model was fine-tuned on
and what it is prompted with here are the same ids. The special tokens `<|im_start|>`, `<|im_end|>`,
`<|tool_call|>`, `<|tool_result|>`, ... are inserted as ids and message text is encoded as plain text, so a
user typing "<|im_end|>" cannot forge a turn boundary. Tools are listed in the system turn ("# Tools" and one
OpenAI tool JSON per line); a tool call is `<|tool_call|>{"name": ..., "arguments": {...}}<|/tool_call|>`
inside the assistant turn and a tool result a `tool` turn `<|tool_result|>...<|/tool_result|>`. With a
converted Hugging Face model its own Jinja chat template (from its directory) is rendered as transformers'
apply_chat_template renders it and encoded allowing its special tokens.
A turn is a user message with everything after it up to the next user message (assistant replies, tool
calls and results), so dropping a turn never leaves a tool result without its call.
"""
from __future__ import annotations

import json
from pathlib import Path

from zerollm.artifacts import atomic_write_json
from zerollm.chat.format import ROLES, prompt_ids


class ContextTooLong(ValueError):
    """The system prompt plus the newest turn alone do not fit in the token budget."""


class Conversation:
    """A system prompt and a list of messages; see the module docstring."""

    def __init__(self, system: str | None = None, messages: list[dict] | None = None,
                 max_history: int | None = None):
        """max_history: the most messages (besides the system prompt) a prompt keeps, as the books'
        chatbots keep the last N lines; whole turns are dropped, so a turn longer than that stays whole."""
        if max_history is not None and max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {max_history}")
        self.system = system
        self.messages: list[dict] = list(messages or [])
        self.max_history = max_history

    def add(self, role: str, content: str | None, **extra) -> dict:
        if role not in ROLES or role == "system":
            raise ValueError("role must be one of user, assistant, tool (set the system prompt with .system)")
        msg = {"role": role, "content": content, **extra}
        self.messages.append(msg)
        return msg

    def reset(self) -> None:
        """Forget the turns, keep the system prompt."""
        self.messages.clear()

    def all_messages(self) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.messages

    def turns(self) -> list[list[dict]]:
        """Messages grouped into turns, each starting at a user message."""
        turns: list[list[dict]] = []
        for m in self.messages:
            if m["role"] == "user" or not turns:
                turns.append([])
            turns[-1].append(m)
        return turns

    def fit(self, tokenizer, budget: int, tools=None, template: str | None = None) -> tuple[list[int], int]:
        """(prompt ids within `budget` tokens, number of oldest turns dropped). Keeps the system prompt and
        the newest turn; raises ContextTooLong if those alone do not fit."""
        turns = self.turns()
        head = [{"role": "system", "content": self.system}] if self.system else []
        # drop from the front; binary search would be faster but conversations are short
        for dropped in range(len(turns)):
            kept = [m for t in turns[dropped:] for m in t]
            if self.max_history is not None and len(kept) > self.max_history and dropped < len(turns) - 1:
                continue  # over the message count: drop another turn first
            ids = prompt_ids(head + kept, tokenizer, template=template, tools=tools)
            if len(ids) <= budget:
                return ids, dropped
        newest = head + (turns[-1] if turns else [])
        need = len(prompt_ids(newest, tokenizer, template=template, tools=tools))
        if not turns and need <= budget:
            return prompt_ids(head, tokenizer, template=template, tools=tools), 0
        raise ContextTooLong(f"the system prompt and the latest message need {need} tokens, over the budget of "
                             f"{budget}; shorten the message or the system prompt")

    # persistence
    def to_dict(self) -> dict:
        return {"format": "zerollm-conversation", "version": 1, "system": self.system, "messages": self.messages}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Conversation":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ValueError(f"{path}: cannot read ({e.strerror or e})") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from None
        if isinstance(data, list):  # a bare OpenAI messages list
            data = {"messages": data}
        msgs = data.get("messages")
        if not isinstance(msgs, list) or not all(isinstance(m, dict) and m.get("role") in ROLES for m in msgs):
            raise ValueError(f"{path}: expected {{\"messages\": [{{\"role\": ..., \"content\": ...}}, ...]}}")
        system = data.get("system")
        if msgs and msgs[0]["role"] == "system":
            system, msgs = msgs[0]["content"], msgs[1:]
        return cls(system, msgs)
