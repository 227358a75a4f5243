"""`zerollm.api.generate` / `zerollm generate` take the books' keywords (issue 19 item 1): max_length counts
the prompt, do_sample switches greedy to sampling, num_return_sequences returns a list, and the defaults are
one rule for Python and the CLI (greedy, as transformers)."""
from __future__ import annotations

import pytest

from zerollm import api, cli
from zerollm.engine.generate import GenerationConfig, generate


@pytest.fixture
def ck(tmp_path, tiny_model, tiny_bpe_tokenizer):
    from zerollm.train.checkpoint import save_checkpoint

    m = tiny_model(3, vocab_size=tiny_bpe_tokenizer.vocab_size, n_layer=1, n_head=2, n_kv_head=2, d_model=32)
    return save_checkpoint(tmp_path / "ck", m, m.cfg, tokenizer=tiny_bpe_tokenizer)


def _greedy(ck, tok, n):
    m = api.load(ck).model
    return tok.decode(generate(m, tok, tok.encode("the cat"), GenerationConfig(max_new_tokens=n, temperature=0)))


def test_default_is_greedy_and_max_length_counts_the_prompt(ck, tiny_bpe_tokenizer):
    tok = tiny_bpe_tokenizer
    P = len(tok.encode("the cat"))
    assert api.generate(ck, "the cat", max_new_tokens=8) == _greedy(ck, tok, 8)  # no temperature: greedy
    assert api.generate(ck, "the cat", max_length=P + 8) == _greedy(ck, tok, 8)
    assert api.generate(ck, "the cat", max_length=P + 100, max_new_tokens=8) == _greedy(ck, tok, 8)  # new wins
    assert api.generate(ck, "the cat", max_new_tokens=8, do_sample=False, temperature=0.9) == _greedy(ck, tok, 8)
    with pytest.raises(ValueError, match="max_length"):
        api.generate(ck, "the cat", max_length=P)


def test_do_sample_samples_and_num_return_sequences_is_a_list(ck):
    outs = api.generate(ck, "the cat", max_new_tokens=10, do_sample=True, num_return_sequences=3, seed=0)
    assert isinstance(outs, list) and len(outs) == 3 and all(isinstance(t, str) for t in outs)
    assert len(set(outs)) > 1  # three different samples, not one string joined by separators
    again = api.generate(ck, "the cat", max_new_tokens=10, do_sample=True, num_return_sequences=3, seed=0)
    assert again == outs
    beams = api.generate(ck, "the cat", max_new_tokens=6, num_beams=4, num_return_sequences=2)
    assert isinstance(beams, list) and len(beams) == 2


def test_cli_default_equals_python_default(ck, capsys):
    """The CLI and the Python API share the defaults: with no sampling flag both are greedy."""
    assert cli.main(["generate", "--model", str(ck), "--prompt", "the cat", "--max-new-tokens", "8",
                     "--no-stream"]) == 0
    assert capsys.readouterr().out == "the cat" + api.generate(ck, "the cat", max_new_tokens=8) + "\n"
    assert cli.main(["generate", "--model", str(ck), "--prompt", "the cat", "--max-new-tokens", "8", "--do-sample",
                     "--num-return-sequences", "2", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    outs = api.generate(ck, "the cat", max_new_tokens=8, do_sample=True, num_return_sequences=2, seed=1)
    assert printed == "\n---\n".join("the cat" + t for t in outs) + "\n"
