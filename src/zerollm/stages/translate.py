"""`zerollm translate train` and `zerollm translate`: the encoder-decoder Transformer (model/seq2seq.py) on
a parallel corpus, trained through the one training loop and decoded through engine/seq2seq.py.

    zerollm translate train --train train.en train.ja --dev dev.en dev.ja [--test test.en test.ja]
                            --out runs/enja [--direction en-ja|ja-en] [--config configs/translate_enja.yaml]
                            [--vocab joint|separate [--src-vocab-size N]]
    zerollm translate --model runs/enja "i like apples ."
    zerollm translate --model runs/enja --input test.en --output hyp.ja [--num-beams 4]

    run_dir/
      tokenizer/          the joint SentencePiece-Unigram (or -BPE) tokenizer, trained on both sides;
                          with --vocab separate the target side's, trained on the target side only
      src_tokenizer/      (--vocab separate) the source side's, trained on the source side only
      checkpoints/step-N/ latest checkpoints (exact resume: weights, optimizer, RNG, batcher position)
      best/step-N/        the checkpoint with the best dev BLEU (what `translate --model run_dir` uses);
                          every checkpoint holds tokenizer/ (and src_tokenizer/) as the run dir does
      metrics.jsonl, loss.png, bleu.png, cross_attention.png, report.md, test.hyp (with --test)
      eval.json           (with --test) the test scores in the eval package's form, task = score (bleu, chrf),
                          metric = decoding (greedy, beam4): a row each on `zerollm report`'s card

Vocabularies: `joint` (the default) is one tokenizer for both sides, one embedding table shared by encoder,
decoder and the tied output projection (sec. 3.4 of the paper). `separate` trains one tokenizer per side
(`src_vocab_size`, 0 = `vocab_size`): the encoder gets its own table (`src_emb`), the decoder's stays tied
to the output. The model has one pad/bos/eos id, so both tokenizers put their 16 special tokens after the
larger piece table; the smaller side's ids in between become more reserved special tokens (`_special_ids`).

Throughput in metrics.jsonl / the report counts real source + target tokens (Seq2SeqObjective.batch_tokens),
as bench/bench_translate.py does.

Scores: sacrebleu BLEU and chrF on the corpus's own tokens (tokenize="none": the data is pre-tokenized),
and for a Japanese target also sacrebleu's ja-mecab tokenizer on the detokenized text (when installed).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zerollm.artifacts import atomic_write_text, prepare_out, pyplot, read_manifest, save_figure
from zerollm.data.parallel import (
    TokenBucketBatcher,
    collate,
    encode_pairs,
    length_batches,
    pair_lengths,
    read_parallel,
)
from zerollm.data.sources import DataError
from zerollm.engine.config import GenerationConfig
from zerollm.engine.seq2seq import translate_ids
from zerollm.eval import write_eval_json
from zerollm.loading import latest_checkpoint, load
from zerollm.model.seq2seq import Seq2Seq, Seq2SeqConfig, cross_attention
from zerollm.objectives.seq2seq import Seq2SeqObjective, bleu_scores, evaluate_seq2seq
from zerollm.rundir import fenced, finish_report, plot_metrics, start_run
from zerollm.runtime import setup_runtime
from zerollm.tokenizer.base import NUM_DEFAULT_SPECIAL_TOKENS, default_special_tokens, load_tokenizer
from zerollm.train.checkpoint import prune_checkpoints, save_checkpoint
from zerollm.train.distributed import barrier, cleanup, failure_guard, init_distributed
from zerollm.train.loop import TrainConfig, train
from zerollm.train.parallel import full_model
from zerollm.train.report import read_metrics


def _default_train() -> TrainConfig:
    return TrainConfig(steps=100_000, lr=1e-3, warmup_steps=200, schedule="wsd", decay_fraction=0.2,
                       min_lr_ratio=0.05, weight_decay=0.0, beta1=0.9, beta2=0.98, grad_clip=1.0, eval_every=400,
                       eval_batches=40, ckpt_every=400, keep_last=1, log_every=20, max_minutes=30.0)


@dataclass
class TranslateTrainConfig:
    train_data: list = field(default_factory=list, metadata={
        "flag": "--train", "help": "SRC TGT files (aligned lines), or one .tsv / .jsonl (src, tgt) file"})
    dev_data: list = field(default_factory=list, metadata={"flag": "--dev", "help": "dev set, same forms"})
    test_data: list = field(default_factory=list, metadata={"flag": "--test", "help": "test set (scored at the end)"})
    out: str = "runs/translate"
    direction: str = field(default="en-ja", metadata={"help": "SRC-TGT: which side is the source (en-ja, ja-en)"})
    tokenizer: str = field(default="unigram", metadata={"choices": ("unigram", "bpe_sp")})
    vocab: str = field(default="joint", metadata={
        "choices": ("joint", "separate"), "help": "one tokenizer for both sides, or one per side"})
    vocab_size: int = 8000  # the joint vocabulary's pieces; with vocab=separate the target side's
    src_vocab_size: int = 0  # vocab=separate: the source side's pieces (0 = vocab_size)
    max_len: int = 128  # tokens per sentence (eos included); longer ones are an error naming the line
    max_tokens: int = 2000  # tokens per batch (padded longest side x sentences)
    label_smoothing: float = 0.1
    model: dict = field(default_factory=dict)  # Seq2SeqConfig overrides, e.g. {"n_enc_layer": 6}
    train: TrainConfig = field(default_factory=_default_train)
    dev_sentences: int = 300  # dev sentences decoded (greedy) for BLEU at every evaluation
    test_beams: int = 4
    length_penalty: float = 1.0
    resume: bool = False
    overwrite: bool = False

    MANY_FLAGS = ("train_data", "dev_data", "test_data")  # `--train A B` takes several values


SMALL_MODEL = {"d_model": 256, "n_head": 4, "n_enc_layer": 2, "n_dec_layer": 2, "d_ff": 1024, "dropout": 0.1}  # 2-core CPU size


def _special_ids(n_pieces: int, after: int) -> dict[str, int]:
    """Special-token ids for a SentencePiece tokenizer of `n_pieces` pieces that equal those of one with
    `after` >= n_pieces pieces. A tokenizer puts its 16 special tokens right after its pieces (tokenizer/spm.py),
    so two vocabularies of different sizes would give <|pad|>, <|bos|>, <|eos|> different ids; here both put
    them after the larger piece table, and the smaller side's ids in between become more reserved tokens
    (never produced from text, decoded as their name), not holes a decoder could emit."""
    names = default_special_tokens(NUM_DEFAULT_SPECIAL_TOKENS + after - n_pieces)
    return dict(zip(names, [*range(after, after + NUM_DEFAULT_SPECIAL_TOKENS), *range(n_pieces, after)]))


def _train_tokenizer(cfg: TranslateTrainConfig, texts: list[str], vocab_size: int, specials, what: str):
    if cfg.tokenizer == "unigram":
        from zerollm.tokenizer.unigram import train_unigram as trainer
    else:
        from zerollm.tokenizer.bpe_sp import train_bpe_sp as trainer
    try:
        return trainer(texts, vocab_size=vocab_size, special_tokens=specials)
    except ValueError as e:  # e.g. "vocab_size N is too high for this corpus": say which side, which field
        raise ValueError(f"the {what}: {e}") from None


def _tokenizers(cfg: TranslateTrainConfig, pairs, out: Path, info):
    """The run's (source, target) tokenizers: trained once (on the main rank; the others wait and load them),
    then reused. `joint`: one tokenizer on both sides (the same object twice); `separate`: one per side."""
    tgt_dir, src_dir = out / "tokenizer", out / "src_tokenizer"
    separate = cfg.vocab == "separate"
    if not info.is_main or tgt_dir.is_dir():
        barrier(info)
        tgt = load_tokenizer(tgt_dir)
        return (load_tokenizer(src_dir) if separate else tgt), tgt
    if separate:
        src_lang, tgt_lang = cfg.direction.split("-")
        n_src = cfg.src_vocab_size or cfg.vocab_size
        after = max(n_src, cfg.vocab_size)  # pieces are exactly vocab_size (or the trainer raises)
        src = _train_tokenizer(cfg, [s for s, _ in pairs], n_src, _special_ids(n_src, after),
                               f"source ({src_lang}) tokenizer, src_vocab_size={n_src}")
        tgt = _train_tokenizer(cfg, [t for _, t in pairs], cfg.vocab_size, _special_ids(cfg.vocab_size, after),
                               f"target ({tgt_lang}) tokenizer, vocab_size={cfg.vocab_size}")
        src.save(src_dir)  # before tokenizer/, whose presence says both are there
    else:
        src = tgt = _train_tokenizer(cfg, [s for s, _ in pairs] + [t for _, t in pairs], cfg.vocab_size, None,
                                     f"joint tokenizer, vocab_size={cfg.vocab_size}")
    tgt.save(tgt_dir)
    barrier(info)
    return src, tgt


def _check_special_ids(src, tgt, run_dir: Path) -> None:
    """The model has one pad, bos and eos id: both tokenizers must have them, with the same ids."""
    for name, tok in (("tokenizer", tgt), ("src_tokenizer", src)):
        if tok.pad_id is None or tok.bos_id is None or tok.eos_id is None:
            raise ValueError(f"{run_dir / name}: the tokenizer needs <|pad|>, <|bos|> and <|eos|> special tokens")
    a, b = (src.pad_id, src.bos_id, src.eos_id), (tgt.pad_id, tgt.bos_id, tgt.eos_id)
    if a != b:
        raise ValueError(f"{run_dir / 'src_tokenizer'} gives pad/bos/eos the ids {a} but {run_dir / 'tokenizer'} "
                         f"gives them {b}: the model has one pad, bos and eos id, so both sides must agree")


def _source_name(paths) -> str:
    return str(paths[0])


def translate_train(cfg: TranslateTrainConfig | str | None = None, overrides: list[str] | dict | None = None,
                    quiet: bool = False) -> dict:
    """Train an encoder-decoder on a parallel corpus (see the module docstring)."""
    from zerollm.config import load_config

    if not isinstance(cfg, TranslateTrainConfig):  # this stage's defaults (its TrainConfig too) < YAML < overrides
        cfg = load_config(TranslateTrainConfig, cfg, overrides, base=TranslateTrainConfig())
    elif overrides:
        cfg = load_config(TranslateTrainConfig, None, overrides, base=cfg)
    if not cfg.train_data:
        raise ValueError("translate train: no training data (--train SRC TGT, or one .tsv/.jsonl)")
    if not cfg.dev_data:
        raise ValueError("translate train: no dev data (--dev SRC TGT): dev BLEU picks the best checkpoint")
    tc = cfg.train
    if cfg.vocab not in ("joint", "separate"):
        raise ValueError(f"translate train: vocab={cfg.vocab!r}; expected joint or separate")
    if cfg.src_vocab_size and cfg.vocab != "separate":
        raise ValueError("translate train: src_vocab_size needs vocab=separate (a joint vocabulary has one size, "
                         "vocab_size)")
    if tc.eval_tasks:
        raise ValueError("translate train: train.eval_tasks (language-model tasks) does not apply; give --test "
                         "SRC TGT: its BLEU/chrF go into eval.json")
    train_pairs = read_parallel(cfg.train_data, cfg.direction)
    dev_pairs = read_parallel(cfg.dev_data, cfg.direction)[:max(1, cfg.dev_sentences)]
    test_pairs = read_parallel(cfg.test_data, cfg.direction) if cfg.test_data else []
    info = init_distributed(tc.device, tc.dist_timeout_s)  # one process, or a rank under torchrun
    run = start_run(cfg.out, "translate", cfg, resume=cfg.resume, overwrite=cfg.overwrite, write=info.is_main,
                    train=[str(p) for p in cfg.train_data], direction=cfg.direction)
    barrier(info)
    run_dir = run.dir
    src_tok, tok = _tokenizers(cfg, train_pairs, run_dir, info)  # tok: the target side's (the joint one)
    _check_special_ids(src_tok, tok, run_dir)
    train_ids = encode_pairs(train_pairs, src_tok, cfg.max_len, _source_name(cfg.train_data), tgt_tokenizer=tok)
    dev_ids = encode_pairs(dev_pairs, src_tok, cfg.max_len, _source_name(cfg.dev_data), tgt_tokenizer=tok)
    sides = ({"src_vocab_size": src_tok.vocab_size, "share_embeddings": False, "tie_output": True}
             if src_tok is not tok else {})  # one vocabulary per side: the encoder gets its own table
    mcfg = Seq2SeqConfig(**{**SMALL_MODEL, "vocab_size": tok.vocab_size, **sides, "max_seq_len": cfg.max_len + 1,
                            "pad_id": tok.pad_id, "bos_id": tok.bos_id, "eos_id": tok.eos_id, **cfg.model})
    src_save = src_tok if src_tok is not tok else None  # what checkpoints keep in src_tokenizer/
    setup_runtime(tc.device, d_model=mcfg.d_model)
    device = info.device
    torch.manual_seed(tc.seed)
    model = Seq2Seq(mcfg).to(device)
    data = TokenBucketBatcher(train_ids, cfg.max_tokens, tok.pad_id, tok.bos_id, tok.eos_id, seed=tc.seed)
    data.shard(info.rank, info.world_size)  # under torchrun each rank trains on its own batches
    dev_lengths, dev_keys = pair_lengths(dev_ids)
    dev_batches = [collate([dev_ids[i] for i in b], tok.pad_id, tok.bos_id, tok.eos_id)
                   for b in length_batches(dev_lengths, cfg.max_tokens, None, sort_keys=dev_keys)]
    refs = [t for _, t in dev_pairs]
    tgt_lang = cfg.direction.split("-")[-1]
    best_dir = run_dir / "best"
    best = {"bleu": -1.0}
    if latest_checkpoint(best_dir) is not None:  # resuming: the best so far
        best["bleu"] = float(read_manifest(latest_checkpoint(best_dir), "checkpoint").get("dev_bleu", -1.0))
    gen = GenerationConfig(temperature=0.0, max_new_tokens=cfg.max_len)

    def evaluate(m: torch.nn.Module) -> dict:
        if not info.is_main:  # dev BLEU and the best checkpoint are the main rank's (the others go on)
            return {}
        out = evaluate_seq2seq(m, dev_batches)
        hyps = [tok.decode(h) for h in translate_ids(m, [s for s, _ in dev_ids], gen)]
        scores = bleu_scores(hyps, refs, tgt_lang)
        out.update(dev_bleu=scores["bleu"], dev_chrf=scores["chrf"])
        if scores["bleu"] > best["bleu"]:  # keep the best checkpoint (weights + tokenizer; atomic)
            best["bleu"] = scores["bleu"]
            rows = read_metrics(run_dir / "metrics.jsonl")  # the loop logs a step's record before evaluating it
            step = max((int(r.get("step", 0)) for r in rows), default=0)
            save_checkpoint(best_dir / f"step-{step:08d}", m, mcfg, tokenizer=tok, config_yaml=run.config_yaml,
                            extra={"dev_bleu": scores["bleu"], "model_kind": "seq2seq"}, src_tokenizer=src_save)
            prune_checkpoints(best_dir, 1)
        return out

    if not quiet and info.is_main:
        sizes = f"{tok.vocab_size}" if src_save is None else f"{src_tok.vocab_size} source + {tok.vocab_size} target"
        print(f"model: {model.describe()}\ndata: {len(train_ids)} pairs, {data.batches_per_epoch} batches/epoch "
              f"of <= {cfg.max_tokens} tokens; dev {len(dev_ids)}; tokenizer {cfg.tokenizer} {sizes}")
    with failure_guard(info, tc.dist_timeout_s):
        summary = train(model, Seq2SeqObjective(cfg.label_smoothing, tok.pad_id), data, tc, run_dir, model_cfg=mcfg,
                        tokenizer=tok, evaluate=evaluate, resume_from=run.resume_from, config_yaml=run.config_yaml,
                        dist_info=info, src_tokenizer=src_save)
        model = full_model(model)  # train.parallel=fsdp: the gathered weights (a collective: every rank)
    if not info.is_main:
        cleanup(info)
        return summary
    _finish(cfg, run, model, src_tok, tok, dev_pairs, dev_ids, test_pairs, best, summary)
    cleanup(info)
    return summary


def _finish(cfg, run, model, src_tok, tok, dev_pairs, dev_ids, test_pairs, best, summary) -> None:
    """The end of a run (main rank): the best checkpoint translates dev (examples) and test (scores, into
    `summary` and eval.json), draws a cross-attention map, and the report is written."""
    run_dir, best_dir = run.dir, run.dir / "best"
    gen = GenerationConfig(temperature=0.0, max_new_tokens=cfg.max_len)
    tgt_lang = cfg.direction.split("-")[-1]
    model_path = latest_checkpoint(best_dir) or latest_checkpoint(run_dir / "checkpoints")
    if latest_checkpoint(best_dir) is not None:
        model = load(best_dir, model.device, seq2seq=True).model
    summary.update(run_dir=str(run_dir), model=model.describe(), n_params=model.num_params(),
                   best_dev_bleu=best["bleu"])
    sections = []
    examples = [tok.decode(h) for h in translate_ids(model, [s for s, _ in dev_ids[:8]], gen)]
    sections.append(("Translations (dev, greedy, best checkpoint)", fenced("\n\n".join(
        f"src: {s}\nref: {r}\nhyp: {h}" for (s, r), h in zip(dev_pairs[:8], examples)))))
    if test_pairs:
        test_ids = encode_pairs(test_pairs, src_tok, cfg.max_len, _source_name(cfg.test_data), tgt_tokenizer=tok)
        lines, scores = [], {}
        for beams in sorted({1, cfg.test_beams}):
            g = GenerationConfig(temperature=0.0, max_new_tokens=cfg.max_len, num_beams=beams,
                                 length_penalty=cfg.length_penalty)
            hyps = [tok.decode(h) for h in translate_ids(model, [s for s, _ in test_ids], g)]
            sc = bleu_scores(hyps, [t for _, t in test_pairs], tgt_lang)
            summary[f"test_beam{beams}"] = sc
            for k, v in sc.items():
                scores.setdefault(k, {})["greedy" if beams == 1 else f"beam{beams}"] = {"value": v, "stderr": None}
            lines.append(f"- test, {'greedy' if beams == 1 else f'beam {beams}'}: " + ", ".join(
                f"{k} **{v:.2f}**" for k, v in sc.items()))
            atomic_write_text(run_dir / f"test.beam{beams}.hyp", "\n".join(hyps) + "\n")
        sections.insert(0, ("Test scores (sacrebleu)", "\n".join(lines)))
        write_eval_json(run_dir, [{"task": k, "kind": "translation", "n": len(test_pairs), "num_fewshot": 0,
                                   "samples": 1, "metrics": m, "truncated": 0, "model": str(model_path)}
                                  for k, m in scores.items()])
    png = cross_attention_png(model, tok, dev_pairs[0][0], run_dir / "cross_attention.png", src_tok=src_tok)
    if png:
        sections.append(("Cross-attention", "![cross-attention](cross_attention.png)"))
    if plot_metrics(run_dir / "metrics.jsonl", ["dev_bleu", "dev_chrf", "val_loss"], run_dir / "bleu.png",
                    "dev scores"):
        sections.insert(0, ("Dev BLEU curve", f"best dev BLEU (greedy): **{best['bleu']:.2f}**\n\n![bleu](bleu.png)"))
    finish_report(run_dir, "translate train", model, cfg.train, summary, extra_sections=sections)


# ---- decoding ---------------------------------------------------------------------------------------------


@dataclass
class TranslateConfig:
    text: str | None = field(default=None, metadata={"positional": "?", "help": "a sentence to translate"})
    model: str = field(default="", metadata={
        "required": True, "help": "translate run dir (its best/ checkpoint), checkpoint or Marian dir"})
    input: str | None = field(default=None, metadata={"help": "file: one sentence a line"})
    output: str | None = field(default=None, metadata={"help": "write translations here (default: stdout)"})
    num_beams: int = 4
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    max_len_a: float = 1.5  # max target length = a * source length + b
    max_len_b: int = 10
    batch_size: int = 64
    device: str = "cpu"
    overwrite: bool = False


def load_translator(path: str | Path, device: str = "cpu"):
    """(model, source tokenizer, target tokenizer) of a translate run (best/ when present), checkpoint or Marian
    directory; with a joint vocabulary both tokenizers are the same object."""
    path = Path(path)
    if latest_checkpoint(path / "best") is not None:
        path = path / "best"
    loaded = load(path, device, seq2seq=True)
    if loaded.tokenizer is None:
        raise FileNotFoundError(f"{path}: no tokenizer/ directory")
    src = loaded.src_tokenizer if loaded.src_tokenizer is not None else loaded.tokenizer
    return loaded.model, src, loaded.tokenizer


def translate(model: str | Path, texts: list[str] | str, *, num_beams: int = 4, length_penalty: float = 1.0,
              no_repeat_ngram_size: int = 0, max_len_a: float = 1.5, max_len_b: int = 10, batch_size: int = 64,
              device: str = "cpu", where: str = "input") -> list[str] | str:
    """Translate a sentence (str -> str) or sentences (list -> list, same order). `model`: a path, or the
    tuple (model, tokenizer) or (model, source tokenizer, target tokenizer)."""
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    m, src_tok, tok = load_translator(model, device) if not isinstance(model, tuple) else (
        model if len(model) == 3 else (model[0], model[1], model[1]))
    ids = []
    for i, t in enumerate(texts, 1):
        if not t.strip():
            raise DataError(f"{where}:{i}: empty line (one sentence a line)")
        x = src_tok.encode(t)
        if len(x) + 1 > m.cfg.max_seq_len:
            raise DataError(f"{where}:{i}: sentence is {len(x) + 1} tokens, over the model's limit of "
                            f"{m.cfg.max_seq_len}")
        ids.append(x)
    gen = GenerationConfig(temperature=0.0, num_beams=num_beams, length_penalty=length_penalty,
                           no_repeat_ngram_size=no_repeat_ngram_size, max_new_tokens=m.cfg.max_seq_len)
    hyps = [tok.decode(h) for h in translate_ids(m, ids, gen, batch_size=batch_size, max_len_a=max_len_a,
                                                 max_len_b=max_len_b)]
    return hyps[0] if single else hyps


def translate_stage(c: TranslateConfig) -> None:
    if (c.text is None) == (c.input is None):
        raise ValueError("give a sentence or --input FILE (one of them)")
    kw = {"num_beams": c.num_beams, "length_penalty": c.length_penalty, "no_repeat_ngram_size": c.no_repeat_ngram_size,
              "max_len_a": c.max_len_a, "max_len_b": c.max_len_b, "batch_size": c.batch_size, "device": c.device}
    if c.text is not None:
        print(translate(c.model, c.text, **kw, where="argument"))
        return
    src = Path(c.input)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    lines = src.read_text(encoding="utf-8").splitlines()
    if c.output:  # an existing file is refused (or, with --overwrite, moved aside) before any work
        prepare_out(c.output, "file", overwrite=c.overwrite, inputs=[c.input])
    hyps = translate(c.model, lines, **kw, where=str(src))
    if c.output:
        atomic_write_text(c.output, "\n".join(hyps) + "\n")
        print(f"translated {len(hyps)} lines → {c.output}", file=sys.stderr)
    else:
        print("\n".join(hyps))


def cross_attention_png(model, tok, sentence: str, png: Path, src_tok=None) -> Path | None:
    """Heat map of the last decoder layer's cross-attention (mean over heads) for `sentence` and the model's
    own greedy translation: rows = target tokens (`tok`), columns = source tokens (`src_tok`, else `tok`)."""
    plt = pyplot()

    src_tok = tok if src_tok is None else src_tok
    src = src_tok.encode(sentence)
    hyp = translate_ids(model, [src], GenerationConfig(temperature=0.0, max_new_tokens=model.cfg.max_seq_len))[0]
    att = cross_attention(model, src + [model.cfg.eos_id], [model.cfg.bos_id] + hyp)  # (T, S)
    xs = [src_tok.decode([i]) for i in src] + ["</s>"]
    ys = [tok.decode([i]) for i in hyp] + ["</s>"]
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    cjk = next((n for n in ("Noto Sans CJK JP", "IPAexGothic", "IPAGothic", "TakaoGothic", "VL Gothic")
                if n in names), None)
    if cjk:  # a font with Japanese glyphs, when the machine has one
        plt.rcParams["font.family"] = cjk
    else:  # otherwise non-ASCII tokens are labelled by id rather than drawn as empty boxes
        xs = [x if x.isascii() else f"#{i}" for x, i in zip(xs, src + [model.cfg.eos_id])]
        ys = [y if y.isascii() else f"#{i}" for y, i in zip(ys, hyp + [model.cfg.eos_id])]
    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(xs), 1 + 0.4 * len(ys)), dpi=110)
    ax.imshow(att.numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(xs)), xs, rotation=60, ha="right")
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    ax.set_title("cross-attention\n(last decoder layer, mean over heads)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, png)


__all__ = [
    "TranslateConfig",
    "TranslateTrainConfig",
    "load_translator",
    "translate",
    "translate_stage",
    "translate_train",
]
