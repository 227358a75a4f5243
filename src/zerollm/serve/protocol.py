"""Request bodies of the OpenAI-compatible API as pydantic models (interop.md §3).

Unknown fields are accepted and kept (`extra="allow"`, as vLLM does): clients send vendor extras freely.
Field-level checks give a 400 naming the field; cross-field checks live in openai_api.py.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(_Open):
    type: str = "text"
    text: str = ""


class FunctionCall(_Open):
    name: str
    arguments: Union[str, dict] = "{}"


class ToolCallIn(_Open):
    id: Optional[str] = None
    type: str = "function"
    function: FunctionCall


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Union[str, list[TextPart], None] = None
    name: Optional[str] = None
    tool_calls: Optional[list[ToolCallIn]] = None
    tool_call_id: Optional[str] = None


class FunctionDef(_Open):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    parameters: dict = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolDef(_Open):
    type: Literal["function"] = "function"
    function: FunctionDef


class JSONSchemaSpec(_Open):
    name: str = "response"
    schema_: dict = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: Optional[bool] = None


class ResponseFormat(_Open):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: Optional[JSONSchemaSpec] = None


class StreamOptions(_Open):
    include_usage: bool = False


class _Sampling(_Open):
    model: str
    temperature: Optional[float] = Field(default=None, ge=0, le=2)
    top_p: Optional[float] = Field(default=None, gt=0, le=1)
    top_k: Optional[int] = Field(default=None, ge=0)
    n: int = Field(default=1, ge=1, le=16)
    seed: Optional[int] = None
    stop: Union[str, list[str], None] = None
    stop_token_ids: Optional[list[int]] = None
    ignore_eos: bool = False
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    max_tokens: Optional[int] = Field(default=None, ge=0)
    presence_penalty: Optional[float] = Field(default=None, ge=-2, le=2)  # over generated tokens (OpenAI's)
    frequency_penalty: Optional[float] = Field(default=None, ge=-2, le=2)
    logit_bias: Optional[dict[str, float]] = None  # {"token id": bias in [-100, 100]}
    user: Optional[str] = None

    def stop_list(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(default=None, ge=0)
    tools: Optional[list[ToolDef]] = None
    tool_choice: Union[Literal["none", "auto", "required"], dict, None] = None
    parallel_tool_calls: Optional[bool] = None
    response_format: Optional[ResponseFormat] = None
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    echo: bool = False
    logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    suffix: Optional[str] = None
    best_of: Optional[int] = None


class EmbeddingRequest(_Open):
    model: str
    input: Union[str, list[str], list[int], list[list[int]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = Field(default=None, ge=1)


def as_dict(m: Any) -> dict:
    """A message as the plain dict the chat renderers take (None fields left out)."""
    return m.model_dump(exclude_none=True, by_alias=True)
