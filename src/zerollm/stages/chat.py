"""`zerollm chat`: talk to a model in the terminal (streaming; /reset /system /save /load /quit).

    zerollm chat --model DIR [--system "You are concise."] [--temperature 0.7] [--max-history 10]
                 [--tools calculator,datetime,search:INDEX_DIR]

A model without a chat template (a base GPT-2) is prompted in the plain "User:/Assistant:" format
(chat.format.PLAIN_TEMPLATE). With --tools every reply runs chat.tools.run_agent's loop: the model may call
a tool (decoded under its JSON Schema), the call and result are printed, fed back, and the model answers.

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
    max_history: int | None = field(default=None, metadata={"help": "keep at most N messages in the prompt"})
    tools: str | None = field(default=None, metadata={
        "metavar": "LIST", "help": "tools the model may call: calculator,datetime,search:INDEX_DIR"})
    max_tool_steps: int = field(default=4, metadata={"help": "tool calls per reply at most (with --tools)"})


def chat(model: str | Path, system: str | None = None, device: str = "auto", **kwargs) -> None:
    """The interactive REPL (kwargs: max_new_tokens, temperature, top_p, seed, max_history, tools: a
    "calculator,datetime,search:DIR" string or chat.tools.Tool objects)."""
    chat_main(str(model), system=system, device=device, **kwargs)


__all__ = ["chat"]
