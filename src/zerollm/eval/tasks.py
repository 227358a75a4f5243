"""The task registry: what an evaluation asks and how each item reads.

A `Task` is a list of items in one of three shapes, so the runner needs no per-task code:

    multiple_choice  {"context", "choices": [str, ...], "label": int}   scored by log-likelihood of
                     context + delimiter + choice (acc, acc_norm; metrics.py)
    generate         {"prompt", "targets": [str, ...]}                  greedy (or k sampled) continuations
                     until a stop string, scored by the task's metric ("gsm8k", "squad", "exact_match")
    bpb              {"text"}                                            bits per byte (Σ log p over bytes)

Built in (files under the shared data directory, /work/shared/data, SOURCES.md):

    piqa             piqa/valid.jsonl + valid-labels.lst; lm-eval's prompt "Question: {goal}\\nAnswer:"
    jcommonsenseqa   jglue_jcommonsenseqa/valid-v1.3.json; lm-eval ja_leaderboard_jcommonsenseqa's prompt
    gsm8k            gsm8k/test.jsonl; "Question: ...\\nAnswer:" (few-shot examples from train.jsonl carry
                     their worked reasoning: few-shot chain of thought); strict "#### n" and flexible match
    jsquad           jglue_jsquad/valid-v1.3.json; lm-eval ja_leaderboard_jsquad's prompt; EM and char F1
    bpb              tinyshakespeare/input.txt, one speech per document
    bpb_ja           aozora 羅生門 + 蜘蛛の糸 (plain text, data/aozora.py), one paragraph per document

and three spellings that need no code: `mc:FILE.jsonl` (any JSONL of context/choices/label), `bpb:FILE`
(.txt: blank-line separated documents; .jsonl: a "text" field) and `FILE.yaml|.yml|.json`, a user task:

    name: my_task                   # optional (default: the file name)
    data: items.jsonl               # JSONL, relative to the task file
    kind: multiple_choice           # or generate | bpb
    prompt: "Q: {question}\\nA:"     # chat/prompts.py template syntax over the item's fields
    choices: [a, b, c]              # multiple_choice: fields holding the choices, or one field with a list
    label: label                    # multiple_choice: the field holding the gold index (default "label")
    target: answer                  # generate: the field holding the answer (a string or a list)
    metric: exact_match             # generate: exact_match | squad (EM + char F1) | gsm8k
    until: ["\\n"]                   # generate: stop strings; max_new_tokens: 64
    delimiter: " "                  # between prompt and choice/target (lm-eval's target_delimiter)

Bad files fail with the file, line and field: a missing field, a label out of range, empty choices.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from zerollm.chat.prompts import PromptError, PromptTemplate

JA_DESCRIPTION = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\n\n"


@dataclass
class Task:
    name: str
    kind: str  # multiple_choice | generate | bpb
    items: list[dict]
    fewshot_pool: list[dict] | None = None  # None: few-shot examples come from `items` (the item itself excluded)
    delimiter: str = " "
    description: str = ""
    metric: str = "acc"  # generate: gsm8k | squad | exact_match
    until: list[str] = field(default_factory=list)
    max_new_tokens: int = 256


def shared_data_dir() -> Path:
    """$ZEROLLM_SHARED_DATA, else ../shared/data next to the working directory or the source checkout."""
    env = os.environ.get("ZEROLLM_SHARED_DATA")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base.parent / "shared" / "data").is_dir():
            return base.parent / "shared" / "data"
    return Path("/work/shared/data")


def _fail(path, line, msg) -> ValueError:
    return ValueError(f"{path}:{line}: {msg}" if line else f"{path}: {msg}")


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) for each non-empty line; a line that is not a JSON object is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such task data file")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise _fail(path, n, f"not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise _fail(path, n, "expected a JSON object")
            out.append((n, rec))
    if not out:
        raise _fail(path, 0, "no items")
    return out


def _get(rec: dict, key: str, path, line, typ=None):
    if key not in rec:
        raise _fail(path, line, f"missing field {key!r}")
    v = rec[key]
    if typ is not None and not isinstance(v, typ):
        raise _fail(path, line, f"field {key!r} must be {typ.__name__ if isinstance(typ, type) else typ}")
    return v


def mc_item(context: str, choices, label, path, line, label_field="label", choices_field="choices") -> dict:
    if not isinstance(choices, list) or not choices:
        raise _fail(path, line, f"field {choices_field!r}: empty or not a list of choices")
    if not all(isinstance(c, str) and c for c in choices):
        raise _fail(path, line, f"field {choices_field!r}: every choice must be a non-empty string")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(choices):
        raise _fail(path, line, f"field {label_field!r}={label!r} is out of range for {len(choices)} choices")
    return {"context": context, "choices": choices, "label": label, "line": line}


# ---- built-in tasks --------------------------------------------------------------------------------------

def piqa(root: Path) -> Task:
    path, labels_path = root / "piqa" / "valid.jsonl", root / "piqa" / "valid-labels.lst"
    labels = labels_path.read_text().split() if labels_path.is_file() else []
    rows = read_jsonl(path)
    if len(labels) != len(rows):
        raise _fail(labels_path, 0, f"{len(labels)} labels for {len(rows)} items in {path}")
    items = [mc_item(f"Question: {_get(r, 'goal', path, n, str)}\nAnswer:",
                     [_get(r, "sol1", path, n, str), _get(r, "sol2", path, n, str)], int(lab), path, n)
             for (n, r), lab in zip(rows, labels)]
    return Task("piqa", "multiple_choice", items)


def _jcqa_items(path: Path) -> list[dict]:
    out = []
    for n, r in read_jsonl(path):
        choices = [_get(r, f"choice{i}", path, n, str) for i in range(5)]
        q = _get(r, "question", path, n, str)
        ctx = ("### 指示：\n出力は以下から選択してください：\n" + "".join(f"- {c}\n" for c in choices)
               + f"### 入力：\n{q}\n\n### 応答：")
        out.append(mc_item(ctx, choices, _get(r, "label", path, n), path, n))
    return out


def jcommonsenseqa(root: Path) -> Task:
    d = root / "jglue_jcommonsenseqa"
    train = d / "train-v1.3.json"
    return Task("jcommonsenseqa", "multiple_choice", _jcqa_items(d / "valid-v1.3.json"),
                fewshot_pool=_jcqa_items(train) if train.is_file() else None, delimiter="\n",
                description=JA_DESCRIPTION)


def _gsm8k_items(path: Path) -> list[dict]:
    from zerollm.eval.metrics import gsm8k_gold

    out = []
    for n, r in read_jsonl(path):
        answer = _get(r, "answer", path, n, str)
        out.append({"prompt": f"Question: {_get(r, 'question', path, n, str)}\nAnswer:",
                    "targets": [gsm8k_gold(answer)], "shot": answer, "line": n})
    return out


def gsm8k(root: Path) -> Task:
    d = root / "gsm8k"
    train = d / "train.jsonl"
    return Task("gsm8k", "generate", _gsm8k_items(d / "test.jsonl"),
                fewshot_pool=_gsm8k_items(train) if train.is_file() else None, metric="gsm8k",
                until=["Question:", "</s>", "<|im_end|>"], max_new_tokens=256)


def jsquad(root: Path) -> Task:
    path = root / "jglue_jsquad" / "valid-v1.3.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such task data file")
    items = []
    for art in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for para in art["paragraphs"]:
            ctx = para["context"].split("[SEP]")[-1].strip()
            for qa in para["qas"]:
                golds = [a["text"] for a in qa["answers"]]
                if not golds:
                    raise _fail(path, 0, f"question {qa.get('id')}: field 'answers' is empty")
                items.append({"prompt": "### 指示：\n与えられた文脈から、質問に対する答えを抜き出してください。\n\n"
                                        f"### 入力：\n文脈：{ctx}\n質問：{qa['question']}\n\n### 応答：",
                              "targets": golds, "shot": golds[0], "line": 1, "id": qa.get("id")})
    return Task("jsquad", "generate", items, delimiter="\n", description=JA_DESCRIPTION, metric="squad",
                until=["\n\n"], max_new_tokens=64)


def text_documents(path: Path) -> list[dict]:
    """Documents of a text file (.txt: blank-line separated; .jsonl: each record's "text")."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [{"text": _get(r, "text", path, n, str), "line": n} for n, r in read_jsonl(path)]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file")
    text = path.read_text(encoding="utf-8")
    if "［＃" in text or "《" in text:  # Aozora Bunko markup
        from zerollm.data.aozora import strip_aozora

        text = strip_aozora(text)
    docs = [d.strip() for d in text.replace("\r\n", "\n").split("\n\n") if d.strip()]
    if not docs:
        raise _fail(path, 0, "no text")
    return [{"text": d} for d in docs]


def bpb(root: Path) -> Task:
    return Task("bpb", "bpb", text_documents(root / "tinyshakespeare" / "input.txt"))


def bpb_ja(root: Path) -> Task:
    items = []
    for f in ("127_ruby_150.txt", "92_ruby_164.txt"):
        for d in text_documents(root / "aozora" / f):
            items += [{"text": p} for p in d["text"].split("\n") if p.strip()]
    return Task("bpb_ja", "bpb", items)


BUILTIN = {"piqa": piqa, "jcommonsenseqa": jcommonsenseqa, "gsm8k": gsm8k, "jsquad": jsquad, "bpb": bpb,
           "bpb_ja": bpb_ja}


# ---- tasks from files ------------------------------------------------------------------------------------

def jsonl_mc(path: Path) -> Task:
    items = [mc_item(_get(r, "context", path, n, str), _get(r, "choices", path, n), _get(r, "label", path, n),
                     path, n) for n, r in read_jsonl(path)]
    return Task(Path(path).stem, "multiple_choice", items)


def _render(tpl: PromptTemplate, rec: dict, path, line) -> str:
    for v in tpl.variables:
        if v not in rec:
            raise _fail(path, line, f"missing field {v!r} (used by the prompt)")
    return tpl.render(**{v: rec[v] for v in tpl.variables})


def task_file(path: str | Path) -> Task:
    """A user task from a small YAML/JSON file (see the module docstring)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such task file")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except yaml.YAMLError as e:
        raise _fail(path, getattr(getattr(e, "problem_mark", None), "line", -1) + 1, f"not valid YAML ({e})") \
            from None
    if not isinstance(spec, dict):
        raise _fail(path, 0, "expected a mapping of task fields")
    known = {"name", "data", "kind", "prompt", "choices", "label", "target", "metric", "until", "max_new_tokens",
             "delimiter", "description"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise _fail(path, 0, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for key in ("data", "kind"):
        if key not in spec:
            raise _fail(path, 0, f"missing field {key!r}")
    kind, data = spec["kind"], path.parent / str(spec["data"])
    if kind not in ("multiple_choice", "generate", "bpb"):
        raise _fail(path, 0, f"field 'kind'={kind!r}: choose multiple_choice, generate or bpb")
    name = str(spec.get("name") or path.stem)
    common = {"delimiter": str(spec.get("delimiter", " ")), "description": str(spec.get("description", ""))}
    if kind == "bpb":
        return Task(name, "bpb", text_documents(data), **common)
    if "prompt" not in spec:
        raise _fail(path, 0, "missing field 'prompt'")
    try:
        tpl = PromptTemplate(str(spec["prompt"]), f"{path} field 'prompt'")
    except PromptError as e:
        raise ValueError(str(e)) from None
    rows = read_jsonl(data)
    if kind == "multiple_choice":
        if "choices" not in spec:
            raise _fail(path, 0, "missing field 'choices'")
        cf, lf = spec["choices"], str(spec.get("label", "label"))
        items = []
        for n, r in rows:
            choices = [_get(r, c, data, n) for c in cf] if isinstance(cf, list) else _get(r, str(cf), data, n)
            items.append(mc_item(_render(tpl, r, data, n), choices, _get(r, lf, data, n), data, n, lf,
                                 str(cf) if not isinstance(cf, list) else "choices"))
        return Task(name, "multiple_choice", items, **common)
    if "target" not in spec:
        raise _fail(path, 0, "missing field 'target'")
    metric = spec.get("metric", "exact_match")
    if metric not in ("exact_match", "squad", "gsm8k"):
        raise _fail(path, 0, f"field 'metric'={metric!r}: choose exact_match, squad or gsm8k")
    items = []
    for n, r in rows:
        t = _get(r, str(spec["target"]), data, n)
        targets = t if isinstance(t, list) else [t]
        if not targets or not all(isinstance(x, (str, int, float)) for x in targets):
            raise _fail(data, n, f"field {spec['target']!r}: empty or not text")
        targets = [str(x) for x in targets]
        items.append({"prompt": _render(tpl, r, data, n), "targets": targets, "shot": targets[0], "line": n})
    until = spec.get("until", ["\n"])
    return Task(name, "generate", items, metric=metric, until=[until] if isinstance(until, str) else list(until),
                max_new_tokens=int(spec.get("max_new_tokens", 64)), **common)


def get_task(spec: str, data_dir: str | Path | None = None) -> Task:
    """A task by name (BUILTIN), `mc:FILE`, `bpb:FILE`, or a task file (.yaml/.yml/.json)."""
    root = Path(data_dir) if data_dir else shared_data_dir()
    if spec in BUILTIN:
        return BUILTIN[spec](root)
    if spec.startswith("mc:"):
        return jsonl_mc(Path(spec[3:]))
    if spec.startswith("bpb:"):
        path = Path(spec[4:])
        return Task(f"bpb:{path.name}", "bpb", text_documents(path))
    if spec.endswith((".yaml", ".yml", ".json")):
        return task_file(spec)
    raise ValueError(f"unknown task {spec!r}: choose from {', '.join(BUILTIN)}, mc:FILE.jsonl, bpb:FILE, "
                     f"or a task file (.yaml/.json)")


__all__ = [
    "BUILTIN",
    "Task",
    "get_task",
    "jsonl_mc",
    "read_jsonl",
    "shared_data_dir",
    "task_file",
    "text_documents",
]
