"""`zerollm serve`: an OpenAI-compatible HTTP API and a web chat page over one model.

    from zerollm.serve import create_app, serve
    app = create_app("runs/quickstart", api_key=None)   # a FastAPI app (uvicorn.run(app) to serve it)
    serve("runs/quickstart", host="127.0.0.1", port=8000)

Modules: `backend.py` (the only code that runs the model: continuous batching on one worker thread),
`openai_api.py` (endpoints), `protocol.py` (request models), `errors.py` (OpenAI error bodies),
`static/` (the chat page, plain HTML/JS/CSS).
"""
from __future__ import annotations

from pathlib import Path


def create_app(model, api_key: str | None = None, **kwargs):
    from .openai_api import create_app as _create_app

    return _create_app(model, api_key=api_key, **kwargs)


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          log_level: str = "info", tools=None) -> None:
    """Load `model` and serve it until interrupted (binds loopback unless told otherwise). `tools`: built-in
    tools the server executes itself ("calculator,datetime,search:DIR" or Tool objects; default none)."""
    import uvicorn

    if isinstance(tools, str):
        from zerollm.chat.tools import parse_tools

        tools = parse_tools(tools)
    uvicorn.run(create_app(model, api_key=api_key, tools=tools or None), host=host, port=port, log_level=log_level)


__all__ = ["create_app", "serve"]
