"""`zerollm serve`: an OpenAI-compatible API and a chat page over one model (zerollm/serve/).

    zerollm serve --model DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--tools calculator,datetime]

--tools (default off): the server itself executes these built-in tools for chat requests that bring no
tools of their own (serve/server_tools.py); requests with `tools` keep OpenAI's client-side execution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServeConfig:
    model: str = field(default="",
                       metadata={"required": True, "help": "checkpoint, run or Hugging Face model directory"})
    host: str = field(default="127.0.0.1", metadata={"help": "bind address (default loopback only)"})
    port: int = 8000
    api_key: str | None = field(default=None, metadata={"help": "require 'Authorization: Bearer KEY' on /v1"})
    tools: str | None = field(default=None, metadata={
        "metavar": "LIST", "help": "execute built-in tools server-side: calculator,datetime,search:INDEX_DIR"})


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          tools: str | None = None) -> None:
    """Serve `model` until interrupted (binds loopback unless told otherwise). tools: see --tools."""
    from zerollm.serve import serve as _serve  # FastAPI and uvicorn are the `serve` extra: imported on use

    _serve(model, host=host, port=port, api_key=api_key, tools=tools)


__all__ = ["serve"]
