"""The one home of chat formats: conversations → token ids (+ a loss mask marking the assistant's tokens).

    messages [{"role", "content", "tool_calls"?}] ──render──▶ Rendered(ids, mask)      (training: SFT, DPO, RM)
                                                              mask[i] = True ⇔ token i is a training target
    messages ──prompt_ids──▶ ids ending in the assistant header                      (generation: chat, server,
                                                                                      RAG, tools, RL rollouts)

Both take the model's chat template (`template`: a converted model's own Jinja template, which
zerollm.loading.Loaded.chat_template carries; None = zerollm's ChatML), so a fine-tuned model is prompted at
inference with exactly the ids it was trained on. Two renderers share one output:

1. `render_chatml` — zerollm's own ChatML over its special tokens (`CHATML_TEMPLATE` below is the same format
   as Jinja, the string interop exports as the template, as Qwen uses it):

       <|im_start|>system\\n{content}<|im_end|>\\n
       <|im_start|>user\\n{content}<|im_end|>\\n
       <|im_start|>assistant\\n{content}<|tool_call|>{"name":…,"arguments":{…}}<|/tool_call|><|im_end|>\\n
       <|im_start|>tool\\n<|tool_result|>{content}<|/tool_result|><|im_end|>\\n

   Special tokens are inserted by id; message text is encoded with specials disabled, so a user typing
   "<|im_end|>" gets plain text, not an end of turn. The mask covers an assistant's content, its tool calls
   and its closing `<|im_end|>` (so the model learns to stop), not the header nor the trailing newline.
   Tools offered to the model (`tools=[json schema…]`) are listed in the system turn, one JSON per line.

2. `render_template` — an imported model's Jinja template (tokenizer_config.json / chat_template.jinja),
   rendered as transformers does (sandboxed, trim_blocks, lstrip_blocks, loopcontrols, tojson). If the
   template marks assistant output with `{% generation %}…{% endgeneration %}` those spans are the mask;
   otherwise the *prefix-diff* method finds them: for assistant turn k, the text that rendering
   messages[:k+1] adds to rendering messages[:k] with the generation prompt is the assistant's part, up to
   and including its end-of-turn token (whitespace the template prints after that token is not trained).
   The whole text is encoded once (specials allowed, as the template contains them), so the ids equal
   transformers' apply_chat_template ids; the mask comes from the byte offsets of the spans.
   Templates see the tokenizer's special-token strings (bos_token, eos_token, …) as transformers passes them.

3. `PLAIN_TEMPLATE` — for a model with neither its own template nor zerollm's ChatML tokens (a base GPT-2):
   the books' plain-text dialogue, rendered by `render_template` like any Jinja template,

       {system}\n\nUser: {content}\nAssistant: {content}\nUser: {content}\nAssistant:

   `resolve_template` picks it (with a one-line warning) and generation stops at `PLAIN_STOP_STRINGS`
   ("\nUser:", the model starting the user's next line), as well as at the tokenizer's eos.

Labels for the loss are built from the mask in posttrain/data.py (-100 where mask is False).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

# ChatML as Jinja, rendered as transformers renders it (trim_blocks, lstrip_blocks): the same string goes into
# exported tokenizer_config.json / chat_template.jinja and GGUF metadata. Generation stops on <|im_end|>.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# The books' "User:/Assistant:" dialogue for models without a chat format (a base GPT-2); see `resolve_template`.
PLAIN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ (message['content'] or '') + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'User: ' + (message['content'] or '') + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + (message['content'] or '') + '\n' }}"
    "{% else %}{{ 'Tool: ' + (message['content'] or '') + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
PLAIN_STOP_STRINGS = ["\nUser:"]
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
TOOL_CALL, TOOL_CALL_END = "<|tool_call|>", "<|/tool_call|>"
TOOL_RESULT, TOOL_RESULT_END = "<|tool_result|>", "<|/tool_result|>"
ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass
class Rendered:
    ids: list[int] = field(default_factory=list)
    mask: list[bool] = field(default_factory=list)  # True = the model is trained to produce this token

    def add(self, ids: Sequence[int], target: bool) -> None:
        self.ids.extend(ids)
        self.mask.extend([target] * len(ids))

    def __len__(self) -> int:
        return len(self.ids)


def content_text(content: Any) -> str:
    """OpenAI content: a string, None, or a list of {"type": "text", "text": …} parts (concatenated)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    raise ValueError(f"message content must be a string or a list of parts, got {type(content).__name__}")


def tool_call_json(call: dict) -> str:
    """One tool call as the JSON the model writes between <|tool_call|> and <|/tool_call|>. OpenAI sends
    `arguments` as a JSON string; it is parsed so the model sees (and emits) an object."""
    fn = call.get("function", call)
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    return json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)


def _special(tokenizer, token: str) -> int:
    try:
        return tokenizer.special_tokens[token]
    except KeyError:
        raise ValueError(f"tokenizer has no special token {token}; ChatML rendering needs "
                         f"{IM_START} and {IM_END} (zerollm tokenizers have them)") from None


def check_messages(messages: Sequence[dict]) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("a conversation must be a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ValueError(f"message {i} must be an object with a 'role'")
        if m["role"] not in ROLES:
            raise ValueError(f"message {i}: unknown role {m['role']!r} (expected one of {ROLES})")


def render_chatml(messages: Sequence[dict], tokenizer, *, add_generation_prompt: bool = False,
                  tools: Sequence[dict] | None = None, train_on: str = "assistant") -> Rendered:
    """Render with zerollm's ChatML. train_on: "assistant" (every assistant turn), "last" (only the final
    assistant turn, e.g. for preference pairs), or "none"."""
    check_messages(messages)
    im_start, im_end = _special(tokenizer, IM_START), _special(tokenizer, IM_END)
    enc = tokenizer.encode
    out = Rendered()
    messages = list(messages)
    if tools:
        listing = "# Tools\n" + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
        if messages[0]["role"] == "system":
            first = dict(messages[0], content=content_text(messages[0].get("content")) + "\n\n" + listing)
            messages = [first] + messages[1:]
        else:
            messages = [{"role": "system", "content": listing}] + messages
    last_assistant = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    for i, m in enumerate(messages):
        role = m["role"]
        out.add([im_start] + enc(role + "\n"), False)
        target = role == "assistant" and (train_on == "assistant" or (train_on == "last" and i == last_assistant))
        text = content_text(m.get("content"))
        if role == "tool":
            out.add([_special(tokenizer, TOOL_RESULT)] + enc(text) + [_special(tokenizer, TOOL_RESULT_END)], False)
        elif text:
            out.add(enc(text), target)
        for call in m.get("tool_calls") or []:
            out.add([_special(tokenizer, TOOL_CALL)] + enc(tool_call_json(call)) + [_special(tokenizer, TOOL_CALL_END)],
                    target)
        out.add([im_end], target)
        out.add(enc("\n"), False)
    if add_generation_prompt:
        out.add([im_start] + enc("assistant\n"), False)
    return out


def prompt_ids(messages: Sequence[dict], tokenizer, *, template: str | None = None, tools=None,
               add_generation_prompt: bool = True) -> list[int]:
    """Ids of a conversation followed by the assistant header: what generation continues from. `tools`: OpenAI
    tool dicts or chat.tools.Tool objects. An empty conversation gives just the generation prompt."""
    specs = [t.to_openai() if hasattr(t, "to_openai") else t for t in tools or []] or None
    if messages:
        return render(messages, tokenizer, template=template, add_generation_prompt=add_generation_prompt,
                      tools=specs).ids
    template = resolve_template(tokenizer, template)
    if template and template != CHATML_TEMPLATE:  # nothing said yet (render needs a message)
        text = render_template_text(template, [], add_generation_prompt=add_generation_prompt, tools=specs)
        return tokenizer.encode(text, allowed_special="all")
    return [_special(tokenizer, IM_START)] + tokenizer.encode("assistant\n") if add_generation_prompt else []


# ----------------------------------------------------------------------------------------------------------
# imported Jinja templates

_GEN_OPEN, _GEN_CLOSE = "\ue000", "\ue001"  # private-use characters marking {% generation %} spans


def _jinja_env():
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        """{% generation %}…{% endgeneration %} → the body wrapped in marker characters."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

        def _mark(self, caller):
            return _GEN_OPEN + caller() + _GEN_CLOSE

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, ensure_ascii=ensure_ascii,
                                                                                    indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: __import__("datetime").datetime.now().strftime(fmt)
    return env


def _template_messages(messages: Sequence[dict]) -> list[dict]:
    """Templates expect tool-call arguments as dicts, not OpenAI's JSON strings (interop.md §4)."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c.get("function", {}),
                                                  "arguments": json.loads(tool_call_json(c))["arguments"]}}
                               for c in m["tool_calls"]]
        out.append(m)
    return out


def render_template_text(template: str, messages: Sequence[dict], *, add_generation_prompt: bool = False,
                         tools: Sequence[dict] | None = None, **kwargs) -> str:
    """The string transformers' apply_chat_template(tokenize=False) gives (generation markers removed)."""
    text = _jinja_env().from_string(template).render(messages=_template_messages(messages), tools=tools,
                                                     add_generation_prompt=add_generation_prompt, **kwargs)
    return text.replace(_GEN_OPEN, "").replace(_GEN_CLOSE, "")


def template_variables(tokenizer, **kwargs) -> dict:
    """Variables transformers passes to a chat template besides messages: the special-token strings
    (`bos_token`, `eos_token`, `pad_token` — Llama/Mistral templates print them); `kwargs` override."""
    roles = getattr(tokenizer, "roles", None) or {}
    return {**{f"{role}_token": tok for role, tok in roles.items()}, **kwargs}


def _end_of_turn_split(text: str, tokenizer) -> tuple[str, str]:
    """Split an assistant span found by prefix diff after its end-of-turn token: (…<|im_end|>, "\n").

    The template's text after the last special token of the span (ChatML's newline, Llama 3's nothing) is
    whitespace that belongs to the turn separator, not to what the model says: generation stops on the
    end token, so it is not trained. Spans without a special token, or with text after it, stay whole."""
    specials = [t for t in getattr(tokenizer, "special_tokens", {}) if t in text]
    if not specials:
        return text, ""
    cut = max(text.rfind(t) + len(t) for t in specials)
    rest = text[cut:]
    return (text[:cut], rest) if not rest.strip() else (text, "")


def _encode_pieces(tokenizer, pieces: list[tuple[str, bool]]) -> Rendered:
    """Ids of the concatenated text plus a mask from (text, target) pieces.

    The whole text is encoded once, as transformers' apply_chat_template does, so the ids are the same;
    a token is a target when its first byte falls in a target piece (byte offsets from token_bytes). If a
    tokenizer's tokens do not spell the text byte for byte (a normalizer, SentencePiece's dummy prefix),
    each piece is encoded on its own instead."""
    text = "".join(t for t, _ in pieces)
    data = text.encode("utf-8")
    ids = tokenizer.encode(text, allowed_special="all")
    token_bytes = [tokenizer.token_bytes(i) for i in ids]
    out = Rendered()
    if b"".join(token_bytes) != data:
        for piece, target in pieces:
            if piece:
                out.add(tokenizer.encode(piece, allowed_special="all"), target)
        return out
    bounds, pos = [], 0  # (end byte offset, target) of each piece
    for piece, target in pieces:
        pos += len(piece.encode("utf-8"))
        bounds.append((pos, target))
    k, offset = 0, 0
    for i, b in zip(ids, token_bytes):
        while k < len(bounds) - 1 and offset >= bounds[k][0]:
            k += 1
        out.add([i], bounds[k][1])
        offset += len(b)
    return out


def render_template(messages: Sequence[dict], tokenizer, template: str, *, add_generation_prompt: bool = False,
                    tools: Sequence[dict] | None = None, train_on: str = "assistant", **kwargs) -> Rendered:
    """Render with a Jinja chat template; the mask from {% generation %} spans, else by prefix diff.
    train_on: "assistant" (every assistant turn), "last" (the final one) or "none", as in render_chatml."""
    check_messages(messages)
    env = _jinja_env()
    tpl = env.from_string(template)
    msgs = _template_messages(messages)
    variables = template_variables(tokenizer, **kwargs)

    def render(ms, gen):
        return tpl.render(messages=ms, tools=tools, add_generation_prompt=gen, **variables)

    pieces: list[tuple[str, bool]] = []
    if "generation" in template and "endgeneration" in template:
        text = render(msgs, add_generation_prompt)
        inside = False
        for part in text.replace(_GEN_CLOSE, _GEN_OPEN).split(_GEN_OPEN):
            pieces.append((part, inside))
            inside = not inside
    else:
        done = ""  # prefix diff: render each prefix of the conversation once
        for k, m in enumerate(msgs):
            if m["role"] == "assistant":
                before = render(msgs[:k], True)
                full = render(msgs[:k + 1], False)
                if not before.startswith(done) or not full.startswith(before):
                    raise ValueError("chat template is not prefix-stable (a later turn changes earlier text); "
                                     "add {% generation %} markers to it for assistant-only loss")
                said, separator = _end_of_turn_split(full[len(before):], tokenizer)
                pieces += [(before[len(done):], False), (said, True), (separator, False)]
                done = full
        final = render(msgs, add_generation_prompt)
        if not final.startswith(done):
            raise ValueError("chat template is not prefix-stable; add {% generation %} markers")
        pieces.append((final[len(done):], False))
    targets = [i for i, (_, t) in enumerate(pieces) if t]
    keep = set(targets if train_on == "assistant" else targets[-1:] if train_on == "last" else [])
    return _encode_pieces(tokenizer, [(t, i in keep) for i, (t, _) in enumerate(pieces)])


class NoChatTemplateWarning(UserWarning):
    """A model without a chat format is prompted with PLAIN_TEMPLATE."""


def resolve_template(tokenizer, template: str | None = None) -> str | None:
    """The chat template a model is prompted with: its own (`template`), else zerollm's ChatML (None) when the
    tokenizer has <|im_start|>, else PLAIN_TEMPLATE with a one-line warning (a base model was never taught a
    chat format; the books' "User:/Assistant:" dialogue is the plain fallback)."""
    if template is not None or IM_START in getattr(tokenizer, "special_tokens", {}):
        return template
    warnings.warn("this model has no chat template: using the plain 'User:/Assistant:' format "
                  "(chat.format.PLAIN_TEMPLATE)", NoChatTemplateWarning, stacklevel=2)
    return PLAIN_TEMPLATE


def stop_strings(template: str | None) -> list[str]:
    """Stop strings a reply in this chat format needs besides the end-of-turn ids (the plain format has no
    end-of-turn token: the model writing the next "User:" ends the reply)."""
    return list(PLAIN_STOP_STRINGS) if template == PLAIN_TEMPLATE else []


def render(messages: Sequence[dict], tokenizer, *, template: str | None = None, add_generation_prompt: bool = False,
           tools: Sequence[dict] | None = None, train_on: str = "assistant") -> Rendered:
    """With `template` (a converted model's own Jinja template) as transformers renders it, else zerollm's
    ChatML, else (a tokenizer without ChatML tokens) PLAIN_TEMPLATE (`resolve_template`)."""
    template = resolve_template(tokenizer, template)
    if template is None or template == CHATML_TEMPLATE:
        return render_chatml(messages, tokenizer, add_generation_prompt=add_generation_prompt, tools=tools,
                             train_on=train_on)
    return render_template(messages, tokenizer, template, add_generation_prompt=add_generation_prompt, tools=tools,
                           train_on=train_on)


END_OF_TURN = (IM_END, "<|eot_id|>", "<|endoftext|>")  # ChatML (ours, Qwen), Llama 3, GPT-2 / base models


def stop_token_ids(tokenizer, also: Sequence[int] = ()) -> list[int]:
    """End-of-turn ids a reply stops on: the END_OF_TURN tokens the tokenizer has (<|im_end|> first when it
    has it), its eos, and `also` (a model's own end ids: loading.Loaded.stop_ids, from generation_config)."""
    ids = [tokenizer.special_tokens[t] for t in END_OF_TURN if t in tokenizer.special_tokens]
    for i in [tokenizer.eos_id, *also]:
        if i is not None and i not in ids:
            ids.append(i)
    return ids


__all__ = ["Rendered", "render", "prompt_ids", "resolve_template", "stop_strings", "PLAIN_TEMPLATE",
           "PLAIN_STOP_STRINGS", "NoChatTemplateWarning", "render_chatml", "render_template", "render_template_text",
           "CHATML_TEMPLATE", "IM_START", "IM_END", "ROLES", "template_variables", "check_messages",
           "content_text", "tool_call_json", "stop_token_ids"]
