"""Function calling: tools from JSON Schema or Python functions, safe built-ins, and the agent loop.

    Tool(name, description, parameters=JSON Schema, fn)      # OpenAI `tools` shape via to_openai()/from_openai()
    tool(fn)                                                 # from type hints + a Google-style docstring
    run_agent(model, tokenizer, conversation, tools)         # the loop below

    render prompt ─▶ model's first token <|tool_call|>? ──no──▶ generate the answer text ─▶ done
                            │yes
                            ▼
      decode {"name", "arguments"} under the tools' JSON Schema: a constrained Engine request
      (engine/constrained.py: always valid JSON of the right shape, whatever the model's weights)
      execute with a timeout (see `execute`: a worker thread, or a killable process) ─▶ append the call and
      its result (or a clear error) to the conversation ─▶ repeat, at most `max_steps` tool calls

Built-in tools: `calculator` (arithmetic parsed with `ast`: only numbers and + - * / // % ** and unary
signs are evaluated — never eval — with limits on length, depth, exponent and result size), `current_time`,
and `make_search_tool(index)` (document search over a RAG index).
"""
from __future__ import annotations

import ast
import datetime as _dt
import inspect
import json
import math
import operator
import re
import threading
import typing
import unicodedata
from dataclasses import dataclass, field
from typing import Callable

from zerollm.engine.constrained import JSONSchemaConstraint
from zerollm.engine.engine import Engine, Request
from zerollm.engine.generate import GenerationConfig
from zerollm.engine.json_schema import SchemaError, validate
from zerollm.errors import ZeroLLMError
from zerollm.rag.retrieve import Retriever


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict  # JSON Schema of the arguments object
    fn: Callable[..., object] | None = None
    timeout: float = 10.0
    isolation: str = "thread"  # "thread" | "process" (see execute)

    def to_openai(self) -> dict:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    @classmethod
    def from_openai(cls, spec: dict, fn: Callable | None = None) -> "Tool":
        f = spec.get("function", spec)
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise SchemaError(f"not an OpenAI tool: expected {{'type': 'function', 'function': {{'name', "
                              f"'parameters'}}}}, got {json.dumps(spec)[:200]}")
        params = f.get("parameters") or {"type": "object", "properties": {}}
        if params.get("type", "object") != "object":
            raise SchemaError(f"tool {f['name']!r}: parameters must be an object schema")
        return cls(f["name"], f.get("description", ""), params, fn)


# ---- tools from Python functions --------------------------------------------------------------------------
_PY_TO_SCHEMA = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _schema_of(annotation) -> dict:
    origin = typing.get_origin(annotation)
    if annotation in _PY_TO_SCHEMA:
        return {"type": _PY_TO_SCHEMA[annotation]}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    if origin in (list, tuple, typing.List):
        args = typing.get_args(annotation)
        return {"type": "array", "items": _schema_of(args[0]) if args else {}}
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _schema_of(args[0]) if len(args) == 1 else {"anyOf": [_schema_of(a) for a in args]}
    raise SchemaError(f"cannot derive a JSON Schema from the type {annotation!r}")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {arg: description}) from a Google-style docstring ("Args:" section)."""
    doc = inspect.cleandoc(doc or "")
    summary = doc.split("\n\n")[0].replace("\n", " ").strip()
    args: dict[str, str] = {}
    m = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc, re.M)
    if m:
        current = None
        for line in m.group(1).splitlines():
            hit = re.match(r"\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line)
            if hit:
                current = hit.group(1)
                args[current] = hit.group(2).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return summary, args


def tool(fn: Callable | None = None, *, name: str | None = None, timeout: float = 10.0, isolation: str = "thread"):
    """Make a Tool from a function with type hints and a docstring (usable as a decorator)."""
    if fn is None:
        return lambda f: tool(f, name=name, timeout=timeout, isolation=isolation)
    hints = typing.get_type_hints(fn)
    summary, arg_docs = _parse_docstring(fn.__doc__ or "")
    props, required = {}, []
    for pname, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise SchemaError(f"{fn.__name__}: *args/**kwargs cannot be described as a tool")
        if pname not in hints:
            raise SchemaError(f"{fn.__name__}: parameter {pname!r} needs a type hint")
        props[pname] = _schema_of(hints[pname])
        if pname in arg_docs:
            props[pname]["description"] = arg_docs[pname]
        if p.default is inspect.Parameter.empty:
            required.append(pname)
    schema = {"type": "object", "properties": props, "required": required}
    return Tool(name or fn.__name__, summary, schema, fn, timeout, isolation)


# ---- execution ----------------------------------------------------------------------------------------------
@dataclass
class ToolResult:
    ok: bool
    content: str  # what the model sees


MAX_HUNG_PER_TOOL = 4  # thread isolation: calls of one tool still running after their timeout before we refuse


def execute(t: Tool, arguments: dict | str) -> ToolResult:
    """Validate the arguments, run the tool with `t.timeout`, and turn any failure into a clear message for
    the model (and the user) instead of an exception.

    isolation="thread" (default): the call runs in a daemon worker thread. Python cannot kill a thread, so a
    call that times out keeps running in the background until it returns (or the process exits); the model
    gets "error: tool X timed out after N s" at once. While MAX_HUNG_PER_TOOL calls of a tool are still
    running, new calls of it are refused rather than piling up more threads.
    isolation="process": the call runs in a forked child process that is killed at the timeout (for tools
    that may hang for good or must not share the process; arguments and the result must be picklable; the
    tool sees a copy of the process state, so it cannot change ours). POSIX only."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as e:
            return ToolResult(False, f"error: arguments for {t.name} are not valid JSON ({e.msg})")
    errs = validate(arguments, t.parameters)
    if errs:
        return ToolResult(False, f"error: invalid arguments for {t.name}: {'; '.join(errs)}")
    if t.fn is None:
        return ToolResult(False, f"error: tool {t.name} has no implementation")
    if t.isolation == "process":
        box = _run_in_process(t, arguments)
    elif t.isolation == "thread":
        box = _run_in_thread(t, arguments)
    else:
        return ToolResult(False, f"error: tool {t.name}: unknown isolation {t.isolation!r} (thread or process)")
    if "timeout" in box:
        return ToolResult(False, f"error: tool {t.name} timed out after {t.timeout:g} s{box['timeout']}")
    if "error" in box:
        return ToolResult(False, f"error: tool {t.name} failed: {box['error']}")
    value = box.get("value")
    return ToolResult(True, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))


def _call(t: Tool, arguments: dict) -> dict:
    try:
        return {"value": t.fn(**arguments)}
    except Exception as e:  # the tool's own failure is reported, not raised
        return {"error": f"{type(e).__name__}: {e}"}


def _run_in_thread(t: Tool, arguments: dict) -> dict:
    hung = [w for w in threading.enumerate() if w.name == f"tool-{t.name}"]
    if len(hung) >= MAX_HUNG_PER_TOOL:
        return {"error": f"{len(hung)} earlier calls are still running after their timeout; not starting another"}
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(_call(t, arguments)), name=f"tool-{t.name}", daemon=True)
    worker.start()
    worker.join(t.timeout)
    if worker.is_alive():  # abandoned: it finishes (or not) on its own; see execute's docstring
        return {"timeout": " (it may still be running: Python threads cannot be stopped)"}
    return box


def _run_in_process(t: Tool, arguments: dict) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child():
        try:
            send.send(_call(t, arguments))
        except Exception as e:  # an unpicklable result
            send.send({"error": f"result cannot be sent back ({type(e).__name__}: {e})"})

    proc = ctx.Process(target=child, name=f"tool-{t.name}", daemon=True)
    proc.start()
    send.close()
    try:
        if recv.poll(t.timeout):
            try:
                return recv.recv()
            except EOFError:
                return {"error": f"the tool process exited with code {proc.exitcode} without a result"}
        return {"timeout": " (its process was killed)"}
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(1.0)
        recv.close()


# ---- built-in tools -------------------------------------------------------------------------------------------
class CalculatorError(ZeroLLMError):
    pass


MAX_EXPR_CHARS = 200
MAX_DEPTH = 30
MAX_EXPONENT = 1000
MAX_INT_DIGITS = 1000
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _check_size(x):
    """A real, finite result of bounded size, or a CalculatorError (a complex power such as (-8) ** 0.5, an
    inf/nan from 1e999 or inf - inf, a 1000-digit integer are errors, never a 'result')."""
    if isinstance(x, complex):
        raise CalculatorError("result is not a real number")
    if isinstance(x, int) and x.bit_length() > MAX_INT_DIGITS * 3.33:
        raise CalculatorError(f"result has more than {MAX_INT_DIGITS} digits")
    if isinstance(x, float) and not math.isfinite(x):
        raise CalculatorError("result is not a finite number")
    return x


def _eval_node(node, depth: int = 0):
    if depth > MAX_DEPTH:
        raise CalculatorError(f"expression nested deeper than {MAX_DEPTH}")
    if isinstance(node, ast.Expression):
        return _eval_node(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        if type(node.value) in (int, float):
            return _check_size(node.value)
        raise CalculatorError(f"only numbers are allowed, not {node.value!r}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_size(_UNARY[type(node.op)](_eval_node(node.operand, depth + 1)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _eval_node(node.left, depth + 1), _eval_node(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            if abs(b) > MAX_EXPONENT:
                raise CalculatorError(f"exponent {b} is larger than {MAX_EXPONENT}")
            if abs(a) > 1 and abs(b) * math.log10(abs(a)) > MAX_INT_DIGITS:
                raise CalculatorError(f"result has more than {MAX_INT_DIGITS} digits")
        try:
            return _check_size(_BINOPS[type(node.op)](a, b))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError("result is too large") from None
    what = {ast.Name: "names", ast.Call: "function calls", ast.Attribute: "attributes",
            ast.Subscript: "indexing", ast.Compare: "comparisons", ast.BoolOp: "boolean operators",
            ast.Tuple: "commas (write 1000, not 1,000; the decimal point is '.')"}
    raise CalculatorError(f"only numbers and + - * / // % ** ( ) are allowed; "
                          f"{what.get(type(node), type(node).__name__)} are not")


def calculate(expression: str):
    """Evaluate arithmetic safely (ast walk over numbers and operators only; never eval)."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("empty expression")
    if len(expression) > MAX_EXPR_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPR_CHARS} characters")
    text = unicodedata.normalize("NFKC", expression).replace("×", "*").replace("÷", "/").replace("^", "**")
    text = text.replace("−", "-")  # commas are kept: "1,5" is an error, never silently 15
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise CalculatorError(f"not an arithmetic expression: {expression!r}") from None
    value = _eval_node(tree)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return value


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses.

    Args:
        expression: the arithmetic expression, e.g. "12 * (3 + 4)"
    """
    value = calculate(expression)
    return repr(round(value, 12)) if isinstance(value, float) else str(value)


def current_time(timezone: str = "local") -> str:
    """The current date and time (ISO 8601).

    Args:
        timezone: "local" or "utc"
    """
    now = _dt.datetime.now(_dt.timezone.utc) if timezone == "utc" else _dt.datetime.now().astimezone()
    return now.replace(microsecond=0).isoformat()


def make_search_tool(index, k: int = 3, mode: str = "auto") -> Tool:
    """A `search_documents` tool over a RAG index: returns numbered passages with their sources."""
    retriever = Retriever(index)

    def search_documents(query: str) -> str:
        """Search the user's documents and return the most relevant passages.

        Args:
            query: what to look for
        """
        hits = retriever.search(query, k=k, mode=mode)
        if not hits:
            return "no matching passages"
        return "\n".join(f"[{i}] ({h.chunk.source}) {h.chunk.text}" for i, h in enumerate(hits, 1))

    return tool(search_documents)


def builtin_tools() -> list[Tool]:
    calc = tool(calculator, timeout=2.0)
    calc.parameters["properties"]["expression"]["maxLength"] = MAX_EXPR_CHARS
    return [calc, tool(current_time, timeout=2.0)]


BUILTIN_NAMES = ("calculator", "datetime", "search:INDEX_DIR")


def parse_tools(spec: str | list[str] | None) -> list[Tool]:
    """Tools from a `--tools` value: "calculator,datetime,search:INDEX_DIR" (comma-separated, or a list).
    `datetime` is `current_time`; `search:DIR` searches the RAG index in DIR (`zerollm rag index`)."""
    items = spec if isinstance(spec, list) else (spec or "").split(",")
    calc, clock = builtin_tools()
    out: list[Tool] = []
    for item in (x.strip() for x in items):
        if not item:
            continue
        name, _, arg = item.partition(":")
        if name == "calculator" and not arg:
            out.append(calc)
        elif name in ("datetime", "current_time", "time") and not arg:
            out.append(clock)
        elif name == "search" and arg:
            from zerollm.rag.index import RAGIndex

            out.append(make_search_tool(RAGIndex.open(arg)))
        else:
            raise ValueError(f"--tools: unknown tool {item!r} (built-in: {', '.join(BUILTIN_NAMES)})")
    if len({t.name for t in out}) != len(out):
        raise ValueError(f"--tools: a tool is named twice in {spec!r}")
    return out


# ---- decoding a call ---------------------------------------------------------------------------------------------
@dataclass
class ToolCall:
    name: str
    arguments: dict
    ids: list[int] = field(default_factory=list)  # tokens of the call's JSON (after <|tool_call|>)

    def to_openai(self, call_id: str) -> dict:
        return {"id": call_id, "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}


def tool_call_schema(tools: list[Tool]) -> dict:
    """The JSON Schema of one call: {"name": <a tool's name>, "arguments": <that tool's parameters>}."""
    if not tools:
        raise SchemaError("no tools to call")
    alts = [{"type": "object", "properties": {"name": {"const": t.name}, "arguments": t.parameters},
             "required": ["name", "arguments"]} for t in tools]
    return alts[0] if len(alts) == 1 else {"anyOf": alts}


_CONSTRAINTS: dict = {}  # (tokenizer id, schema JSON) -> compiled constraint; its DFA tables fill up with use


def _call_constraint(tokenizer, tools: list[Tool]):
    schema = tool_call_schema(tools)
    key = (id(tokenizer), json.dumps(schema, sort_keys=True))
    c = _CONSTRAINTS.get(key)
    if c is None or c.tokenizer is not tokenizer:
        if len(_CONSTRAINTS) > 32:
            _CONSTRAINTS.clear()
        c = _CONSTRAINTS[key] = JSONSchemaConstraint(schema, tokenizer)
    return c


def decode_tool_call(model, tokenizer, prompt_ids: list[int], tools: list[Tool], *, temperature: float = 0.0,
                     seed: int | None = None, max_new_tokens: int = 256, engine=None) -> ToolCall:
    """Decode `{"name": <one of the tools>, "arguments": <valid under its schema>}` after `prompt_ids` (which end
    where the call's JSON starts, i.e. after `<|tool_call|>`) as a constrained Engine request (`engine`: an
    Engine over `model` to reuse, e.g. run_agent's)."""
    engine = engine or Engine(model, tokenizer, max_batch_size=1)
    # no stop ids: the constraint decides where the call ends (its eos only once the JSON is complete)
    gen = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, stop_token_ids=[])
    out = engine.submit(Request(prompt_ids, gen, constraint=_call_constraint(tokenizer, tools))).result().token_ids
    text = tokenizer.decode(out)
    try:
        call = json.loads(text)
    except json.JSONDecodeError:  # only when max_new_tokens is shorter than the shortest valid call
        raise ValueError(f"tool call did not fit in {max_new_tokens} tokens: {text!r}") from None
    return ToolCall(call["name"], call["arguments"], out)


# ---- the agent loop ---------------------------------------------------------------------------------------------
@dataclass
class AgentStep:
    call: ToolCall
    result: ToolResult


@dataclass
class AgentResult:
    answer: str
    steps: list[AgentStep] = field(default_factory=list)
    stopped: str = "answer"  # "answer" | "max_steps" | "context" (tool results filled the context window)
    dropped: int = 0  # oldest turns the first prompt left out (token budget / max_history)


def _call_marker(tokenizer) -> tuple[int, int]:
    sp = tokenizer.special_tokens
    if "<|tool_call|>" not in sp:
        raise ValueError("this tokenizer has no <|tool_call|> token; tool calling needs a zerollm chat tokenizer")
    return sp["<|tool_call|>"], sp["<|/tool_call|>"]


def run_agent(model, tokenizer, conversation, tools: list[Tool], *, max_steps: int = 4,
              max_new_tokens: int = 128, budget: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
              seed: int | None = None, tool_choice: str = "auto", on_step=None, on_text=None, engine=None,
              template: str | None = None, stop_ids=(), stop_strings=()) -> AgentResult:
    """Run the render → call → execute → feed loop on `conversation` (modified in place) until the model
    answers in text or `max_steps` tool calls were made. tool_choice: "auto", "required" (first step must
    call a tool) or "none". With no tools it is one chat reply; `zerollm chat` runs every reply through here.

    Whether to call a tool is decided greedily (is <|tool_call|> the most likely next token?) even when the
    answer is sampled, so the decision is reproducible; everything generates through one Engine (`engine`:
    one to reuse, e.g. the REPL's). on_step(AgentStep): after each executed call; on_text(str): the answer's
    text as it is generated. The reply stops at the chat format's end-of-turn ids (chat.format.stop_token_ids
    plus `stop_ids`, a model's own end ids) and `stop_strings`; `template`: the model's chat template."""
    from .conversation import ContextTooLong
    from .format import stop_token_ids

    open_id = _call_marker(tokenizer)[0] if tools and tool_choice != "none" else None
    by_name = {t.name: t for t in tools}
    budget = budget or model.cfg.max_seq_len - max_new_tokens
    stops = stop_token_ids(tokenizer, stop_ids) + ([open_id] if open_id is not None else [])
    engine = engine or Engine(model, tokenizer, max_batch_size=1)
    steps: list[AgentStep] = []
    dropped = None

    def complete(ids, temp, n, stream):  # one Engine request → its Completion (text, ids, stop id)
        gen = GenerationConfig(max_new_tokens=n, temperature=temp, top_p=top_p if temp else 1.0, seed=seed,
                               stop_token_ids=stops, stop_strings=list(stop_strings))
        handle = engine.submit(ids, gen)
        for piece in handle.texts():  # the engine steps as the pieces are read
            if stream and on_text:
                on_text(piece)
        return handle.result()

    while True:
        try:
            ids, left_out = conversation.fit(tokenizer, budget, tools=tools or None, template=template)
            dropped = left_out if dropped is None else dropped
        except ContextTooLong as e:
            if not steps:
                raise
            msg = f"stopped: the tool results no longer fit in the context window ({e})"
            return AgentResult(msg, steps, "context", dropped or 0)
        out = None  # the answer, when the greedy first step already produced it
        if open_id is None or len(steps) >= max_steps:
            want_call = False
        elif tool_choice == "required" and not steps:
            want_call = True
        else:  # greedy first token; at temperature 0 the same request goes on to be the answer itself
            first = complete(ids, 0.0, max_new_tokens if temperature == 0 else 1, temperature == 0)
            want_call = not first.token_ids and first.stop_token_id == open_id
            out = first if temperature == 0 else None
        if not want_call:
            if out is None:
                out = complete(ids, temperature, max_new_tokens, True)
            answer = out.text.strip()
            conversation.add("assistant", answer)
            return AgentResult(answer, steps, "answer" if len(steps) < max_steps or not tools else "max_steps",
                               dropped or 0)
        call = decode_tool_call(model, tokenizer, ids + [open_id], tools, temperature=temperature, seed=seed,
                                engine=engine)
        result = execute(by_name[call.name], call.arguments)
        call_id = f"call_{len(steps)}"
        conversation.add("assistant", None, tool_calls=[call.to_openai(call_id)])
        conversation.add("tool", result.content, tool_call_id=call_id)
        steps.append(AgentStep(call, result))
        if on_step:
            on_step(steps[-1])
