"""Post-training data: read the formats users bring, render them, and batch them for the training loop.

    .jsonl / .json (list) / .parquet ──read_records──▶ dict records (errors name file:line)
        ──detect_format──▶ messages | sharegpt | preference | prompt_completion | alpaca | text
        ──to_messages / to_preference──▶ chat messages ──chat_format.render──▶ ids + assistant mask
        ──SFTData / PreferenceData──▶ batches of padded tensors; labels -100 off the assistant tokens

A record may also carry `tools` (OpenAI's fine-tuning format): they are rendered into its prompt as at inference.

Formats (interop.md §5), detected by key in this order: `chosen`+`rejected` / `response_1`+`response_2`
(+`preference`) / `responses`+`ranking` / `messages` / `conversations` (ShareGPT, from/value) /
`prompt`+`completion` / `instruction` (Alpaca) / `text`. Preference records come as standard strings,
conversational message lists, LLaMA-Factory's ShareGPT form (`conversations` + `chosen`/`rejected` messages)
or the implicit-prompt form (whole dialogues in chosen/rejected, e.g. hh-rlhf's
"\\n\\nHuman: …\\n\\nAssistant: …" strings; the shared prefix is the prompt), and in the books' two other forms:

    {"prompt", "response_1", "response_2", "preference": 1 | 2}     preference names the better response
    {"prompt", "responses": [y0, …, y(K-1)], "ranking": [i, j, …]}  ranking = indices of responses, best first

A ranking of K responses becomes all K·(K−1)/2 (better, worse) pairs, each weighted 1/C(K,2) so every
prompt weighs the same in the loss however many answers it ranked (InstructGPT, Ouyang et al. 2022, eq. 1:
loss = −1/C(K,2) · E[log σ(r(x, y_w) − r(x, y_l))], all pairs of a prompt counted together); a pair
record weighs 1. Malformed records raise DataError naming file:line and the field.

SFT text is the model's chat template (ChatML unless the model brought its own), or with
`template="alpaca"` the raw Stanford Alpaca prompt (chat/templates/alpaca*.txt via chat.prompts.alpaca_prompt)
followed by the output and EOS, loss on the output and EOS only, as tatsu-lab/stanford_alpaca trains.

Batches (all tensors, so the loop can move them to the device):
    SFTData        (x, y)           x (B, T) ids, y (B, T) next-token labels, -100 = no loss
                   (x, y, seg)      with packing: seg (B, T) document ids (attention and positions reset per
                                    document, model/layers.document_mask)
    PreferenceData (x, y, index, w) x (2B, T): chosen rows then rejected rows; index (B,) pair numbers;
                                    w (B,) pair weights (1, or 1/C(K,2) for a pair from a ranking of K)
Both shuffle with a per-epoch seeded permutation and resume exactly from (epoch, position).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from zerollm.chat.format import content_text, render
from zerollm.data.sources import DataError, resolve_inputs
from zerollm.objectives.base import IGNORE_INDEX  # labels of positions without a loss (re-exported)

ALPACA_PROMPT = ("Below is an instruction that describes a task{ctx}. Write a response that appropriately "
                 "completes the request.\n\n### Instruction:\n{instruction}\n\n{input}### Response:")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "function_call": "assistant", "observation": "tool", "tool": "tool"}


# ----------------------------------------------------------------------------------------------------------
# reading


def read_records(paths: str | Path | Sequence[str | Path], limit: int | None = None) -> list[tuple[dict, str]]:
    """(record, "file:line") pairs from JSONL, JSON (a list of objects) and parquet files/dirs/globs."""
    out: list[tuple[dict, str]] = []
    for _, files in resolve_inputs(paths):
        for path in files:
            for rec, where in _read_file(Path(path)):
                if not isinstance(rec, dict):
                    raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
                out.append((rec, where))
                if limit and len(out) >= limit:
                    return out
    if not out:
        raise DataError(f"{paths}: no records found")
    return out


def _read_file(path: Path) -> Iterator[tuple[Any, str]]:
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield row, f"{path}[row {i}]"
    elif name.endswith(".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON: {e.msg} at column {e.colno}") from None
        for i, rec in enumerate(data if isinstance(data, list) else [data], 1):
            yield rec, f"{path}[record {i}]"
    else:  # .jsonl and friends
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line), f"{path}:{lineno}"
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{lineno}: invalid JSON: {e.msg} at column {e.colno}") from None


# ----------------------------------------------------------------------------------------------------------
# formats


def detect_format(rec: dict, where: str = "record") -> str:
    if "chosen" in rec and "rejected" in rec:
        return "preference"
    if "response_1" in rec and "response_2" in rec:
        return "pairwise"
    if "responses" in rec and "ranking" in rec:
        return "ranking"
    if "messages" in rec:
        return "messages"
    if "conversations" in rec:
        return "sharegpt"
    if "prompt" in rec and "completion" in rec:
        return "prompt_completion"
    if "instruction" in rec:
        return "alpaca"
    if "text" in rec:
        return "text"
    raise DataError(f"{where}: cannot tell the format from keys {sorted(rec)}; expected messages, conversations, "
                    f"chosen+rejected, response_1+response_2+preference, responses+ranking, prompt+completion, "
                    f"instruction or text")


def _as_messages(value: Any, role: str, where: str = "record", name: str = "field") -> list[dict]:
    """A string or message list (OpenAI or ShareGPT style) as OpenAI messages; bare strings get `role`.
    Anything else (a number, a list of strings, a message without text) is a DataError naming `where`/`name`."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if value is not None and not isinstance(value, list):
        raise DataError(f"{where}: field {name!r} must be a string or a list of messages, got "
                        f"{type(value).__name__} {value!r}"[:300])
    out = []
    for m in value or []:
        text = m.get("value", m.get("content", "")) if isinstance(m, dict) else None
        if not isinstance(text, (str, list, type(None))):
            raise DataError(f"{where}: field {name!r} holds a message whose text is {type(text).__name__}, not a string")
        if text is None and isinstance(m, dict) and not m.get("tool_calls"):
            text = ""
        if not isinstance(m, dict) or (isinstance(text, list) and not all(isinstance(x, dict) for x in text)):
            raise DataError(f"{where}: field {name!r} must be a string or a list of message objects, got "
                            f"{value!r}"[:300])
        if "from" in m:
            out.append({"role": SHAREGPT_ROLES.get(m["from"], m["from"]), "content": m.get("value", "")})
        else:
            out.append(dict(m))
    return out


def to_messages(rec: dict, fmt: str | None = None, where: str = "record") -> list[dict]:
    """A training conversation from one record of any SFT format."""
    fmt = fmt or detect_format(rec, where)
    if fmt == "messages":
        return _as_messages(rec["messages"], "user", where, "messages")
    if fmt == "sharegpt":
        msgs = _as_messages(rec["conversations"], "user", where, "conversations")
        if rec.get("system"):
            msgs = [{"role": "system", "content": rec["system"]}] + msgs
        return msgs
    if fmt == "prompt_completion":
        return _as_messages(rec["prompt"], "user", where, "prompt") + _as_messages(rec["completion"], "assistant", where, "completion")
    if fmt == "alpaca":
        inp = rec.get("input") or ""
        prompt = ALPACA_PROMPT.format(ctx=", paired with an input that provides further context" if inp else "",
                                      instruction=rec["instruction"], input=f"### Input:\n{inp}\n\n" if inp else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": rec.get("output", "")}]
    if fmt == "text":
        return [{"role": "assistant", "content": rec["text"]}]
    raise DataError(f"{where}: format {fmt!r} is not an SFT format")


def record_tools(rec: dict, where: str = "record") -> list[dict] | None:
    """The tools a training record offers the model, as OpenAI's fine-tuning format has them (`"tools": [{"type":
    "function", "function": {...}}, ...]`; LLaMA-Factory's ShareGPT writes the list as a JSON string). They are
    rendered into the prompt exactly as at inference (chat_format.render(tools=...), the server's and
    run_agent's path), so a model learns to call tools in the format it will be shown them."""
    tools = rec.get("tools")
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: field 'tools' is a string but not JSON ({e.msg})") from None
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise DataError(f"{where}: field 'tools' must be a list of tool objects, got {type(tools).__name__}")
    return tools


def _split_dialogue(text: str) -> list[dict]:
    """hh-rlhf style "\\n\\nHuman: …\\n\\nAssistant: …" → messages."""
    msgs: list[dict] = []
    for chunk in text.split("\n\n"):
        for tag, role in (("Human:", "user"), ("Assistant:", "assistant")):
            if chunk.startswith(tag):
                msgs.append({"role": role, "content": chunk[len(tag):].strip()})
                break
        else:
            if msgs:
                msgs[-1]["content"] += "\n\n" + chunk
    return msgs


def to_preference(rec: dict, where: str = "record") -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt messages, chosen messages, rejected messages) from any preference form."""
    if "prompt" in rec:
        prompt = _as_messages(rec["prompt"], "user", where, "prompt")
    elif "conversations" in rec:
        prompt = _as_messages(rec["conversations"], "user", where, "conversations")
    else:  # implicit prompt: whole dialogues; the shared prefix is the prompt
        ch, rj = rec["chosen"], rec["rejected"]
        ch = _split_dialogue(ch) if isinstance(ch, str) else _as_messages(ch, "assistant", where, "chosen")
        rj = _split_dialogue(rj) if isinstance(rj, str) else _as_messages(rj, "assistant", where, "rejected")
        n = 0
        while n < min(len(ch), len(rj)) - 1 and ch[n] == rj[n]:
            n += 1
        if not ch[n:] or not rj[n:]:
            raise DataError(f"{where}: chosen and rejected are identical")
        return ch[:n], ch[n:], rj[n:]
    chosen, rejected = _as_messages(rec["chosen"], "assistant", where, "chosen"), _as_messages(rec["rejected"], "assistant", where, "rejected")
    if not prompt or not chosen or not rejected:
        raise DataError(f"{where}: empty prompt, chosen or rejected")
    return prompt, chosen, rejected


def _text_field(rec: dict, key: str, where: str):
    """A response/prompt field: a non-empty string, a message or a list of messages, else a DataError naming it."""
    if key not in rec:
        raise DataError(f"{where}: field {key!r} is missing")
    v = rec[key]
    if isinstance(v, str) and v.strip() or isinstance(v, dict) and v \
            or isinstance(v, list) and v and all(isinstance(m, dict) for m in v):
        return v
    raise DataError(f"{where}: field {key!r} must be a non-empty string, a message or a list of messages, "
                    f"got {v!r:.60}")


def _prompt_of(rec: dict, where: str) -> list[dict]:
    if "prompt" not in rec and "conversations" in rec:
        return _as_messages(_text_field(rec, "conversations", where), "user")
    return _as_messages(_text_field(rec, "prompt", where), "user")


def preference_pairs(rec: dict, where: str = "record") -> list[tuple[list[dict], list[dict], list[dict], float]]:
    """(prompt, better, worse, weight) pairs of one preference record of any form (module docstring)."""
    fmt = detect_format(rec, where)
    if fmt == "preference":
        for key in ("chosen", "rejected"):
            _text_field(rec, key, where)
        return [(*to_preference(rec, where), 1.0)]
    if fmt == "pairwise":
        prompt = _prompt_of(rec, where)
        r1, r2 = _text_field(rec, "response_1", where), _text_field(rec, "response_2", where)
        pref = rec.get("preference")
        better = {1: 1, 2: 2, "1": 1, "2": 2, "response_1": 1, "response_2": 2}.get(pref) \
            if not isinstance(pref, bool) else None
        if better is None:
            raise DataError(f"{where}: field 'preference' must be 1 or 2 (the better response), got {pref!r}")
        won, lost = (r1, r2) if better == 1 else (r2, r1)
        return [(prompt, _as_messages(won, "assistant"), _as_messages(lost, "assistant"), 1.0)]
    if fmt == "ranking":
        prompt = _prompt_of(rec, where)
        responses, ranking = rec["responses"], rec["ranking"]
        if not isinstance(responses, list) or len(responses) < 2:
            raise DataError(f"{where}: field 'responses' must be a list of at least 2 responses")
        for i in range(len(responses)):
            _text_field({f"responses[{i}]": responses[i]}, f"responses[{i}]", where)
        K = len(responses)
        if not isinstance(ranking, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in ranking) \
                or sorted(ranking) != list(range(K)):
            raise DataError(f"{where}: field 'ranking' must list each index 0..{K - 1} of 'responses' once, best "
                            f"first, got {ranking!r}")
        weight = 1.0 / math.comb(K, 2)  # InstructGPT eq. 1: the C(K,2) pairs of a prompt share one unit of weight
        ranked = [_as_messages(responses[i], "assistant") for i in ranking]
        return [(prompt, ranked[a], ranked[b], weight) for a in range(K) for b in range(a + 1, K)]
    raise DataError(f"{where}: not a preference record (needs chosen+rejected, response_1+response_2+preference "
                    f"or responses+ranking)")


# ----------------------------------------------------------------------------------------------------------
# tokenizing


def encode_sft(messages: list[dict], tokenizer, max_len: int, template: str | None = None,
               tools: list[dict] | None = None) -> tuple[list[int], list[int]]:
    """(input ids, labels) of length ≤ max_len: labels[t] = ids[t+1] on assistant tokens, else -100. `tools`:
    the record's tool list (record_tools), rendered into the prompt as at inference."""
    r = render(messages, tokenizer, template=template, tools=tools)
    ids, mask = r.ids[:max_len + 1], r.mask[:max_len + 1]
    labels = [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]
    return ids[:-1], labels


def encode_alpaca(rec: dict, tokenizer, max_len: int, where: str = "record") -> tuple[list[int], list[int]]:
    """The raw Stanford Alpaca example (no chat template): prompt (chat/templates/alpaca*.txt) + output + EOS;
    labels on the output and EOS only. Length ≤ max_len (the prompt's start is kept, the output cut)."""
    from zerollm.chat.prompts import alpaca_prompt

    for key in ("instruction", "output"):
        if not isinstance(rec.get(key), str) or (key == "instruction" and not rec[key].strip()):
            raise DataError(f"{where}: field {key!r} must be a string" + (" (--template alpaca needs Alpaca "
                            "records: instruction, optional input, output)" if key not in rec else ""))
    inp = rec.get("input") or ""
    if not isinstance(inp, str):
        raise DataError(f"{where}: field 'input' must be a string")
    bos = list(getattr(tokenizer, "affixes", ((), ()))[0])  # a Llama-2 tokenizer's BOS, as transformers adds it
    prompt = bos + tokenizer.encode(alpaca_prompt(rec["instruction"], inp))
    answer = tokenizer.encode(rec["output"]) + ([tokenizer.eos_id] if tokenizer.eos_id is not None else [])
    ids = (prompt + answer)[:max_len + 1]
    mask = ([False] * len(prompt) + [True] * len(answer))[:max_len + 1]
    return ids[:-1], [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]


def encode_pair(prompt: list[dict], completion: list[dict], tokenizer, max_len: int,
                template: str | None = None) -> tuple[list[int], list[int]]:
    """A prompt and one completion (chosen or rejected): loss/score only on the final assistant turn."""
    r = render(prompt + completion, tokenizer, template=template, train_on="last")
    ids, mask = r.ids, r.mask
    if len(ids) > max_len + 1:  # keep the end (the completion); cut the start of the prompt
        ids, mask = ids[-(max_len + 1):], mask[-(max_len + 1):]
    return ids[:-1], [t if m else IGNORE_INDEX for t, m in zip(ids[1:], mask[1:])]


def pad_batch(rows: Sequence[tuple], pad_id: int, length: int | None = None):
    """Right-pad (ids, labels) rows to one length → x (B, T) int64, y (B, T) int64 (-100 on padding).
    Packed rows (ids, labels, segments) also give seg (B, T) int64: document ids, padding is segment -1."""
    T = length or max(len(r[0]) for r in rows)
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
    packed = len(rows[0]) > 2
    seg = torch.full((len(rows), T), -1, dtype=torch.long) if packed else None
    for i, row in enumerate(rows):
        ids, labels = row[0], row[1]
        x[i, :len(ids)] = torch.tensor(ids[:T], dtype=torch.long)
        y[i, :len(labels)] = torch.tensor(labels[:T], dtype=torch.long)
        if packed:
            seg[i, :len(row[2])] = torch.tensor(row[2][:T], dtype=torch.long)
    return (x, y, seg) if packed else (x, y)


def pack(examples: Sequence[tuple[list[int], list[int]]], seq_len: int) -> list[tuple[list[int], list[int], list[int]]]:
    """Pack examples into rows of at most seq_len tokens → (ids, labels, segments) rows.

    Examples are placed whole, in order: one that does not fit in the current row's remaining space starts a
    new row (one longer than seq_len is cut into seq_len pieces, each its own document). `segments` numbers
    the documents of a row 0, 1, …; the model turns them into a block-diagonal causal mask with positions
    restarting per document (model/layers.document_mask), so a packed row computes exactly what its
    documents would alone. Each example's labels are already its own next tokens (encode_sft), so no label
    crosses a document boundary."""
    rows: list[tuple[list[int], list[int], list[int]]] = []
    ids: list[int] = []
    labels: list[int] = []
    segs: list[int] = []
    for a, b in examples:
        for start in range(0, max(len(a), 1), seq_len):
            piece_a, piece_b = a[start:start + seq_len], b[start:start + seq_len]
            if ids and len(ids) + len(piece_a) > seq_len:
                rows.append((ids, labels, segs))
                ids, labels, segs = [], [], []
            doc = segs[-1] + 1 if segs else 0
            ids, labels, segs = ids + piece_a, labels + piece_b, segs + [doc] * len(piece_a)
    if ids:
        rows.append((ids, labels, segs))
    return rows


def pad_id_of(tokenizer) -> int:
    return tokenizer.pad_id if tokenizer.pad_id is not None else (tokenizer.eos_id or 0)


class _Shuffled:
    """Epoch-seeded shuffling over `n` items with an exact resume position."""

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True):
        if n == 0:
            raise DataError("no training examples")
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.epoch, self.pos = 0, 0
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> None:
        """Under DDP/FSDP: draw global batches of batch_size × world_size items and keep rows
        [rank·B, (rank+1)·B). The position (epoch, pos) is global, the same on every rank, so a run resumes
        exactly at any world size that keeps the global batch."""
        self.rank, self.world_size = rank, world_size

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def next_indices(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.batch_size * self.world_size:
            order = self._order()
            take = order[self.pos:self.pos + self.batch_size * self.world_size - len(out)]
            out += take
            self.pos += len(take)
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        return out[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])


class SFTData(_Shuffled):
    """Batch source for SFT: `examples` are (ids, labels) rows; with `packing` they are packed first (rows
    of seq_len tokens, batches carry document ids so attention does not cross examples)."""

    def __init__(self, examples, batch_size: int, pad_id: int, seq_len: int | None = None, packing: bool = False,
                 seed: int = 0, shuffle: bool = True):
        self.rows = pack(examples, seq_len) if packing and seq_len else list(examples)
        self.pad_id, self.seq_len = pad_id, seq_len if packing else None
        super().__init__(len(self.rows), batch_size, seed, shuffle)

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """(x, y), or (x, y, segments) when packing."""
        return pad_batch([self.rows[i] for i in self.next_indices()], self.pad_id, self.seq_len)

    def iter_all(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.rows), batch_size):
            yield pad_batch(self.rows[i:i + batch_size], self.pad_id)


class PreferenceData(_Shuffled):
    """Batch source of (chosen, rejected) pairs: x (2B, T) chosen rows then rejected rows, y labels, index."""

    def __init__(self, pairs, batch_size: int, pad_id: int, seed: int = 0, shuffle: bool = True):
        self.pairs = list(pairs)  # [((ids, labels) chosen, (ids, labels) rejected[, weight])]
        self.weights = torch.tensor([p[2] if len(p) > 2 else 1.0 for p in self.pairs], dtype=torch.float32)
        self.pad_id = pad_id
        super().__init__(len(self.pairs), batch_size, seed, shuffle)

    def batch_of(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = [self.pairs[i][0] for i in idx] + [self.pairs[i][1] for i in idx]
        x, y = pad_batch(rows, self.pad_id)
        index = torch.tensor(list(idx), dtype=torch.long)
        return x, y, index, self.weights[index]

    def next_batch(self):
        return self.batch_of(self.next_indices())

    def iter_all(self, batch_size: int):
        for i in range(0, len(self.pairs), batch_size):
            yield self.batch_of(range(i, min(i + batch_size, len(self.pairs))))


def load_sft_examples(paths, tokenizer, max_len: int, limit: int | None = None, template: str | None = None,
                      prompt_format: str = "chat"):
    """Read any SFT format and tokenize; examples without a single target token are dropped.
    prompt_format "chat": the chat template (`template`, None = ChatML); "alpaca": the raw Alpaca prompt."""
    if prompt_format not in ("chat", "alpaca"):
        raise ValueError(f"unknown SFT prompt format {prompt_format!r} (chat | alpaca)")
    out = []
    for rec, where in read_records(paths, limit):
        if prompt_format == "alpaca":
            ex = encode_alpaca(rec, tokenizer, max_len, where)
        else:
            ex = encode_sft(to_messages(rec, where=where), tokenizer, max_len, template, record_tools(rec, where))
        if any(t != IGNORE_INDEX for t in ex[1]):
            out.append(ex)
    if not out:
        raise DataError(f"{paths}: no example has assistant tokens within max_len={max_len}")
    return out


def load_preference_pairs(paths, tokenizer, max_len: int, limit: int | None = None, template: str | None = None):
    """Read preference records of any form → [((better ids, labels), (worse ids, labels), weight)]."""
    out = []
    for rec, where in read_records(paths, limit):
        for prompt, chosen, rejected, weight in preference_pairs(rec, where):
            c = encode_pair(prompt, chosen, tokenizer, max_len, template)
            r = encode_pair(prompt, rejected, tokenizer, max_len, template)
            if any(t != IGNORE_INDEX for t in c[1]) and any(t != IGNORE_INDEX for t in r[1]):
                out.append((c, r, weight))
    return out


def steps_for_epochs(epochs: float, n_items: int, batch_size: int) -> int:
    """Optimizer steps for `epochs` passes over n_items training rows (examples, packed rows or pairs)."""
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return max(1, math.ceil(epochs * n_items / batch_size))


def load_prompts(paths, limit: int | None = None) -> list[tuple[list[dict], dict]]:
    """(prompt messages, record) for RL: `prompt`/`question`/`messages` (without a final assistant turn)."""
    out = []
    for rec, where in read_records(paths, limit):
        if "question" in rec:
            if not isinstance(rec["question"], str):
                raise DataError(f"{where}: field 'question' must be a string, got {type(rec['question']).__name__}")
            msgs = [{"role": "user", "content": rec["question"]}]
        elif "prompt" in rec:
            msgs = _as_messages(rec["prompt"], "user", where, "prompt")
        elif "messages" in rec or "conversations" in rec:
            msgs = to_messages(rec, where=where)
            while msgs and msgs[-1]["role"] == "assistant":
                msgs = msgs[:-1]
        else:
            raise DataError(f"{where}: no prompt (expected question, prompt or messages)")
        out.append((msgs, rec))
    return out


def write_jsonl(path: str | Path, records: Sequence[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


__all__ = ["read_records", "detect_format", "to_messages", "record_tools", "to_preference", "preference_pairs",
           "encode_sft", "encode_alpaca", "encode_pair", "pack", "steps_for_epochs",
           "pad_batch", "SFTData", "PreferenceData", "load_sft_examples", "load_preference_pairs", "load_prompts",
           "content_text", "write_jsonl", "IGNORE_INDEX"]
