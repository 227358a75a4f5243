"""Worked function-calling example: pretrain a small model, fine-tune it to call the calculator, measure it.

    1. tokenizer   byte-level BPE on the pretraining text + the conversations' text; digits are always single
                   tokens (copying "517 * 46" out of a question is then learnable digit by digit)
    2. pretrain    `zerollm.stages.pretrain` (a 1.1M-parameter Llama-style model) on a mix of general English +
                   Japanese sentences (small_parallel_enja from the shared data when present, else generated
                   ones) and plain-text worked arithmetic from the *training* questions
    3. SFT         `zerollm.api.sft` — the post-training SFT stage, loss only on the assistant's tokens (tool
                   call, answer, <|im_end|>) — on generated tool-use conversations, English and Japanese:
                     user: "What is 517 times 46?"
                     assistant: <|tool_call|>{"name": "calculator", "arguments": {"expression": "517 * 46"}}<|/tool_call|>
                     tool: 23782
                     assistant: "The answer is 23782."
    4. evaluate    `chat.tools.run_agent` on held-out questions (number pairs never seen in training): the
                   call is decoded under the tools' JSON Schema by the engine's constrained decoder, executed
                   by the safe calculator, the result fed back, and the final answer generated.

Success = the calculator was called with an expression whose value is the correct result AND the final answer
states that number. The prompt the agent renders at evaluation (chat.format.prompt_ids) and the SFT
training ids (chat_format.render_chatml) come from one renderer; the script checks that they are identical.
Operands have fixed widths (a: 3 digits, b: 2; 12 question templates): a model this small, trained this
briefly, did not learn to copy numbers of varying length (see docs/benchmarks.md, "Function calling").

    python examples/tool_calling.py                     # ≈ 13 minutes on 2 CPU cores, 200 held-out questions
    python examples/tool_calling.py --pretrain-minutes 0.5 --sft-minutes 1 --eval 20 --out /tmp/tc   # smoke run
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import torch

from zerollm.chat.conversation import Conversation
from zerollm.chat.format import prompt_ids
from zerollm.chat.tools import Tool, calculate, calculator, run_agent
from zerollm.chat.format import content_text, render_chatml, tool_call_json

SHARED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "small_parallel_enja"
SYSTEM = "You are a helpful assistant."
# a compact calculator declaration keeps the prompt short (every token of it is processed at each step)
TOOLS = [Tool("calculator", "Evaluate arithmetic.", {"type": "object", "properties": {
    "expression": {"type": "string", "maxLength": 40}}, "required": ["expression"]}, calculator, timeout=2.0)]
# Question templates. Each puts the two numbers in the same shape — a (3 digits), a one-token operator word,
# b (2 digits), a one-token tail — so the digits sit at fixed distances from the end of the question.
EN = [("What is {a} plus {b}?", "+"), ("What is {a} minus {b}?", "-"), ("What is {a} times {b}?", "*"),
      ("What is {a} over {b}?", "/"), ("Compute {a} plus {b}.", "+"), ("Compute {a} times {b}.", "*"),
      ("How much is {a} minus {b}?", "-"), ("Calculate {a} over {b}.", "/")]
JA = [("{a}足す{b}はいくつ？", "+"), ("{a}引く{b}は？", "-"), ("{a}かける{b}はいくつですか？", "*"),
      ("{a}割る{b}は？", "/")]
# Pre-tokenizer: every digit is its own token; other text splits only at spaces (a chunk may start with one),
# so BPE can merge JSON punctuation with words ('{"name":', ' "calculator",') and the constant tool listing
# costs few tokens. (GPT-4's pattern splits words from punctuation: the same conversation took 145 tokens.)
DIGIT_PATTERN = r"""\p{N}| ?[^\s\p{N}]+|\s+(?!\S)|\s"""
MODEL = {"n_layer": 4, "n_head": 4, "n_kv_head": 4, "d_model": 128, "max_seq_len": 256}


# ---- data ------------------------------------------------------------------------------------------------------
def make_question(rng: random.Random):
    """(question, expression, value, final answer, (a, op, b)) — the last item identifies the number pair."""
    template, op = rng.choice(EN + JA)
    # fixed widths: a has 3 digits, b 2, and the result 3 (+, -), 4 (*) or 2 (/) digits
    b = rng.randint(10, 99)
    a = {"+": lambda: rng.randint(100, 999 - b), "-": lambda: rng.randint(b + 100, 999),
         "*": lambda: rng.randint(100, 9999 // b), "/": lambda: b * rng.randint(10, 999 // b)}[op]()
    expr = f"{a} {op} {b}"
    value = calculate(expr)
    answer = f"答えは{value}です。" if template in dict(JA) else f"The answer is {value}."
    return template.format(a=a, b=b), expr, value, answer, (a, op, b)


def split_questions(n_train: int, n_eval: int, seed: int = 0):
    """Training questions and held-out ones whose (a, op, b) never occurs in training."""
    rng = random.Random(seed)
    train = [make_question(rng) for _ in range(n_train)]
    seen = {x[4] for x in train}
    held_out: list = []
    while len(held_out) < n_eval:
        ex = make_question(rng)
        if ex[4] not in seen:
            seen.add(ex[4])
            held_out.append(ex)
    return train, held_out


def sft_record(q, expr, value, answer, tools=TOOLS) -> dict:
    """One training conversation in OpenAI's fine-tuning format, which `zerollm sft` reads: `messages` plus the
    `tools` offered, which the renderer lists in the system turn exactly as run_agent and the server do."""
    return {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": q},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function", "function": {
            "name": "calculator", "arguments": json.dumps({"expression": expr})}}]},
        {"role": "tool", "content": str(value), "tool_call_id": "call_0"},
        {"role": "assistant", "content": answer}],
        "tools": [t.to_openai() for t in tools]}


def check_same_rendering(tok, rec: dict, tools=TOOLS) -> None:
    """The SFT ids of a conversation, cut before each assistant turn, are exactly the prompt run_agent renders."""
    msgs, specs = rec["messages"], rec.get("tools")
    full = render_chatml(msgs, tok, tools=specs)
    conv = Conversation(SYSTEM)
    for k, m in enumerate(msgs[1:], 1):
        if m["role"] == "assistant":
            prompt = prompt_ids(conv.all_messages(), tok, tools=tools)
            train_prefix = render_chatml(msgs[:k], tok, add_generation_prompt=True, tools=specs).ids
            if prompt != train_prefix or full.ids[:len(prompt)] != prompt:
                raise AssertionError("evaluation prompt differs from the SFT training ids")
            if not full.mask[len(prompt)]:
                raise AssertionError("the assistant's first token is not a training target")
        conv.add(m["role"], m.get("content"), **{k2: v for k2, v in m.items() if k2 not in ("role", "content")})


def general_lines(limit: int) -> list[str]:
    """General English + Japanese sentences (small_parallel_enja; its Japanese is space-separated words, the
    spaces are removed), or generated sentences when the shared data is absent."""
    en, ja = SHARED_TEXT / "train.en", SHARED_TEXT / "train.ja"
    if limit <= 0:
        return []
    if en.is_file() and ja.is_file():
        a = en.read_text(encoding="utf-8").splitlines()[:(limit + 1) // 2]
        b = [s.replace(" ", "") for s in ja.read_text(encoding="utf-8").splitlines()[:limit // 2]]
        return [x for pair in zip(a, b) for x in pair] + a[len(b):]
    rng = random.Random(1)
    words = "the a cat dog saw ran home big small red blue and with to of in 猫 犬 家 大きい 走った".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) + "." for _ in range(limit)]


def worked_lines(questions) -> list[str]:
    """Plain-text worked arithmetic from the *training* questions only: the question, the expression and its
    value, the answer sentence. Loss on every token teaches the copying the tool calls need (digits from the
    question into the expression, the result into the answer)."""
    return [f'{q} {{"expression": "{expr}"}} = {value}. {answer}' for q, expr, value, answer, _ in questions]


def pretrain_lines(limit: int, questions, general_share: float, seed: int = 0) -> list[str]:
    n_general = int(limit * general_share)
    lines = general_lines(n_general) + worked_lines(questions[:limit - n_general])
    random.Random(seed).shuffle(lines)
    return lines


# ---- stages ------------------------------------------------------------------------------------------------------
def plain_text(record: dict) -> str:
    """A conversation's text as the renderer emits it (roles, contents, tool-call JSON), for tokenizer training."""
    out = []
    listing = "# Tools\n" + "\n".join(json.dumps(t, ensure_ascii=False) for t in record.get("tools") or [])
    for i, m in enumerate(record["messages"]):
        text = content_text(m.get("content"))
        if i == 0 and m["role"] == "system" and record.get("tools"):  # where the renderer lists the tools
            text += "\n\n" + listing
        out.append(m["role"] + "\n" + text)
        out += [tool_call_json(c) for c in m.get("tool_calls") or []]
    return "\n".join(out)


def build_tokenizer(out: Path, text: list[str], records: list[dict], vocab_size: int):
    from zerollm.tokenizer.bpe import train_bpe

    sample = text[:20000] + [plain_text(r) for r in records[:2000]]
    tok = train_bpe(sample, vocab_size=vocab_size, pattern=DIGIT_PATTERN, show_progress=False)
    tok.save(out / "tokenizer")
    return tok


def pretrain_base(out: Path, lines: list[str], minutes: float, steps: int) -> Path:
    from zerollm.data.prepare import data_prepare
    from zerollm.stages.pretrain import pretrain

    (out / "pretrain.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data_prepare([str(out / "pretrain.txt")], out / "tokenizer", out / "shards", txt_mode="line",
                 val_fraction=0.02, num_workers=1, show_progress=False)
    pretrain(None, {"data": str(out / "shards"), "out": str(out / "pretrain"), "preset": "llama-1m",
                    "model": dict(MODEL), "sample_tokens": 0,
                    "train": {"steps": steps, "batch_size": 16, "seq_len": 128, "lr": 3e-3, "warmup_steps": 20,
                              "schedule": "wsd",
                              "max_minutes": minutes, "eval_every": 10 ** 6, "eval_batches": 2,
                              "eval_at_start": False, "ckpt_every": 0, "keep_last": 1, "log_every": 50,
                              "progress": False, "device": "cpu"}}, quiet=True)
    return out / "pretrain"


def sft_tools(out: Path, base: Path, data: Path, minutes: float, steps: int, lr: float = 3e-3,
              batch_size: int = 8) -> Path:
    from zerollm import api

    s = api.sft(None, {"model": str(base), "data": [str(data)], "out": str(out / "sft"), "max_len": 192,
                       "val_fraction": 0.01,
                       "train": {"steps": steps, "batch_size": batch_size, "seq_len": 192, "lr": lr, "warmup_steps": 30,
                                 "schedule": "wsd",
                                 "weight_decay": 0.0, "max_minutes": minutes, "eval_every": 10 ** 6,
                                 "eval_batches": 2, "eval_at_start": False, "ckpt_every": 0, "keep_last": 1,
                                 "log_every": 50, "progress": False, "device": "cpu"}})
    return Path(s["model_dir"])


def evaluate(model_dir: Path, held_out: list, show: int = 5) -> dict:
    """run_agent on every held-out question; counts correct calls, correct answers and both."""
    from zerollm.loading import load

    loaded = load(model_dir)

    model, tok = loaded.model, loaded.tokenizer
    model.eval()
    ok_call = ok_answer = ok_both = 0
    misses, t0 = [], time.time()
    for q, expr, value, answer, _ in held_out:
        conv = Conversation(SYSTEM)
        conv.add("user", q)
        try:
            res = run_agent(model, tok, conv, TOOLS, max_steps=2, max_new_tokens=24)
        except ValueError as e:  # e.g. tool results filled the context: a failure, reported below
            misses.append((q, str(e)))
            continue
        called = [s for s in res.steps if s.call.name == "calculator" and s.result.ok]
        good_call = bool(called) and _num(called[0].result.content) == value
        good_answer = str(value) in re.findall(r"-?\d+(?:\.\d+)?", res.answer)
        ok_call += good_call
        ok_answer += good_answer
        ok_both += good_call and good_answer
        if not (good_call and good_answer) and len(misses) < show:
            misses.append((q, [(s.call.arguments, s.result.content) for s in res.steps], res.answer))
    n = len(held_out)
    return {"n": n, "call": ok_call / n, "answer": ok_answer / n, "both": ok_both / n,
            "ms_per_question": 1000 * (time.time() - t0) / n, "misses": misses}


def _num(text: str):
    try:
        return calculate(text)
    except ValueError:
        return None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pretrain-minutes", type=float, default=1.5)
    ap.add_argument("--sft-minutes", type=float, default=9.5)
    ap.add_argument("--sft-batch", type=int, default=8)
    ap.add_argument("--sft-lr", type=float, default=3e-3)
    ap.add_argument("--pretrain-steps", type=int, default=100000, help="upper bound (the minutes decide)")
    ap.add_argument("--sft-steps", type=int, default=100000, help="upper bound (the minutes decide)")
    ap.add_argument("--train", type=int, default=20000, help="training conversations")
    ap.add_argument("--eval", type=int, default=200, help="held-out questions")
    ap.add_argument("--pretrain-lines", type=int, default=40000)
    ap.add_argument("--general-share", type=float, default=0.5,
                    help="share of pretraining lines that are general text (the rest: worked arithmetic)")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--out", default="runs/tool_calling")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on a shared, loaded machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    train_q, held_out = split_questions(args.train, args.eval)
    records = [sft_record(*ex[:4]) for ex in train_q]
    with open(out / "tool_sft.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    lines = pretrain_lines(args.pretrain_lines, train_q, args.general_share)
    tok = build_tokenizer(out, lines, records, args.vocab)
    for rec in records[:20]:
        check_same_rendering(tok, rec)
    lengths = [len(render_chatml(r["messages"], tok, tools=r["tools"])) for r in records[:500]]
    print(f"{len(records)} training conversations (≤ {max(lengths)} tokens), {len(held_out)} held-out questions; "
          f"{len(lines)} pretraining lines; vocabulary {tok.vocab_size}")

    t0 = time.time()
    base = pretrain_base(out, lines, args.pretrain_minutes, args.pretrain_steps)
    t_pre = time.time() - t0
    t0 = time.time()
    model_dir = sft_tools(out, base, out / "tool_sft.jsonl", args.sft_minutes, args.sft_steps, args.sft_lr,
                          args.sft_batch)
    t_sft = time.time() - t0
    print(f"pretrain {t_pre:.0f} s, SFT {t_sft:.0f} s")

    r = evaluate(model_dir, held_out)
    r.update(pretrain_s=t_pre, sft_s=t_sft, total_s=time.time() - t_start)
    print(f"held-out: correct calculator call {r['call']:.1%}, correct final answer {r['answer']:.1%}, "
          f"both {r['both']:.1%} ({r['n']} questions, {r['ms_per_question']:.0f} ms each)")
    for m in r["misses"]:
        print("  miss:", m)
    print(f"total time {r['total_s']:.0f} s")
    (out / "result.json").write_text(json.dumps({k: v for k, v in r.items() if k != "misses"}, indent=1) + "\n")
    return r


if __name__ == "__main__":
    main()
    sys.exit(0)
