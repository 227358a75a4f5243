"""docs/seeds_walkthrough.md, "The chatbot" and "Function calling": the books' chatbot on a base GPT-2 and
function calling in a chat, run as written (see books_generation_workspace.py)."""
from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from books_generation_workspace import make_workspace, run_section  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("books-chat")
    make_workspace(root)
    return root


def test_chatbot_section(workspace, monkeypatch, capsys):
    ns = run_section("The chatbot", workspace, monkeypatch)
    bot = ns["bot"]
    assert [m["role"] for m in bot.conv.messages] == ["user", "assistant"] * 3
    from zerollm.chat.format import PLAIN_TEMPLATE

    assert bot.template == PLAIN_TEMPLATE and bot.conv.max_history == 6
    assert "zerollm chat" in capsys.readouterr().out  # the terminal chat ran on the base model


def test_function_calling_section(workspace, monkeypatch, capsys):
    ns = run_section("Function calling", workspace, monkeypatch, stdin="What is 12 * 7?\n/quit\n")
    step = ns["result"].steps[0]
    assert step.call.name == "calculator" and set(step.call.arguments["expression"]) == {"7"}
    assert step.result.ok and step.result.content == step.call.arguments["expression"]  # 77…7 evaluates to itself
    roles = [m["role"] for m in ns["conversation"].messages]
    assert roles == ["user", "assistant", "tool", "assistant"]  # call, result fed back, answer
    assert "[tool] calculator(" in capsys.readouterr().out  # the terminal chat showed the call and its result
