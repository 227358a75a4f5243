"""The server picks its CPU thread count by measuring decode steps (issue 18 item 8), unless --threads is given."""
from __future__ import annotations

import threading

import torch

from zerollm import runtime
from zerollm.serve.backend import Backend, GenRequest


def _generate(backend: Backend, prompt: list[int], n: int) -> None:
    done = threading.Event()
    backend.submit(GenRequest(prompt_ids=prompt, max_tokens=n, temperature=0.0),
                   lambda ev: done.set() if type(ev).__name__ == "Done" else None)
    assert done.wait(60)


def test_backend_measures_threads_only_without_threads_flag(tiny_model, byte_tokenizer, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # a 2-core machine, whatever this one has
    set_to: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    try:
        runtime.set_threads(None)  # `zerollm serve` without --threads
        backend = Backend(tiny_model(), byte_tokenizer)
        try:
            assert backend.threads is not None and backend.threads.n_max == 2
            _generate(backend, [5, 6, 7], 12)
            assert backend.threads.choice in (1, 2)  # chosen after 3 steps at 1 thread and 3 at 2
            assert set_to[:6] == [1, 1, 1, 2, 2, 2]
        finally:
            backend.close()
        runtime.set_threads(2)  # --threads 2: nothing measured
        backend = Backend(tiny_model(), byte_tokenizer)
        try:
            assert backend.threads is None
        finally:
            backend.close()
    finally:
        runtime._auto_threads[0] = False
        monkeypatch.undo()
        torch.set_num_threads(before)
