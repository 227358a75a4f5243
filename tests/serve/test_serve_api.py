"""The OpenAI-compatible server, driven by the official `openai` client on loopback against a tiny random
model saved as a real checkpoint: chat (plain, streamed, tools, JSON schema, logprobs), completions with
token-id prompts + echo + logprobs (the lm-eval request), embeddings, models, typed errors, and a client
disconnect cancelling its generation."""
from __future__ import annotations

import json
import threading
import time

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from zerollm.config import ModelConfig  # noqa: E402
from zerollm.model.transformer import Transformer  # noqa: E402
from zerollm.tokenizer.bpe import train_bpe  # noqa: E402
from zerollm.train.checkpoint import save_checkpoint  # noqa: E402

TEXT = ("Hello! The weather in Paris is sunny. The answer is 42. {\"city\": \"Tokyo\", \"days\": 3} "
        "こんにちは。今日は良い天気ですね。日本語のテキストです。 ") * 40


def make_checkpoint(path, ctx: int = 512, d_model: int = 32, n_layer: int = 2, seed: int = 0):
    """A tiny random Transformer + a small trained BPE tokenizer, saved as a checkpoint directory."""
    tok = train_bpe([TEXT], vocab_size=370, show_progress=False)
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.vocab_size, n_layer=n_layer, n_head=2, d_model=d_model, max_seq_len=ctx)
    return save_checkpoint(path / "tiny" / "checkpoints" / "step-00000001", Transformer(cfg), cfg, tokenizer=tok)


@pytest.fixture(scope="module")
def server(tmp_path_factory, live_server):
    from zerollm.serve import create_app

    ckpt = make_checkpoint(tmp_path_factory.mktemp("serve"))
    app = create_app(ckpt)
    srv = live_server(app)
    srv.backend = app.state.backend
    yield srv
    srv.stop()
    srv.backend.close()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


MODEL = "tiny"  # the run directory's name
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string", "maxLength": 12},
                                                "days": {"type": "integer"}},
                                                "required": ["city", "days"]}}}


def test_models_and_health(server, client):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL] and models[0].owned_by == "zerollm"
    assert client.models.retrieve(MODEL).id == MODEL
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == MODEL


def test_chat_plain_and_seeded(client):
    kw = dict(model=MODEL, messages=[{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": [{"type": "text", "text": "こんにちは"}]}],
              max_tokens=12, temperature=0.8, seed=7)
    r = client.chat.completions.create(**kw)
    c = r.choices[0]
    assert r.object == "chat.completion" and c.message.role == "assistant" and isinstance(c.message.content, str)
    assert c.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 12 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert client.chat.completions.create(**kw).choices[0].message.content == c.message.content  # seeded
    two = client.chat.completions.create(**{**kw, "n": 2, "max_completion_tokens": 5})
    assert [ch.index for ch in two.choices] == [0, 1] and two.usage.completion_tokens <= 10


def test_chat_streaming_deltas_then_done(server, client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=8, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 8
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    full = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8,
                                          temperature=0)
    assert text == full.choices[0].message.content  # greedy: streamed == non-streamed
    raw = httpx.post(server.url + "/v1/chat/completions", json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}).text
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"


def test_tool_calls_non_streamed_and_streamed(client):
    msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER], tool_choice="required")
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.content is None
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    args = json.loads(call.function.arguments)  # a JSON string, valid by construction
    assert isinstance(args["city"], str) and isinstance(args["days"], int)

    named = {"type": "function", "function": {"name": "get_weather"}}
    calls: dict[int, dict] = {}
    finish = None
    for ch in client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER], tool_choice=named,
                                             stream=True):
        d = ch.choices[0].delta
        for tc in d.tool_calls or []:
            acc = calls.setdefault(tc.index, {"name": "", "arguments": ""})  # clients accumulate by index
            acc["name"] += tc.function.name or ""
            acc["arguments"] += tc.function.arguments or ""
        finish = ch.choices[0].finish_reason or finish
    assert finish == "tool_calls" and list(calls) == [0] and calls[0]["name"] == "get_weather"
    assert set(json.loads(calls[0]["arguments"])) == {"city", "days"}

    # the conversation continues with the tool result
    follow = msgs + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                     {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21°C"}]
    r2 = client.chat.completions.create(model=MODEL, messages=follow, tools=[WEATHER], tool_choice="none", max_tokens=5)
    assert r2.choices[0].message.tool_calls is None


def test_json_schema_response_format(client):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                                               "age": {"type": "integer"}, "tags": {"type": "array", "items": {
                                                   "type": "string", "maxLength": 5}, "maxItems": 2}},
              "required": ["name", "age", "tags"]}
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "JSON please"}],
                                       max_tokens=120, temperature=1.0, seed=3,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "person", "schema": schema}})
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"name", "age", "tags"} and isinstance(value["age"], int) and len(value["tags"]) <= 2


def test_chat_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for t in content:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob, abs=1e-4)  # greedy picks the best


def test_completions_token_ids_echo_logprobs(server, client):
    """lm-eval local-completions: {"prompt": [[ids]], "max_tokens": 1, "logprobs": 1, "echo": true, ...}."""
    ids = server.backend.tokenizer.encode("The weather in Paris is sunny.")
    r = client.completions.create(model=MODEL, prompt=[ids], max_tokens=1, logprobs=1, echo=True, temperature=0,
                                  seed=1234)
    lp = r.choices[0].logprobs
    assert r.object == "text_completion" and len(lp.tokens) == len(ids) + 1
    assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:])
    model = server.backend.model
    with torch.inference_mode():
        ref = torch.log_softmax(model(torch.tensor([ids])), -1)[0]  # (T, V)
    expect = [ref[i - 1, ids[i]].item() for i in range(1, len(ids))]
    assert lp.token_logprobs[1:len(ids)] == pytest.approx(expect, abs=1e-4)
    assert r.choices[0].text.startswith(server.backend.tokenizer.decode(ids))
    r2 = client.completions.create(model=MODEL, prompt=["Hello", "こんにちは"], max_tokens=3, temperature=0,
                                   stop=["\n"])
    assert [c.index for c in r2.choices] == [0, 1] and all("\n" not in c.text for c in r2.choices)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="Hello", max_tokens=5, temperature=0, stream=True) if c.choices)
    assert streamed == client.completions.create(model=MODEL, prompt="Hello", max_tokens=5, temperature=0).choices[0].text


def test_embeddings(client):
    r = client.embeddings.create(model=MODEL, input=["hello", "こんにちは", "hello"])  # client asks base64
    vecs = [torch.tensor(d.embedding) for d in r.data]
    assert len(vecs) == 3 and vecs[0].shape == (32,)
    assert vecs[0].norm().item() == pytest.approx(1.0, abs=1e-4) and torch.allclose(vecs[0], vecs[2])
    f = client.embeddings.create(model=MODEL, input=[[5, 6, 7]], encoding_format="float")
    assert len(f.data[0].embedding) == 32 and r.usage.prompt_tokens > 0


def test_errors_are_typed(server, client):
    hi = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4", messages=hi)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=MODEL, messages=hi, temperature=5)
    with pytest.raises(openai.BadRequestError, match="context length") as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "天気 " * 2000}])
    assert e.value.body["type"] == "exceed_context_size_error"
    with pytest.raises(openai.BadRequestError, match="not in tools"):
        client.chat.completions.create(model=MODEL, messages=hi, tools=[WEATHER],
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(openai.BadRequestError, match="vocabulary"):
        client.completions.create(model=MODEL, prompt=[10 ** 7])
    bad = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    big = httpx.post(server.url + "/v1/completions", content=b" " * (5 << 20), headers={"content-type": "application/json"})
    assert big.status_code == 413 and "error" in big.json()
    missing = httpx.get(server.url + "/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_api_key_and_overload(server, live_server):
    from zerollm.serve import create_app
    from zerollm.serve.backend import Backend

    b = server.backend
    keyed = live_server(create_app(b, api_key="sekrit"))
    full_backend = Backend(b.model, b.tokenizer, model_id=MODEL, max_waiting=0)
    full = live_server(create_app(full_backend))
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=keyed.url + "/v1", api_key="wrong", max_retries=0).models.list()
        ok = openai.OpenAI(base_url=keyed.url + "/v1", api_key="sekrit", max_retries=0)
        assert ok.models.list().data[0].id == MODEL
        assert httpx.get(keyed.url + "/health").status_code == 200  # health and the page need no key
        with pytest.raises(openai.RateLimitError):
            openai.OpenAI(base_url=full.url + "/v1", api_key="x", max_retries=0).chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    finally:
        keyed.stop()
        full.stop()
        full_backend.close()


def test_disconnect_cancels_generation(server):
    b = server.backend
    before = {h for h, _, _ in b.finished}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "tell me a long story"}],
            "max_tokens": 400, "temperature": 1.0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]  # a few events, then hang up
    assert any('"content"' in g for g in got)
    deadline = time.time() + 10
    while time.time() < deadline:
        new = [(h, reason, n) for h, reason, n in b.finished if h not in before]
        if new:
            break
        time.sleep(0.02)
    assert new and new[0][1] == "cancelled" and new[0][2] < 400
    assert b.stats()["running"] == 0


def test_concurrent_clients_share_batches(server, client):
    b = server.backend
    steps0, results, errors = b.steps, [], []

    def ask(i):
        try:
            r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"question {i}"}],
                                               max_tokens=30, temperature=0.7, seed=i)
            results.append(r.usage.completion_tokens)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8
    assert b.steps - steps0 < sum(results)  # decode steps were shared across requests


def test_logit_bias_and_penalties_are_applied(client):
    """logit_bias +100 forces a token; a frequency penalty stops greedy decoding from repeating itself;
    bad logit_bias keys are a 400 naming the field."""
    msgs = [{"role": "user", "content": "Hello"}]
    forced = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=6, temperature=0,
                                            logit_bias={"65": 100})
    assert forced.choices[0].message.content == "A" * 6  # id 65 is the byte "A" in the byte-level BPE
    plain = client.completions.create(model="tiny", prompt=[5, 6, 7], max_tokens=40, temperature=0, logprobs=0)
    penal = client.completions.create(model="tiny", prompt=[5, 6, 7], max_tokens=40, temperature=0, logprobs=0,
                                      frequency_penalty=2.0, presence_penalty=2.0)
    n_plain = len(set(plain.choices[0].logprobs.tokens))
    n_penal = len(set(penal.choices[0].logprobs.tokens))
    assert n_penal > n_plain  # a random tiny model loops greedily; the penalties break the loop
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=msgs, max_tokens=2, logit_bias={"x": 1})
    assert "logit_bias" in str(e.value)
