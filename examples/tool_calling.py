"""Worked function-calling example: teach a tiny model to call the calculator, then measure it.

    generate tool-use conversations (English + Japanese arithmetic questions)
      └─ user: "What is 37 times 12?" → assistant: <|tool_call|>{"name": "calculator",
         "arguments": {"expression": "37 * 12"}}<|/tool_call|> → tool: 444 → assistant: "The answer is 444."
    train a BPE tokenizer on them; train a ~1M-parameter model with the one training loop
      (zerollm.train.loop.train + LMObjective, loss only on assistant tokens: the rest is -100)
    evaluate on held-out questions (number pairs never seen in training) with chat.tools.run_agent:
      tool calls decoded under the JSON schema, executed, result fed back, final answer generated.

Success = the calculator was called with an expression whose value is the correct result AND the final
answer states that number. No pretrained checkpoint exists in this repository yet and post-training's SFT
(src/zerollm/posttrain) is not available, so the model is trained from random initialization on the
tool-use conversations directly (the SFT-style masked objective, not a separate fine-tuning stage).

    python examples/tool_calling.py [--minutes 6] [--eval 200] [--out runs/tool_calling]
Runs in about 10 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

import torch

from zerollm.chat.conversation import Conversation, render_prompt
from zerollm.chat.tools import Tool, calculate, calculator, run_agent
from zerollm.config import ModelConfig
from zerollm.model.transformer import Transformer
from zerollm.tokenizer.bpe import train_bpe
from zerollm.train.loop import TrainConfig, train
from zerollm.train.objectives import LMObjective

SYSTEM = "You are a helpful assistant."
# a compact calculator declaration keeps the prompt short (every token of it is processed at each step)
TOOLS = [Tool("calculator", "Evaluate arithmetic.", {"type": "object", "properties": {
    "expression": {"type": "string", "maxLength": 40}}, "required": ["expression"]}, calculator, timeout=2.0)]
EN = [("What is {a} plus {b}?", "+"), ("What is {a} minus {b}?", "-"), ("What is {a} times {b}?", "*"),
      ("What is {a} divided by {b}?", "/"), ("Compute {a} + {b}.", "+"), ("Compute {a} * {b}.", "*"),
      ("How much is {a} - {b}?", "-"), ("Calculate {a} / {b}.", "/")]
JA = [("{a}足す{b}はいくつ？", "+"), ("{a}引く{b}は？", "-"), ("{a}かける{b}はいくつですか？", "*"),
      ("{a}割る{b}は？", "/")]


def make_question(rng: random.Random):
    template, op = rng.choice(EN + JA)
    b = rng.randint(2, 99)
    a = b * rng.randint(2, 30) if op == "/" else rng.randint(2, 999)
    expr = f"{a} {op} {b}"
    value = calculate(expr)
    answer = (f"答えは{value}です。" if template in dict(JA) else f"The answer is {value}.")
    return template.format(a=a, b=b), expr, value, answer, (a, op, b)


def conversation_messages(q, expr, value, answer):
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function",
             "function": {"name": "calculator", "arguments": {"expression": expr}}}]},
            {"role": "tool", "content": str(value), "tool_call_id": "call_0"},
            {"role": "assistant", "content": answer}]


def encode_example(msgs, tok, tools) -> tuple[list[int], list[int]]:
    """(ids, targets) with the targets -100 everywhere but on the assistant's own tokens."""
    ids: list[int] = []
    mask: list[bool] = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prefix = render_prompt(msgs[:i], tok, tools, add_generation_prompt=True)
        full = render_prompt(msgs[:i + 1], tok, tools, add_generation_prompt=False)
        assert full[:len(prefix)] == prefix
        mask += [False] * (len(prefix) - len(mask)) + [True] * (len(full) - len(prefix))
        ids = full
    targets = [t if keep else -100 for t, keep in zip(ids[1:], mask[1:])]
    return ids[:-1], targets


class Batches:
    """Random padded batches of pre-encoded examples (the loop's batch-source protocol)."""

    def __init__(self, examples, batch_size, seed=0):
        self.examples, self.batch_size = examples, batch_size
        self.rng = random.Random(seed)

    def next_batch(self):
        batch = self.rng.sample(self.examples, self.batch_size)
        T = max(len(x) for x, _ in batch)
        x = torch.zeros(self.batch_size, T, dtype=torch.long)
        y = torch.full((self.batch_size, T), -100, dtype=torch.long)
        for i, (ids, tg) in enumerate(batch):
            x[i, :len(ids)] = torch.tensor(ids)
            y[i, :len(tg)] = torch.tensor(tg)
        return x, y

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--train", type=int, default=20000, help="training conversations")
    ap.add_argument("--eval", type=int, default=200, help="held-out questions")
    ap.add_argument("--out", default="runs/tool_calling")
    args = ap.parse_args()
    torch.set_num_threads(1)  # on a shared, loaded 2-core machine one thread is faster
    t_start = time.time()
    rng = random.Random(0)
    tools = TOOLS
    train_set = [make_question(rng) for _ in range(args.train)]
    seen = {x[4] for x in train_set}
    held_out = []
    while len(held_out) < args.eval:
        ex = make_question(rng)
        if ex[4] not in seen:
            held_out.append(ex)
    convs = [conversation_messages(*ex[:4]) for ex in train_set]

    # a tokenizer for this domain (specials <|im_start|>, <|tool_call|>, ... come with every zerollm tokenizer)
    import json
    sample_text = [json.dumps(m, ensure_ascii=False) for c in convs[:3000] for m in c]
    sample_text += [json.dumps(t.to_openai(), ensure_ascii=False) for t in tools] * 50
    tok = train_bpe(sample_text, vocab_size=1024, show_progress=False)
    examples = [encode_example(c, tok, tools) for c in convs]
    T = max(len(x) for x, _ in examples)
    print(f"{len(examples)} training conversations, up to {T} tokens; {len(held_out)} held-out questions")

    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=4, n_head=4, d_model=128, max_seq_len=T + 128)
    model = Transformer(cfg)
    print(f"model: {model.num_params():,} parameters")
    tcfg = TrainConfig(steps=100000, batch_size=8, seq_len=T, lr=3e-3, warmup_steps=50, max_minutes=args.minutes,
                       eval_every=10 ** 9, eval_at_start=False, ckpt_every=0, log_every=50, device="cpu",
                       progress=False)
    summary = train(model, LMObjective(), Batches(examples, 8), tcfg, args.out, model_cfg=cfg, tokenizer=tok)
    print(f"trained {summary.get('steps', '?')} steps in {time.time() - t_start:.0f} s")

    model.eval()
    ok_call = ok_answer = ok_both = 0
    t0 = time.time()
    failures = []
    for q, expr, value, answer, _ in held_out:
        conv = Conversation(SYSTEM)
        conv.add("user", q)
        try:
            res = run_agent(model, tok, conv, tools, max_steps=2, max_new_tokens=24)
        except ValueError as e:  # e.g. tool results filled the context: a failure, reported below
            failures.append((q, str(e)))
            continue
        called = [s for s in res.steps if s.call.name == "calculator" and s.result.ok]
        good_call = bool(called) and _num(called[0].result.content) == value
        good_answer = str(value) in re.findall(r"-?\d+(?:\.\d+)?", res.answer)
        ok_call += good_call
        ok_answer += good_answer
        ok_both += good_call and good_answer
        if not (good_call and good_answer) and len(failures) < 5:
            failures.append((q, [(s.call.arguments, s.result.content) for s in res.steps], res.answer))
    n = len(held_out)
    print(f"held-out: correct calculator call {ok_call / n:.1%}, correct final answer {ok_answer / n:.1%}, "
          f"both {ok_both / n:.1%} ({n} questions, {1000 * (time.time() - t0) / n:.0f} ms each)")
    for f in failures:
        print("  miss:", f)
    print(f"total time {time.time() - t_start:.0f} s")


def _num(text: str):
    try:
        return calculate(text)
    except ValueError:
        return None


if __name__ == "__main__":
    sys.exit(main())
