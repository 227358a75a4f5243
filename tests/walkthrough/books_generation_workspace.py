"""Runs the listings of docs/seeds_walkthrough.md's generation, prompting, chatbot and function-calling
sections, in a workspace where they work offline on tiny models:

- `gpt2` is a tiny random GPT-2 (transformers' GPT2Config, a small byte-level BPE tokenizer in GPT-2's
  tokenizer.json format) stored the way huggingface_hub stores downloads, in a temporary $HF_HOME;
- `runs/chat-model` is a tiny zerollm checkpoint with zerollm's chat tokenizer whose greedy choice is always
  a tool call (so the function-calling listings show a call, its execution and the fed-back result).

```python blocks run in one namespace per section, ```bash blocks through `zerollm.cli.main` (stdin gives one
message then /quit, for the chat REPL); ```console blocks are shown, not run."""
from __future__ import annotations

import io
import json
import re
import shlex
from pathlib import Path

import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "seeds_walkthrough.md"


def listings(section: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block under `## {section}` up to the next `## ` heading."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, f"{DOC} has no section '## {section}'"
    return re.findall(r"^```(\w+)\n(.*?)^```", m.group(1), re.S | re.M)


TEXT = ("Once upon a time there was a language model. Hello, I'm a language model, and I answer questions. "
        "What is attention? Why is the sky blue? Tell me a story about a cat who sat on the mat. ")


def make_workspace(root: Path) -> None:
    """The tiny `gpt2` in a Hugging Face cache under root/hf and `runs/chat-model` under root."""
    import tokenizers as tk
    import transformers

    snap = root / "hf" / "hub" / "models--openai-community--gpt2" / "snapshots" / "0000tiny"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0000tiny")
    tok = tk.Tokenizer(tk.models.BPE())  # GPT-2's format (byte-level BPE, <|endoftext|>), a small vocabulary
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>"], show_progress=False,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT] * 20, trainer)
    tok.save(str(snap / "tokenizer.json"))
    (snap / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}))
    torch.manual_seed(0)
    eos = tok.token_to_id("<|endoftext|>")
    cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                  initializer_range=0.2, bos_token_id=eos, eos_token_id=eos)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(snap)

    from zerollm.config import ModelConfig
    from zerollm.model.transformer import Transformer
    from zerollm.tokenizer.bpe import train_bpe
    from zerollm.train.checkpoint import save_checkpoint

    chat_tok = train_bpe(["What is 12 * 7? The weather in Tokyo is sunny. " * 20], vocab_size=290,
                         show_progress=False)
    model = Transformer(ModelConfig(vocab_size=chat_tok.vocab_size, n_layer=1, n_head=2, d_model=32,
                                    max_seq_len=2048, tie_embeddings=False)).eval()
    with torch.no_grad():  # constant final hidden state (LayerNorm weight 0, bias e0): the head decides alone
        model.norm_f.weight.zero_()
        model.norm_f.bias.zero_()
        model.norm_f.bias[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[chat_tok.special_tokens["<|tool_call|>"], 0] = 10.0  # always call a tool
        model.lm_head.weight[chat_tok.encode("7")[0], 0] = 5.0  # and write 7s inside strings
    save_checkpoint(root / "runs" / "chat-model", model, model.cfg, tokenizer=chat_tok)


def run_section(section: str, root: Path, monkeypatch, stdin: str = "Hello\n/quit\n") -> dict:
    """Run the section's listings in `root` (cwd, $HF_HOME); returns the Python namespace they built."""
    from zerollm import cli

    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    ns: dict = {"__name__": "walkthrough"}
    blocks = listings(section)
    assert blocks, f"section '{section}' has no listings"
    for lang, code in blocks:
        if lang == "python":
            exec(compile(code, f"{DOC.name}:{section}", "exec"), ns)  # our own documentation's listings
        elif lang == "bash":
            for line in code.replace("\\\n", " ").splitlines():
                if line.startswith("zerollm "):
                    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
                    assert cli.main(shlex.split(line)[1:]) == 0, line
    return ns
