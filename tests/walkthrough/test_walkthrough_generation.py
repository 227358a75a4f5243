"""docs/seeds_walkthrough.md, "Generation parameters" and "Prompting and chains": the books' generation and
chain listings run as written (see books_generation_workspace.py)."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from books_generation_workspace import make_workspace, run_section  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("books")
    make_workspace(root)
    return root


def test_generation_parameters_section(workspace, monkeypatch, capsys):
    ns = run_section("Generation parameters", workspace, monkeypatch)
    prompt_len = ns["input_ids"].shape[1]
    assert ns["greedy"].shape == (1, 30) and ns["beams"].shape[0] == 3 and ns["beams"].shape[1] <= 30
    assert ns["outputs"].shape[0] == 3 and ns["outputs"].shape[1] <= 50 and ns["outputs"].dtype == torch.long
    assert torch.equal(ns["outputs"][:, :prompt_len], ns["input_ids"].expand(3, -1))
    assert len(ns["results"]) == 2 and all(r["generated_text"].startswith("Hello, I'm a language model,")
                                           for r in ns["results"])
    assert (workspace / "temperature.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "Once upon a time" in printed and "\n---\n" in printed  # the CLI's two sequences


def test_prompting_and_chains_section(workspace, monkeypatch):
    ns = run_section("Prompting and chains", workspace, monkeypatch)
    assert isinstance(ns["answer"], str)
    text = ns["chain"].invoke({"question": "What is a language model?"})
    assert ns["shout"].invoke({"question": "What is a language model?"}) == text.upper()
