"""Hugging Face `MarianMTModel` directories <-> zerollm's encoder-decoder (model/seq2seq.py).

Marian (Junczys-Dowmunt et al. 2018, as ported to transformers) *is* the original Transformer: sinusoidal
positions (sin half, cos half, no offset), post-LN, embeddings scaled by sqrt(d_model), one embedding table
shared by encoder, decoder and the tied output projection, plus a `final_logits_bias`. So a zerollm model
with position=sinusoidal, norm_first=False, layernorm and tie_output maps tensor for tensor:

    tok_emb.weight                        model.shared.weight (= encoder/decoder embed_tokens = lm_head)
      or, one vocabulary per side (share_embeddings=False; config share_encoder_decoder_embeddings=false,
      vocab_size = the source's, decoder_vocab_size = the target's):
    src_emb.weight                        model.encoder.embed_tokens.weight
    tok_emb.weight                        model.decoder.embed_tokens.weight (= lm_head, tie_word_embeddings)
    encoder.{i}.self_attn.{q,k,v}_proj    model.encoder.layers.{i}.self_attn.{q,k,v}_proj
    encoder.{i}.self_attn.o_proj          model.encoder.layers.{i}.self_attn.out_proj
    encoder.{i}.norm1 / mlp.fc / mlp.proj / norm2
                                          .self_attn_layer_norm / fc1 / fc2 / final_layer_norm
    decoder.{i}.self_attn, norm1          model.decoder.layers.{i}.self_attn, self_attn_layer_norm
    decoder.{i}.cross_attn, norm2         model.decoder.layers.{i}.encoder_attn, encoder_attn_layer_norm
    decoder.{i}.mlp.fc / mlp.proj / norm3 .fc1 / fc2 / final_layer_norm
    final_logits_bias (V,)                final_logits_bias (1, V)

The decoder starts from our bos (config `decoder_start_token_id`); `forced_eos_token_id` is off (our
decoders do not force eos at the length limit); generation_config.json bans pad and bos as our decoders do.
The zerollm tokenizer travels in `tokenizer/` (the target side's with one vocabulary per side, the source
side's then in `src_tokenizer/`, as in a zerollm checkpoint), so `zerollm translate --model MARIAN_DIR` works
both ways. These are zerollm's tokenizer directories, not transformers' MarianTokenizer files
(source.spm/target.spm/vocab.json): transformers loads the model, and ids are encoded with zerollm.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from zerollm.artifacts import atomic_dir, atomic_write_text, write_manifest
from zerollm.model.seq2seq import Seq2Seq, Seq2SeqConfig, sinusoidal_table

_ACT = {"relu": "relu", "gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}


def _layer_names(cfg: Seq2SeqConfig) -> list[tuple[str, str]]:
    """(zerollm name, Marian name) for every per-layer tensor."""
    pairs = []
    for side, n, parts in (
            ("encoder", cfg.n_enc_layer, [("self_attn", "self_attn"), ("norm1", "self_attn_layer_norm"),
                                          ("mlp.fc", "fc1"), ("mlp.proj", "fc2"), ("norm2", "final_layer_norm")]),
            ("decoder", cfg.n_dec_layer, [("self_attn", "self_attn"), ("norm1", "self_attn_layer_norm"),
                                          ("cross_attn", "encoder_attn"), ("norm2", "encoder_attn_layer_norm"),
                                          ("mlp.fc", "fc1"), ("mlp.proj", "fc2"), ("norm3", "final_layer_norm")])):
        for i in range(n):
            for ours, theirs in parts:
                subs = ([("q_proj", "q_proj"), ("k_proj", "k_proj"), ("v_proj", "v_proj"), ("o_proj", "out_proj")]
                        if "attn" in ours else [("", "")])
                for a, b in subs:
                    for p in ("weight", "bias"):
                        pairs.append((f"{side}.{i}.{ours}{'.' + a if a else ''}.{p}",
                                      f"model.{side}.layers.{i}.{theirs}{'.' + b if b else ''}.{p}"))
    return pairs


def marian_config(cfg: Seq2SeqConfig) -> dict:
    act = {v: k for k, v in _ACT.items() if k != "gelu_pytorch_tanh"}.get(cfg.mlp)
    problems = [msg for bad, msg in (
        (cfg.position != "sinusoidal", f"position={cfg.position} (Marian has sinusoidal positions)"),
        (cfg.norm_first, "norm_first=True (Marian is post-LN)"),
        (cfg.norm != "layernorm", f"norm={cfg.norm} (Marian uses LayerNorm)"),
        (not cfg.tie_output, "tie_output=False (Marian's output projection is the target embedding table)"),
        (act is None, f"mlp={cfg.mlp} (Marian's FFN is not gated)")) if bad]
    if problems:
        raise ValueError("cannot export to MarianMTModel: " + "; ".join(problems))
    src_vocab = cfg.vocab_size if cfg.share_embeddings else (cfg.src_vocab_size or cfg.vocab_size)
    return {"architectures": ["MarianMTModel"], "model_type": "marian", "vocab_size": src_vocab,
            "decoder_vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "encoder_layers": cfg.n_enc_layer,
            "decoder_layers": cfg.n_dec_layer, "encoder_attention_heads": cfg.n_head,
            "decoder_attention_heads": cfg.n_head, "encoder_ffn_dim": cfg.d_ff, "decoder_ffn_dim": cfg.d_ff,
            "activation_function": act, "max_position_embeddings": cfg.max_seq_len,
            "scale_embedding": cfg.scale_embedding, "dropout": cfg.dropout, "attention_dropout": cfg.dropout,
            "activation_dropout": 0.0, "pad_token_id": cfg.pad_id, "eos_token_id": cfg.eos_id,
            "bos_token_id": cfg.bos_id, "decoder_start_token_id": cfg.bos_id, "forced_eos_token_id": None,
            "share_encoder_decoder_embeddings": cfg.share_embeddings, "tie_word_embeddings": True, "is_encoder_decoder": True,
            "init_std": 0.02, "use_cache": True, "torch_dtype": "float32"}


def export_marian(model: Seq2Seq, out: str | Path, tokenizer=None, src_tokenizer=None) -> Path:
    """Write `out/` as a MarianMTModel directory (config.json, generation_config.json, model.safetensors,
    and our tokenizer/, plus src_tokenizer/ for a model with one vocabulary per side); built atomically."""
    cfg = model.cfg
    config = marian_config(cfg)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors = {"final_logits_bias": sd["final_logits_bias"].view(1, -1).clone()}
    if cfg.share_embeddings:
        tensors["model.shared.weight"] = sd["tok_emb.weight"].clone()
    else:  # what transformers itself saves for share_encoder_decoder_embeddings=false (lm_head tied, not stored)
        tensors["model.encoder.embed_tokens.weight"] = sd["src_emb.weight"].clone()
        tensors["model.decoder.embed_tokens.weight"] = sd["tok_emb.weight"].clone()
    pe = sinusoidal_table(cfg.max_seq_len, cfg.d_model)
    tensors["model.encoder.embed_positions.weight"] = pe.clone()
    tensors["model.decoder.embed_positions.weight"] = pe.clone()
    for ours, theirs in _layer_names(cfg):
        tensors[theirs] = sd[ours].clone()
    gen = {"decoder_start_token_id": cfg.bos_id, "eos_token_id": cfg.eos_id, "pad_token_id": cfg.pad_id,
           "bos_token_id": cfg.bos_id, "forced_eos_token_id": None, "bad_words_ids": [[cfg.pad_id], [cfg.bos_id]],
           "max_length": cfg.max_seq_len, "num_beams": 4}
    with atomic_dir(out, "hf_export") as tmp:  # the kind export_hf leaves: loading sees an HF dir
        atomic_write_text(tmp / "config.json", json.dumps(config, indent=2) + "\n")
        atomic_write_text(tmp / "generation_config.json", json.dumps(gen, indent=2) + "\n")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(tmp / "tokenizer")
        if src_tokenizer is not None and src_tokenizer is not tokenizer:
            src_tokenizer.save(tmp / "src_tokenizer")
        write_manifest(tmp, "hf_export", format="marian", source="zerollm seq2seq")
    return Path(out)


def import_marian(path: str | Path) -> Seq2Seq:
    """A MarianMTModel directory -> Seq2Seq (errors name the file and the field or tensor)."""
    path = Path(path)
    cfg_path = path / "config.json"
    c = json.loads(cfg_path.read_text(encoding="utf-8"))
    if c.get("model_type") != "marian":
        raise ValueError(f"{cfg_path}: model_type {c.get('model_type')!r} is not marian")
    act = _ACT.get(c.get("activation_function", "gelu"))
    if act is None:
        raise ValueError(f"{cfg_path}: activation_function {c.get('activation_function')!r} is not supported "
                         f"(relu, gelu, gelu_new)")
    for a, b in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if c.get(a) != c.get(b):
            raise ValueError(f"{cfg_path}: {a} != {b} is not supported")
    shared = c.get("share_encoder_decoder_embeddings", True)
    tgt_vocab = c.get("decoder_vocab_size") or c["vocab_size"]
    if shared and tgt_vocab != c["vocab_size"]:
        raise ValueError(f"{cfg_path}: decoder_vocab_size {tgt_vocab} != vocab_size {c['vocab_size']} with "
                         f"share_encoder_decoder_embeddings (one shared table has one size)")
    sides = {} if shared else {"src_vocab_size": c["vocab_size"], "share_embeddings": False}  # one table per side
    start = c.get("decoder_start_token_id", c.get("pad_token_id"))
    cfg = Seq2SeqConfig(vocab_size=tgt_vocab, **sides, d_model=c["d_model"], n_head=c["encoder_attention_heads"],
                        n_enc_layer=c["encoder_layers"], n_dec_layer=c["decoder_layers"], d_ff=c["encoder_ffn_dim"],
                        dropout=float(c.get("dropout", 0.0)), mlp=act, max_seq_len=c["max_position_embeddings"],
                        scale_embedding=bool(c.get("scale_embedding", False)), pad_id=c["pad_token_id"],
                        bos_id=start, eos_id=c["eos_token_id"] if isinstance(c["eos_token_id"], int)
                        else c["eos_token_id"][0])
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing (only safetensors Marian checkpoints are read)")
    sd = load_file(str(weights))
    model = Seq2Seq(cfg)
    if shared:
        names = {"tok_emb.weight": ("model.shared.weight", "model.encoder.embed_tokens.weight")}
    else:
        names = {"src_emb.weight": ("model.encoder.embed_tokens.weight",),
                 "tok_emb.weight": ("model.decoder.embed_tokens.weight", "lm_head.weight")}
    ours = {}
    for o, candidates in names.items():
        found = next((sd[t] for t in candidates if t in sd), None)
        if found is None:
            raise ValueError(f"{weights}: no {' or '.join(candidates)}")
        ours[o] = found
    head = sd.get("lm_head.weight")
    if head is not None and not torch.equal(head, ours["tok_emb.weight"]):  # we tie the output projection
        raise ValueError(f"{weights}: lm_head.weight differs from the target embeddings (an untied output "
                         f"projection is not supported)")
    if "final_logits_bias" in sd:
        ours["final_logits_bias"] = sd["final_logits_bias"].view(-1)
    for o, t in _layer_names(cfg):
        if t not in sd:
            raise ValueError(f"{weights}: missing tensor {t!r}")
        ours[o] = sd[t]
    pe = sd.get("model.encoder.embed_positions.weight")
    if pe is not None and not torch.allclose(pe.float(), sinusoidal_table(*pe.shape), atol=1e-5):
        raise ValueError(f"{weights}: embed_positions is not the sinusoidal table (learned positions?)")
    missing, unexpected = model.load_state_dict(ours, strict=False)
    if unexpected or [m for m in missing if m not in ("final_logits_bias",)]:
        raise ValueError(f"{weights}: tensors do not match the config (missing {missing}, unexpected {unexpected})")
    return model.eval()


__all__ = ["export_marian", "import_marian", "marian_config"]
