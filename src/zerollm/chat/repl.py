"""`zerollm chat --model DIR`: an interactive chat in the terminal.

Streaming output (UTF-8 safe, so Japanese prints whole characters), the conversation kept within the
model's context by dropping the oldest turns (conversation.Conversation.fit), and commands:

    /reset           forget the conversation (keeps the system prompt)
    /system TEXT     set the system prompt (and reset)
    /save FILE       save the conversation as JSON;  /load FILE  load one
    /quit, exit      leave (also Ctrl-D)
    a line ending in "\\" continues the message on the next line (multi-line input);
    \"\"\" on its own line starts/ends a block of several lines

Works with zerollm checkpoints (ChatML over zerollm's special tokens), converted Hugging Face chat models
(their own chat template, found in the model directory) and base models with neither (the plain
"User:/Assistant:" format, chat.format.PLAIN_TEMPLATE, with a one-line warning).

Every reply goes through chat.tools.run_agent, the same loop as the agent API: with `--tools
calculator,datetime,search:INDEX_DIR` the model may call a tool (decoded under the tools' JSON Schema),
the call and its result are shown ("[tool] name(args) → result"), fed back, and the model answers.
`max_history` keeps at most that many messages in the prompt, as well as the context's token budget.
"""
from __future__ import annotations

import json
import sys
from typing import Callable, TextIO

from zerollm.engine.engine import Engine
from zerollm.loading import load_for_use

from .conversation import ContextTooLong, Conversation
from .format import resolve_template, stop_strings, stop_token_ids
from .tools import Tool, parse_tools, run_agent

HELP = "commands: /reset  /system TEXT  /save FILE  /load FILE  /quit (or exit); end a line with \\ to continue"


def read_message(read: Callable[[str], str]) -> str | None:
    """One user message from `read` (input-like); None at end of input."""
    try:
        line = read("you> ")
    except EOFError:
        return None
    if line.strip() == '"""':
        lines = []
        while True:
            try:
                nxt = read("... ")
            except EOFError:
                break
            if nxt.strip() == '"""':
                break
            lines.append(nxt)
        return "\n".join(lines)
    lines = []
    while line.endswith("\\"):
        lines.append(line[:-1])
        try:
            line = read("... ")
        except EOFError:
            break
    lines.append(line)
    return "\n".join(lines)


class ChatSession:
    """The REPL's state and one-step logic, separate from the terminal so tests can drive it."""

    def __init__(self, model, tokenizer, system: str | None = None, template: str | None = None,
                 max_new_tokens: int = 256, temperature: float = 0.7, top_p: float = 0.95, seed: int | None = None,
                 stop_ids=(), max_history: int | None = None, tools: list[Tool] | None = None,
                 max_tool_steps: int = 4):
        """template: the model's own chat template (None: ChatML, or the plain format for a tokenizer without
        ChatML tokens, chat.format.resolve_template). tools: offered to the model on every reply."""
        self.model, self.tok = model, tokenizer
        self.template = resolve_template(tokenizer, template)
        self.stop_ids = list(stop_ids)  # the model's own end ids (loading.Loaded.stop_ids)
        self.tools, self.max_tool_steps = list(tools or []), max_tool_steps
        self.max_history = max_history
        self.conv = Conversation(system, max_history=max_history)
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self._engine = None  # one Engine for the session, made on the first reply

    @property
    def engine(self):
        if self._engine is None:
            self._engine = Engine(self.model, self.tok, max_batch_size=1)
        return self._engine

    def stops(self) -> list[int]:
        """The end-of-turn ids a reply stops on (run_agent adds <|tool_call|> when tools are offered)."""
        return stop_token_ids(self.tok, self.stop_ids)

    def command(self, line: str, out: TextIO) -> bool:
        """Handle a /command; returns False when the session should end."""
        cmd, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if cmd in ("/quit", "/exit", "exit", "quit"):
            return False
        if cmd == "/reset":
            self.conv.reset()
            print("(conversation reset)", file=out)
        elif cmd == "/system":
            self.conv.system = arg or None
            self.conv.reset()
            print("(system prompt set; conversation reset)", file=out)
        elif cmd in ("/save", "/load"):
            if not arg:
                print(f"usage: {cmd} FILE", file=out)
            else:  # a failure is reported and the session (with its conversation) goes on
                try:
                    if cmd == "/save":
                        self.conv.save(arg)
                        print(f"(saved to {arg})", file=out)
                    else:
                        self.conv = Conversation.load(arg)
                        self.conv.max_history = self.max_history
                        print(f"(loaded {len(self.conv.messages)} messages from {arg})", file=out)
                except (OSError, ValueError) as e:
                    reason = e.strerror if isinstance(e, OSError) and e.strerror else e
                    print(f"error: {cmd} {arg}: {reason} (conversation kept)", file=out)
        else:
            print(HELP, file=out)
        return True

    def reply(self, message: str, out: TextIO | None = None) -> str:
        """Add the user message, stream the model's reply to `out` (None: quietly), and return it. Tool calls
        (with tools) are shown on `out` as they execute."""
        def write(text: str) -> None:
            if out is not None:
                out.write(text)
                out.flush()

        def show(step) -> None:
            args = json.dumps(step.call.arguments, ensure_ascii=False)
            write(f"[tool] {step.call.name}({args}) → {step.result.content}\n")

        self.conv.add("user", message)
        budget = self.model.cfg.max_seq_len - self.max_new_tokens
        try:
            result = run_agent(self.model, self.tok, self.conv, self.tools, max_steps=self.max_tool_steps,
                               max_new_tokens=self.max_new_tokens, budget=budget, temperature=self.temperature,
                               top_p=self.top_p, seed=self.seed, on_step=show, on_text=write, engine=self.engine,
                               template=self.template, stop_ids=self.stop_ids,
                               stop_strings=stop_strings(self.template))
        except ContextTooLong as e:
            self.conv.messages.pop()
            write(f"error: {e}\n")
            return ""
        if result.stopped == "context":  # the loop ended without an answer to stream: say why
            write(result.answer)
        if result.dropped:
            write(f"\n(the prompt left out the {result.dropped} oldest turn(s) to fit the context"
                  f"{f' and max_history={self.max_history}' if self.max_history else ''})")
        write("\n")
        return result.answer

    def say(self, message: str) -> str:
        """The reply to `message`, without printing (the books' `chatbot.generate_response(text)`)."""
        return self.reply(message, None)


def run_repl(session: ChatSession, read: Callable[[str], str] | None = None, out: TextIO | None = None) -> None:
    """The terminal loop: `read` (default input) gives lines, replies stream to `out` (default sys.stdout,
    looked up at call time)."""
    read, out = read or input, out or sys.stdout
    print(f"zerollm chat — {HELP}", file=out)
    while True:
        msg = read_message(read)
        if msg is None:
            break
        if not msg.strip():
            continue
        if msg.strip() in ("exit", "quit") or msg.startswith("/"):
            if not session.command(msg, out):
                break
            continue
        session.reply(msg, out)


def load_session(model_dir: str, system: str | None = None, device: str = "auto", tools=None,
                 **kw) -> ChatSession:
    """A ChatSession over a zerollm checkpoint or a converted / Hugging Face model directory. The model's own
    chat template (chat_template.jinja or tokenizer_config.json in its directory) is used when it has one
    other than zerollm's ChatML; otherwise ChatML over zerollm's special tokens; otherwise (a base model) the
    plain "User:/Assistant:" format. tools: Tool objects or a `--tools` string (chat.tools.parse_tools)."""
    tools = parse_tools(tools) if isinstance(tools, str) else tools
    loaded = load_for_use(model_dir, device)
    model, tok, template = loaded.model, loaded.tokenizer, loaded.chat_template
    if tools and "<|tool_call|>" not in tok.special_tokens:
        raise ValueError(f"{model_dir}: --tools needs a tokenizer with zerollm's <|tool_call|> tokens (a zerollm "
                         f"chat model); this model's tokenizer has none")
    return ChatSession(model, tok, system, template, stop_ids=loaded.stop_ids, tools=tools, **kw)


def chat_main(model_dir: str, system: str | None = None, device: str = "auto", **kw) -> None:
    """Load a model and run the REPL (the `zerollm chat` command)."""
    for stream_ in (sys.stdin, sys.stdout):  # Japanese I/O whatever the locale says
        if hasattr(stream_, "reconfigure"):
            stream_.reconfigure(encoding="utf-8", errors="replace")
    session = load_session(model_dir, system, device, **kw)
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    run_repl(session)
