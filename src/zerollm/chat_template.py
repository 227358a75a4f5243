"""Chat templates zerollm uses by default.

`CHATML_TEMPLATE` is the ChatML format (as Qwen uses it) over zerollm's own special tokens `<|im_start|>` and
`<|im_end|>` (tokenizer/base.py NAMED_SPECIAL_TOKENS):

    <|im_start|>system\\n{content}<|im_end|>\\n<|im_start|>user\\n{content}<|im_end|>\\n<|im_start|>assistant\\n

It is Jinja as transformers renders it (`apply_chat_template`: trim_blocks, lstrip_blocks), so the same string
goes into exported `tokenizer_config.json` / `chat_template.jinja` and into GGUF metadata unchanged.
Generation stops on `<|im_end|>` (CHATML_STOP).
"""
from __future__ import annotations

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_STOP = "<|im_end|>"

__all__ = ["CHATML_TEMPLATE", "CHATML_STOP"]
