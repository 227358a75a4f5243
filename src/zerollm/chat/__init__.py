"""Using a model: conversations with a token budget, the chat REPL, prompt templates, and function calling.

    conversation.py     Conversation (system prompt, turns, budget, JSON save/load)
    format.py           the chat formats: render (ids + loss mask), prompt_ids (ids to generate from), ChatML
    repl.py             `zerollm chat --model DIR`
    prompts.py          template files with named variables; few-shot selection; self-consistency
    tools.py            Tool (OpenAI shape / from Python functions), safe calculator, run_agent; tool calls are
                        decoded with the engine's JSON Schema constrained decoder (engine/constrained.py)
"""
from __future__ import annotations

from .conversation import ContextTooLong, Conversation
from .format import prompt_ids, render
from .tools import Tool, builtin_tools, calculate, execute, run_agent, tool

__all__ = ["Conversation", "ContextTooLong", "prompt_ids", "render", "Tool", "tool", "builtin_tools", "calculate",
           "execute", "run_agent"]
