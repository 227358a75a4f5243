"""Generated tasks whose success is checkable by code (for the "shown to work" runs and tests).

Arithmetic with worked steps: multi-digit addition, answered column by column from the right, carrying,
then the GSM8K-style final line. For 347 + 589:

    user:      What is 347 + 589?
    assistant: 7+9=16
               4+8+1=13
               3+5+1=9
               #### 936

(each line adds one column and the carry from the line above, its tens digit).

Sentiment preferences: a prompt asks to describe a thing; both responses use the same template, the
preferred one with positive words, the rejected one with negative words. The property is checkable
(`positivity`), so reward-model accuracy, DPO preference and PPO reward can be measured exactly.
"""
from __future__ import annotations

import random

from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.posttrain.data import write_jsonl as _w
from zerollm.tokenizer.bpe import train_bpe
from zerollm.train.checkpoint import save_checkpoint

POSITIVE = ["good", "great", "nice", "lovely", "happy", "bright", "kind", "warm"]
NEGATIVE = ["bad", "awful", "sad", "ugly", "poor", "dull", "grim", "cold"]
THINGS = ["cat", "dog", "house", "river", "tree", "city", "song", "book", "car", "garden", "road", "friend"]


def worked_addition(a: int, b: int) -> str:
    da, db = str(a)[::-1], str(b)[::-1]
    carry, lines = 0, []
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        lines.append(f"{x}+{y}" + (f"+{carry}" if carry else "") + f"={s}")
        carry = s // 10
    lines.append(f"#### {a + b}")
    return "\n".join(lines)


def arithmetic_example(rng: random.Random, digits: int = 3) -> dict:
    a = rng.randrange(10 ** (digits - 1), 10 ** digits)
    b = rng.randrange(10 ** (digits - 1), 10 ** digits)
    return {"messages": [{"role": "user", "content": f"What is {a} + {b}?"},
                         {"role": "assistant", "content": worked_addition(a, b)}], "answer": str(a + b)}


def arithmetic_dataset(n: int, seed: int = 0, digits: int = 3, exclude: set | None = None) -> list[dict]:
    """n distinct problems; `exclude` holds questions to leave out (a held-out split)."""
    rng, out, seen = random.Random(seed), [], set(exclude or ())
    while len(out) < n:
        ex = arithmetic_example(rng, digits)
        q = ex["messages"][0]["content"]
        if q not in seen:
            seen.add(q)
            out.append(ex)
    return out


def arithmetic_prompts(examples: list[dict]) -> list[dict]:
    """RL prompt records: {"question", "answer"}."""
    return [{"question": e["messages"][0]["content"], "answer": e["answer"]} for e in examples]


def describe(rng: random.Random, thing: str, words: list[str]) -> str:
    w1, w2 = rng.sample(words, 2)
    return f"The {thing} is {w1} and {w2}."


def sentiment_pair(rng: random.Random) -> dict:
    thing = rng.choice(THINGS)
    return {"prompt": f"Describe the {thing}.", "chosen": describe(rng, thing, POSITIVE),
            "rejected": describe(rng, thing, NEGATIVE)}


def sentiment_preferences(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [sentiment_pair(rng) for _ in range(n)]


def sentiment_sft(n: int, seed: int = 0) -> list[dict]:
    """Neutral-start SFT data: half the responses positive, half negative (PPO/DPO then move the policy)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        thing = rng.choice(THINGS)
        words = POSITIVE if i % 2 == 0 else NEGATIVE
        out.append({"prompt": f"Describe the {thing}.", "completion": describe(rng, thing, words)})
    return out


def positivity(text: str) -> float:
    """(#positive − #negative words) / 2, clipped to [−1, 1]: the checkable property."""
    words = [w.strip(".,!?").lower() for w in text.split()]
    s = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
    return max(-1.0, min(1.0, s / 2))


def byte_tokenizer():
    """A byte-level tokenizer (256 bytes + zerollm's 16 specials, no merges): every digit is one token,
    which small models need for arithmetic."""
    return train_bpe(["0123456789"], vocab_size=272, show_progress=False)


def init_model_dir(out, tokenizer, seed: int = 0, **model_fields):
    """Write a freshly initialised model (+ tokenizer) as a checkpoint directory; returns its path."""
    import torch

    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, **model_fields)
    return save_checkpoint(out, Transformer(cfg), cfg, tokenizer=tokenizer)


def write_jsonl(path, records):
    return _w(path, records)
