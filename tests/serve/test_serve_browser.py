"""The chat page in a real browser: Playwright drives Debian's Chromium (headless) against `zerollm serve`
on loopback, sends a Japanese message, sees the streamed answer rendered, and saves a screenshot."""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium not found (apt-get install chromium)")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def test_chat_page_streams_an_answer(tmp_path, live_server):
    from test_serve_api import make_checkpoint

    from zerollm.serve import create_app

    app = create_app(make_checkpoint(tmp_path))
    srv = live_server(app)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page()
            page.goto(srv.url + "/")
            page.wait_for_function("document.querySelector('#model').options.length > 0")
            page.click("#settings summary")  # open the settings panel
            page.fill("#max-tokens", "24")
            page.fill("#system-prompt", "あなたは親切なアシスタントです。")
            page.fill("#input", "こんにちは！今日の天気は？")
            page.press("#input", "Enter")
            page.wait_for_selector(".msg.assistant[data-done='1']", timeout=30_000)
            assert page.inner_text(".msg.user") == "こんにちは！今日の天気は？"
            answer = page.inner_text(".msg.assistant")
            assert answer.strip(), "the streamed answer is empty"
            assert page.locator(".msg.error").count() == 0
            stored = page.evaluate("JSON.parse(localStorage.getItem('zerollm.conversations'))")
            assert stored[0]["messages"][0]["content"] == "こんにちは！今日の天気は？"
            assert stored[0]["messages"][1]["role"] == "assistant"
            shot = tmp_path / "chat.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000
            page.reload()  # the conversation survives a reload (localStorage)
            page.wait_for_selector(".msg.user")
            assert page.locator("#conversations li").count() == 1
            browser.close()
    finally:
        srv.stop()
        app.state.backend.close()
