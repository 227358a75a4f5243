"""Translation: zerollm's encoder-decoder beside plain `torch.nn.Transformer` and transformers' MarianMTModel.

Training: the same architecture and hyper-parameters (post-LN, sinusoidal positions, shared embeddings +
tied output, ReLU FFN, dropout 0.1, label smoothing 0.1, AdamW lr 1e-3 with warmup) in the three
implementations, fed the *same* token batches (data/parallel.py's bucketing batcher over
small_parallel_enja, our joint Unigram vocabulary). The three models take turns, one step each on the same
batch (a busy shared machine slows all three alike), and each one's own step time is summed, until each has
trained for `--seconds`: tokens/s = (real source + target tokens) / own time; then dev BLEU (greedy, the
first `--dev` sentences, sacrebleu tokenize="none") of each after that equal time.
    nn.Transformer decodes greedily as PyTorch's translation tutorial does (whole decoder re-run per token,
    no cache); Marian with `generate` (KV cache); ours with engine/seq2seq.py.

Decoding (`--model RUN_DIR`, a trained `zerollm translate` run): sentences/s on the test set for greedy and
beam 4, ours (batched, engine/seq2seq.py) and transformers `generate` on the same model exported to a Marian
directory (interop/marian.py), same batch size; also whether both give the same translations.

    python bench/bench_translate.py --seconds 120 --dev 200 [--model /tmp/tr/enja] [--threads 1]
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zerollm.data.parallel import TokenBucketBatcher, encode_pairs, read_parallel
from zerollm.engine.config import GenerationConfig
from zerollm.engine.seq2seq import translate_batch
from zerollm.interop.marian import export_marian, marian_config
from zerollm.model.seq2seq import Seq2Seq, Seq2SeqConfig, sinusoidal_table
from zerollm.objectives.seq2seq import Seq2SeqObjective, bleu_scores

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "small_parallel_enja"


class TorchTransformer(nn.Module):
    """PyTorch's translation tutorial model: token embedding * sqrt(d) + sinusoidal PE -> nn.Transformer ->
    generator, here with the embeddings shared and the generator tied as in ours."""

    def __init__(self, c: Seq2SeqConfig):
        super().__init__()
        self.c = c
        self.emb = nn.Embedding(c.vocab_size, c.d_model)
        nn.init.normal_(self.emb.weight, 0, c.d_model ** -0.5)
        self.register_buffer("pe", sinusoidal_table(c.max_seq_len, c.d_model), persistent=False)
        self.tf = nn.Transformer(c.d_model, c.n_head, c.n_enc_layer, c.n_dec_layer, c.d_ff, c.dropout,
                                 activation="relu", batch_first=True, norm_first=False)

    def embed(self, x):
        return F.dropout(self.emb(x) * math.sqrt(self.c.d_model) + self.pe[:x.shape[1]], self.c.dropout,
                         self.training)

    def forward(self, src, tgt):
        T = tgt.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=src.device)
        pad = src == self.c.pad_id
        h = self.tf(self.embed(src), self.embed(tgt), tgt_mask=causal, src_key_padding_mask=pad,
                    memory_key_padding_mask=pad, tgt_is_causal=True)
        return F.linear(h, self.emb.weight)

    @torch.no_grad()
    def greedy(self, src, max_new):
        pad = src == self.c.pad_id
        memory = self.tf.encoder(self.embed(src), src_key_padding_mask=pad)
        ys = torch.full((src.shape[0], 1), self.c.bos_id)
        for _ in range(max_new):
            T = ys.shape[1]
            h = self.tf.decoder(self.embed(ys), memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(T),
                                memory_key_padding_mask=pad, tgt_is_causal=True)
            logits = F.linear(h[:, -1], self.emb.weight)
            logits[:, [self.c.pad_id, self.c.bos_id]] = -1e9
            ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], 1)
            if bool((ys == self.c.eos_id).any(1).all()):
                break
        return ys[:, 1:].tolist()


def pad_batch(seqs, pad, eos):
    S = max(map(len, seqs)) + 1
    x = torch.full((len(seqs), S), pad)
    for b, s in enumerate(seqs):
        x[b, :len(s) + 1] = torch.tensor(s + [eos])
    return x


def cut(row, eos, pad):
    out = []
    for t in row:
        if t in (eos, pad):
            break
        out.append(t)
    return out


def decode_all(kind, model, srcs, cfg, beams=1, bs=64):
    """Translations (ids) of srcs by `kind`, in order."""
    gen = GenerationConfig(temperature=0.0, num_beams=beams, max_new_tokens=cfg.max_seq_len)
    order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))
    out = [None] * len(srcs)
    for k in range(0, len(order), bs):
        idx = order[k:k + bs]
        x = pad_batch([srcs[i] for i in idx], cfg.pad_id, cfg.eos_id)
        max_new = int(1.5 * x.shape[1] + 10)  # one limit for the batch, every implementation: 1.5 S + 10
        if kind == "zerollm":  # the same batches and the same limit as the peers (a=0, b=max_new)
            rows = translate_batch(model, [srcs[i] for i in idx], gen, max_len_a=0, max_len_b=max_new)
        elif kind == "torch":
            rows = model.greedy(x, max_new)
        else:
            with torch.no_grad():
                rows = model.generate(input_ids=x, attention_mask=(x != cfg.pad_id).long(), num_beams=beams,
                                      do_sample=False, max_new_tokens=max_new, early_stopping=False,
                                      bad_words_ids=[[cfg.pad_id], [cfg.bos_id]])[:, 1:].tolist()
        for i, r in zip(idx, rows):
            out[i] = cut(r, cfg.eos_id, cfg.pad_id)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="training time per implementation")
    ap.add_argument("--dev", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None, help="a trained translate run for the decode bench")
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()

    from zerollm.stages.translate import load_translator
    from zerollm.tokenizer.unigram import train_unigram

    train_pairs = read_parallel([DATA / "train.en", DATA / "train.ja"])
    dev_pairs = read_parallel([DATA / "dev.en", DATA / "dev.ja"])[:args.dev]
    print(f"machine: {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    if not args.skip_train:
        tok = train_unigram([s for s, _ in train_pairs] + [t for _, t in train_pairs], vocab_size=8000)
        ids = encode_pairs(train_pairs, tok, 128)
        dev_ids = encode_pairs(dev_pairs, tok, 128)
        c = Seq2SeqConfig(vocab_size=tok.vocab_size, d_model=256, n_head=4, n_enc_layer=2, n_dec_layer=2, d_ff=1024,
                          dropout=0.1, max_seq_len=129, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
        torch.manual_seed(0)
        ours = Seq2Seq(c)
        torch_tf = TorchTransformer(c)
        mc = marian_config(c)
        marian = transformers.MarianMTModel(transformers.MarianConfig(**{k: v for k, v in mc.items()
                                                                         if k != "architectures"}))
        models = {"zerollm": ours, "torch.nn.Transformer": torch_tf, "transformers Marian": marian}
        # each implementation's own loss: ours the objective the stage trains with (the fused projection +
        # label-smoothed CE on the real target rows); the peers torch's F.cross_entropy with label_smoothing
        # (what their tutorials use; ignore_index skips the padding)
        peer_loss = lambda logits, y: F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                      ignore_index=-100, label_smoothing=0.1)
        objective = Seq2SeqObjective(0.1, c.pad_id)
        loss_of = {"zerollm": lambda m, s, ti, to: objective.loss(m, (s, ti, to))[0],
                   "torch.nn.Transformer": lambda m, s, ti, to: peer_loss(m(s, ti), to),
                   "transformers Marian": lambda m, s, ti, to: peer_loss(m(
                       input_ids=s, attention_mask=(s != c.pad_id).long(), decoder_input_ids=ti).logits, to)}
        opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.0)
                for k, m in models.items()}
        own = {k: 0.0 for k in models}
        toks = {k: 0 for k in models}
        steps = {k: 0 for k in models}
        data = TokenBucketBatcher(ids, args.max_tokens, c.pad_id, c.bos_id, c.eos_id, seed=0)
        step = 0
        while min(own.values()) < args.seconds:
            src, tgt_in, tgt_out = data.next_batch()
            n = int((src != c.pad_id).sum()) + int((tgt_out != -100).sum())
            lr = 1e-3 * min(1.0, (step + 1) / 200)
            step += 1
            for k, m in models.items():
                if own[k] >= args.seconds:
                    continue
                m.train()
                for g in opts[k].param_groups:
                    g["lr"] = lr
                t0 = time.perf_counter()
                loss = loss_of[k](m, src, tgt_in, tgt_out)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
                opts[k].step()
                opts[k].zero_grad(set_to_none=True)
                own[k] += time.perf_counter() - t0
                toks[k] += n
                steps[k] += 1
        print(f"\ntraining, {args.seconds:.0f} s each, same batches (<= {args.max_tokens} tokens), "
              f"{sum(p.numel() for p in ours.parameters()) / 1e6:.2f}M params:")
        print("| implementation | steps | tokens/s | dev BLEU (greedy) | dev chrF |")
        print("|---|---:|---:|---:|---:|")
        refs = [t for _, t in dev_pairs]
        for k, m in models.items():
            m.eval()
            hyps = [tok.decode(h) for h in decode_all({"zerollm": "zerollm", "torch.nn.Transformer": "torch"}.get(
                k, "hf"), m, [s for s, _ in dev_ids], c)]
            sc = bleu_scores(hyps, refs)
            print(f"| {k} | {steps[k]} | {toks[k] / own[k]:,.0f} | {sc['bleu']:.2f} | {sc['chrf']:.2f} |")
    if args.model:
        model, src_tok, tok = load_translator(args.model)
        c = model.cfg
        test = read_parallel([DATA / "test.en", DATA / "test.ja"])
        srcs = [src_tok.encode(s) for s, _ in test]
        refs = [t for _, t in test]
        with tempfile.TemporaryDirectory() as d:
            export_marian(model, Path(d) / "m", tok, src_tok)
            hf = transformers.MarianMTModel.from_pretrained(Path(d) / "m").eval()
        print(f"\ndecoding {len(srcs)} test sentences, batch 64, model {model.describe()}:")
        print("| decoder | zerollm sent/s | transformers generate sent/s | zerollm BLEU | same output |")
        print("|---|---:|---:|---:|---:|")
        for beams in (1, 4):
            t0 = time.perf_counter()
            a = decode_all("zerollm", model, srcs, c, beams)
            ta = time.perf_counter() - t0
            t0 = time.perf_counter()
            b = decode_all("hf", hf, srcs, c, beams)
            tb = time.perf_counter() - t0
            same = sum(x == y for x, y in zip(a, b)) / len(a)
            bleu = bleu_scores([tok.decode(h) for h in a], refs)["bleu"]
            print(f"| {'greedy' if beams == 1 else f'beam {beams}'} | {len(srcs) / ta:.1f} | {len(srcs) / tb:.1f} | "
                  f"{bleu:.2f} | {same:.1%} |")
            if beams == 1:  # what a decoder that keeps finished sentences in the batch computes for nothing
                order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))
                lens = [[len(a[i]) + 1 for i in order[k:k + 64]] for k in range(0, len(order), 64)]
                real = sum(map(sum, lens)) / sum(max(n) * len(n) for n in lens)
                greedy_note = f"greedy: {real:.0%} of a whole-batch decoder's (sentence, step) slots are real tokens"
        print(greedy_note)


if __name__ == "__main__":
    main()
