"""`zerollm chat --model DIR`: an interactive chat in the terminal.

Streaming output (UTF-8 safe, so Japanese prints whole characters), the conversation kept within the
model's context by dropping the oldest turns (conversation.Conversation.fit), and commands:

    /reset           forget the conversation (keeps the system prompt)
    /system TEXT     set the system prompt (and reset)
    /save FILE       save the conversation as JSON;  /load FILE  load one
    /quit, exit      leave (also Ctrl-D)
    a line ending in "\\" continues the message on the next line (multi-line input);
    \"\"\" on its own line starts/ends a block of several lines

Works with zerollm checkpoints (ChatML over zerollm's specials) and converted Hugging Face chat models
(their own chat template, found in the model directory).
"""
from __future__ import annotations

import sys
from typing import Callable, TextIO

from zerollm.engine.engine import Engine
from zerollm.engine.generate import GenerationConfig
from zerollm.loading import load_for_use

from .conversation import ContextTooLong, Conversation
from .format import stop_token_ids

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
                 stop_ids=()):
        self.model, self.tok, self.template = model, tokenizer, template
        self.stop_ids = list(stop_ids)  # the model's own end ids (loading.Loaded.stop_ids)
        self.conv = Conversation(system)
        self.max_new_tokens, self.temperature, self.top_p, self.seed = max_new_tokens, temperature, top_p, seed
        self._engine = None  # one Engine for the session, made on the first reply

    @property
    def engine(self):
        if self._engine is None:
            self._engine = Engine(self.model, self.tok, max_batch_size=1)
        return self._engine

    def stops(self) -> list[int]:
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
                        print(f"(loaded {len(self.conv.messages)} messages from {arg})", file=out)
                except (OSError, ValueError) as e:
                    reason = e.strerror if isinstance(e, OSError) and e.strerror else e
                    print(f"error: {cmd} {arg}: {reason} (conversation kept)", file=out)
        else:
            print(HELP, file=out)
        return True

    def reply(self, message: str, out: TextIO) -> str:
        """Add the user message, stream the model's reply to `out`, and return it."""
        self.conv.add("user", message)
        budget = self.model.cfg.max_seq_len - self.max_new_tokens
        try:
            ids, dropped = self.conv.fit(self.tok, budget, template=self.template)
        except ContextTooLong as e:
            self.conv.messages.pop()
            print(f"error: {e}", file=out)
            return ""
        if dropped:
            print(f"(dropped the {dropped} oldest turn(s) to fit the context)", file=out)
        gen = GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                               seed=self.seed, stop_token_ids=self.stops())
        pieces = []
        for piece in self.engine.submit(ids, gen).texts():  # the engine steps as the pieces are read
            pieces.append(piece)
            out.write(piece)
            out.flush()
        out.write("\n")
        text = "".join(pieces).strip()
        self.conv.add("assistant", text)
        return text


def run_repl(session: ChatSession, read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> None:
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


def load_session(model_dir: str, system: str | None = None, device: str = "auto", **kw) -> ChatSession:
    """A ChatSession over a zerollm checkpoint or a converted / Hugging Face model directory. The model's own
    chat template (chat_template.jinja or tokenizer_config.json in its directory) is used when it has one
    other than zerollm's ChatML; otherwise ChatML over zerollm's special tokens."""
    loaded = load_for_use(model_dir, device)
    model, tok, template = loaded.model, loaded.tokenizer, loaded.chat_template
    if template is None and "<|im_start|>" not in tok.special_tokens:
        raise ValueError(f"{model_dir}: no chat template (chat_template.jinja / tokenizer_config.json) and the "
                         f"tokenizer has no <|im_start|>/<|im_end|> tokens for zerollm's ChatML")
    return ChatSession(model, tok, system, template, stop_ids=loaded.stop_ids, **kw)


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
