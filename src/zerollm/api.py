"""The Python API: one function per CLI stage, with the same names and arguments.

    zerollm tokenizer train  ↔ tokenizer_train(inputs, out, vocab_size=...)
    zerollm data prepare     ↔ data_prepare(inputs, tokenizer, out, ...)
    zerollm pretrain         ↔ pretrain(config_or_yaml, overrides)
    zerollm generate         ↔ generate(model, prompt, ...)
    zerollm quickstart       ↔ quickstart(corpus=..., minutes=..., preset=...)
    zerollm chat             ↔ chat(model, system=...)
    zerollm rag index / ask  ↔ rag_index(docs, out, ...) / rag_ask(index, question, model=...)
    zerollm convert          ↔ convert(src, out, from_format="hf")
    zerollm serve            ↔ serve(model, host="127.0.0.1", port=8000, api_key=None)
    zerollm export           ↔ export(model, out, format="hf"|"gguf"|"llama2c", version=...)
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from zerollm.convert import convert, export
from zerollm.pretrain import PretrainConfig, pretrain
from zerollm.quickstart import QuickstartConfig, quickstart


def tokenizer_train(inputs: list[str], out: str | Path, vocab_size: int = 4096, pattern: str | None = None,
                    text_field: str = "text", show_progress: bool = True, algorithm: str = "bpe"):
    """Train a tokenizer on text files/JSONL/parquet and save it to `out`.
    algorithm: "bpe" (byte-level, regex pre-split), "wordpiece" (BERT), "unigram" or "bpe_sp"
    (SentencePiece-style on raw text with ▁: no pre-split, so Japanese works)."""
    from zerollm.data.sources import iter_documents

    texts = (doc.text for doc in iter_documents(list(inputs), text_field=text_field))
    if algorithm == "bpe":
        from zerollm.tokenizer.bpe import train_bpe

        kwargs = {"pattern": pattern} if pattern else {}
        tok = train_bpe(texts, vocab_size=vocab_size, show_progress=show_progress, **kwargs)
    elif algorithm in ("wordpiece", "unigram", "bpe_sp"):
        if pattern:
            raise ValueError(f"--pattern applies to byte-level BPE only, not {algorithm}")
        if algorithm == "wordpiece":
            from zerollm.tokenizer.wordpiece import train_wordpiece as trainer
        elif algorithm == "unigram":
            from zerollm.tokenizer.unigram import train_unigram as trainer
        else:
            from zerollm.tokenizer.bpe_sp import train_bpe_sp as trainer
        tok = trainer(list(texts), vocab_size=vocab_size)
    else:
        raise ValueError(f"unknown tokenizer algorithm {algorithm!r}; expected bpe | wordpiece | unigram | bpe_sp")
    tok.save(out)
    return tok


def data_prepare(inputs: list[str], tokenizer: str | Path, out: str | Path, **kwargs) -> dict:
    from zerollm.data.prepare import data_prepare as _prepare

    return _prepare(list(inputs), tokenizer, out, **kwargs)


def load(model: str | Path, device: str = "auto"):
    """(model, tokenizer) from a checkpoint or run directory, or a Hugging Face model directory."""
    from zerollm.train.checkpoint import load_model
    from zerollm.train.distributed import pick_device

    m, tok, ckpt = load_model(model, device=pick_device(device))
    if tok is None:
        raise FileNotFoundError(f"{model}: checkpoint has no tokenizer/ directory")
    m.end_token_ids = end_token_ids(ckpt, tok)
    return m.optimize_for_decode(), tok  # weight layout for fast batch-1 decoding (values unchanged)


def end_token_ids(model_dir: str | Path, tok) -> list[int]:
    """Ids that end a generation: the tokenizer's eos plus generation_config.json's eos_token_id (an int or a
    list: converted chat models end turns with e.g. <|im_end|> as well as <|endoftext|>)."""
    import json

    ids = [tok.eos_id] if tok.eos_id is not None else []
    gen_cfg = Path(model_dir) / "generation_config.json"
    if gen_cfg.is_file():
        try:
            eos = json.loads(gen_cfg.read_text(encoding="utf-8")).get("eos_token_id")
        except json.JSONDecodeError as e:
            raise ValueError(f"{gen_cfg}: not valid JSON ({e})") from None
        for i in (eos if isinstance(eos, list) else [eos]):
            if isinstance(i, int) and i not in ids:
                ids.append(i)
    return ids


def generate(model: str | Path, prompt: str, *, stream: bool = False, device: str = "auto",
             **gen_kwargs) -> str | Iterator[str]:
    """Generate a continuation of `prompt`. `gen_kwargs` are GenerationConfig fields
    (max_new_tokens, temperature, top_k, top_p, repetition_penalty, stop_strings, seed, ...), plus
    json_schema (a file) / regex for constrained output and draft (a model directory) / draft_tokens for
    speculative decoding with a smaller model of the same vocabulary (engine.generate.generate_text)."""
    from zerollm.engine.generate import GenerationConfig, generate_text

    json_schema, regex = gen_kwargs.pop("json_schema", None), gen_kwargs.pop("regex", None)
    draft, draft_tokens = gen_kwargs.pop("draft", None), gen_kwargs.pop("draft_tokens", 4)
    m, tok = load(model, device)
    constraint = None
    if json_schema or regex:
        import json as _json

        from zerollm.engine.constrained import JSONSchemaConstraint, RegexConstraint
        constraint = (RegexConstraint(regex, tok) if regex else JSONSchemaConstraint(
            _json.loads(Path(json_schema).read_text(encoding="utf-8")), tok))
    stops = list(gen_kwargs.pop("stop_token_ids", []) or [])
    stops += [i for i in m.end_token_ids if i not in stops]
    return generate_text(m, tok, tok.encode(prompt), GenerationConfig(stop_token_ids=stops, **gen_kwargs),
                         constraint=constraint, draft_model=load(draft, device)[0] if draft else None,
                         draft_tokens=draft_tokens, stream=stream)


def sft(cfg=None, overrides=None) -> dict:
    """Supervised chat fine-tuning; cfg: SFTConfig or YAML path; overrides: dotted list or dict."""
    from zerollm.posttrain.stages import sft as _sft

    return _sft(cfg, overrides)


def reward(cfg=None, overrides=None) -> dict:
    """Reward model (Bradley-Terry) on preference pairs."""
    from zerollm.posttrain.stages import reward as _reward

    return _reward(cfg, overrides)


def dpo(cfg=None, overrides=None) -> dict:
    """Direct preference optimization."""
    from zerollm.posttrain.stages import dpo as _dpo

    return _dpo(cfg, overrides)


def ppo(cfg=None, overrides=None, property_fn=None) -> dict:
    """PPO (RLHF) against a reward model from `reward`."""
    from zerollm.posttrain.stages import ppo as _ppo

    return _ppo(cfg, overrides, property_fn=property_fn)


def grpo(cfg=None, overrides=None) -> dict:
    """GRPO on verifiable (exact-answer) rewards."""
    from zerollm.posttrain.stages import grpo as _grpo

    return _grpo(cfg, overrides)


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None) -> None:
    """Serve `model` with the OpenAI-compatible API and the chat page (zerollm.serve) until interrupted."""
    from zerollm.serve import serve as _serve

    _serve(model, host=host, port=port, api_key=api_key)


__all__ = ["serve", "sft", "reward", "dpo", "ppo", "grpo", "tokenizer_train", "data_prepare", "pretrain", "PretrainConfig", "generate", "load", "quickstart",
           "QuickstartConfig", "convert", "export"]


# ---- using a model: chat and RAG (zerollm.chat, zerollm.rag) ------------------------------------------------
def chat(model: str | Path, system: str | None = None, device: str = "auto", **kwargs) -> None:
    """`zerollm chat`: the interactive REPL (kwargs: max_new_tokens, temperature, top_p, seed)."""
    from zerollm.chat.repl import chat_main

    chat_main(str(model), system=system, device=device, **kwargs)


def rag_index(docs: list[str], out: str | Path, embedder: str | None = None, max_chars: int = 500,
              overlap: int = 100, delete: list[str] = ()):
    """`zerollm rag index`: build or update (add/replace/delete sources) an index directory atomically."""
    from zerollm.rag.embed import load_embedder
    from zerollm.rag.index import build_index

    emb = load_embedder(embedder) if embedder else None
    return build_index(list(docs), out, embedder=emb, max_chars=max_chars, overlap=overlap, delete=delete)


def rag_ask(index: str | Path, question: str, model: str | Path | None = None, k: int = 4, mode: str = "auto",
            max_new_tokens: int = 200, device: str = "auto", stream=None):
    """`zerollm rag ask`: retrieve passages and (with a model) answer with numbered citations."""
    from zerollm.rag.answer import Answer, answer
    from zerollm.rag.index import RAGIndex
    from zerollm.rag.retrieve import Retriever

    retriever = Retriever(RAGIndex.open(index))
    if model is None:
        hits = retriever.search(question, k=k, mode=mode)
        passages = [{"n": i, "source": h.chunk.source, "heading": h.chunk.heading, "text": h.chunk.text}
                    for i, h in enumerate(hits, 1)]
        body = "\n\n".join(f"[{p['n']}] {p['text']}" for p in passages) or "(no matching passages)"
        return Answer(body, passages, passages)
    m, tok = load(model, device)
    return answer(question, retriever, m, tok, k=k, mode=mode, max_new_tokens=max_new_tokens, stream=stream)


def quantize(model: str | Path, out: str | Path, scheme: str | None = None, bits: int | None = None,
             group_size: int = 32, output_scheme: str | None = "int8") -> Path:
    """Weight-only quantized copy of a checkpoint (int8, int4-sym, int4-asym, nf4; the output projection in
    `output_scheme`, None = float); see zerollm.quantize."""
    from zerollm.quantize import quantize as _quantize

    return _quantize(model, out, scheme=scheme, bits=bits, group_size=group_size, output_scheme=output_scheme)


def memory(params: str | None = None, model: str | None = None, context: int = 4096, batch: int = 1) -> str:
    """Weight and KV-cache memory table for fp32/bf16/int8/int4/nf4."""
    from zerollm.quantize import memory as _memory

    return _memory(params=params, model=model, context=context, batch=batch)
