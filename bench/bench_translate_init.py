"""The seq2seq q/k/v initialisation, A/B: zerollm's Seq2Seq as it initialises now (fairseq's xavier gain
1/sqrt(2) on the attention's query/key/value projections) beside the same model with plain xavier (gain 1)
there, trained on the same batches in turns for the same number of steps, then greedy dev BLEU on the 500
dev sentences of small_parallel_enja.

    python bench/bench_translate_init.py [--seconds 150] [--threads 2]
"""
import argparse
import time

import torch

from bench_translate import (DATA, Seq2Seq, Seq2SeqConfig, Seq2SeqObjective, TokenBucketBatcher, bleu_scores,
                             decode_all, encode_pairs, read_parallel)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=150.0, help="training time per model")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from zerollm.tokenizer.unigram import train_unigram

    train_pairs = read_parallel([DATA / "train.en", DATA / "train.ja"])
    dev_pairs = read_parallel([DATA / "dev.en", DATA / "dev.ja"])
    tok = train_unigram([s for s, _ in train_pairs] + [t for _, t in train_pairs], vocab_size=8000)
    ids, dev_ids = encode_pairs(train_pairs, tok, 128), encode_pairs(dev_pairs, tok, 128)
    c = Seq2SeqConfig(vocab_size=tok.vocab_size, d_model=256, n_head=4, n_enc_layer=2, n_dec_layer=2, d_ff=1024,
                      dropout=0.1, max_seq_len=129, pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)
    torch.manual_seed(0)
    ours = Seq2Seq(c)
    torch.manual_seed(0)
    plain = Seq2Seq(c)
    with torch.no_grad():  # the previous init: gain 1 everywhere
        for name, m in plain.named_modules():
            if name.endswith(("q_proj", "k_proj", "v_proj")):
                torch.nn.init.xavier_uniform_(m.weight)
    models = {"q/k/v gain 1/sqrt(2) (zerollm)": ours, "q/k/v gain 1 (plain xavier)": plain}
    objective = Seq2SeqObjective(0.1, c.pad_id)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.0)
            for k, m in models.items()}
    data = TokenBucketBatcher(ids, 2000, c.pad_id, c.bos_id, c.eos_id, seed=0)
    step, t0 = 0, time.time()
    while time.time() - t0 < len(models) * args.seconds:
        batch = data.next_batch()
        lr = 1e-3 * min(1.0, (step + 1) / 200)
        step += 1
        for k, m in models.items():
            m.train()
            for g in opts[k].param_groups:
                g["lr"] = lr
            objective.loss(m, batch)[0].backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opts[k].step()
            opts[k].zero_grad(set_to_none=True)
    refs = [t for _, t in dev_pairs]
    print(f"{step} steps each, dev BLEU / chrF (greedy, {len(refs)} sentences):")
    for k, m in models.items():
        m.eval()
        sc = bleu_scores([tok.decode(h) for h in decode_all("zerollm", m, [s for s, _ in dev_ids], c)], refs)
        print(f"  {k}: {sc['bleu']:.2f} / {sc['chrf']:.2f}")


if __name__ == "__main__":
    main()
