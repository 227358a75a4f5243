"""`zerollm chat`: talk to a model in the terminal (streaming; /reset /system /save /load /quit).

    zerollm chat --model DIR [--system "You are concise."] [--temperature 0.7]

The REPL and its session live in zerollm/chat/repl.py; conversations and their token budget in
chat/conversation.py; the chat format in chat/format.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zerollm.chat.repl import chat_main


@dataclass
class ChatConfig:
    model: str = field(default="",
                       metadata={"required": True, "help": "checkpoint, run or Hugging Face model directory"})
    system: str | None = field(default=None, metadata={"help": "system prompt"})
    max_new_tokens: int = 256
    temperature: float = 0.7
    seed: int | None = None
    device: str = "auto"


def chat(model: str | Path, system: str | None = None, device: str = "auto", **kwargs) -> None:
    """The interactive REPL (kwargs: max_new_tokens, temperature, top_p, seed)."""
    chat_main(str(model), system=system, device=device, **kwargs)


__all__ = ["chat"]
